"""Platform webhooks (NOTE-2): signed JSON events delivered through the outbox.

Domain services call ``queue_event(event, data, key=...)`` inside their own transaction; it
writes one ``OutboxMessage(channel="webhook")`` per active endpoint subscribed to the event.
The outbox delivers it after commit with retries, backoff and a dead-letter state
(``patron.notify.services.deliver``); each attempt is signed afresh with the attempt's time.

Payload (UTF-8 JSON)::

    {"id": "<uuid4>", "type": "member.registered", "created_at": "<ISO 8601, UTC>",
     "data": {...ids and figures only...}}

Headers: ``Patron-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>``,
``Patron-Event``, ``Patron-Event-Id``, ``Content-Type: application/json`` and
``User-Agent: Patron-Webhooks/1``. See docs/webhooks.md for receivers.

``queue_event`` must cost nothing when no endpoint exists (the common case, and the order
hot path): the active endpoints are cached in-process for ``CACHE_SECONDS`` like the
program rules. Saving or deleting an endpoint drops the cache at once and keeps it from
being refilled until that transaction commits, so a rolled-back endpoint is never cached.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.exceptions import Conflict, FieldError, ValidationFailed
from patron.core.tasks import enqueue_on_commit
from patron.notify.models import OutboxMessage, WebhookEndpoint

EVENTS: tuple[str, ...] = (
    "member.registered",
    "member.status_changed",
    "tier.changed",
    "points.earned",
    "points.expiring",
    "points.expired",
    "redemption.created",
    "coupon.issued",
)
ALL_EVENTS = "*"
# Sent only by ``send_test_event`` (console "send a test event"); nobody subscribes to it.
TEST_EVENT = "webhook.test"

SIGNATURE_HEADER = "Patron-Signature"
USER_AGENT = "Patron-Webhooks/1"
TIMEOUT_SECONDS = 10
SECRET_PREFIX = "whsec_"  # noqa: S105 (a label, not a secret)
NAME_MAX = 100
URL_MAX = 500
DEFAULT_TOLERANCE_SECONDS = 300

# Payload keys that would carry personal data: refused in ``data`` at any depth (rule 4).
PERSONAL_KEYS = frozenset(
    {
        "phone",
        "email",
        "name",
        "id_number",
        "birth_date",
        "address",
        "credit_code",
        "contact_name",
        "company_name",
        "password",
    }
)

CACHE_SECONDS = 5.0
# After an uncommitted endpoint change, the cache stays unfilled until the commit, or for
# this long if the transaction rolled back instead (no hook runs on a rollback).
_UNSETTLED_SECONDS = 60.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


# --- Signatures -------------------------------------------------------------------------


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Patron-Signature`` header value: ``t=<unix>,v1=<hex HMAC-SHA256>``.

    The MAC covers ``"<timestamp>."`` followed by the exact body bytes; the key is the
    endpoint secret's UTF-8 bytes (the whole ``whsec_...`` string).
    """
    return f"t={int(timestamp)},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds.

    Any ``v1`` value may match (a sender may list several); a malformed header, a missing
    part or a stale timestamp is simply False, never an exception.
    """
    if not secret or not header or len(header) > 2000 or not isinstance(body, bytes):
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                return False
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = int(clock.now().timestamp()) if now is None else int(now)
    if abs(current - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
        for candidate in candidates
    )


def request_headers(secret: str, event: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    """Every header of one delivery attempt (the signature uses the attempt's time)."""
    try:
        event_id = str(json.loads(body).get("id", ""))
    except (ValueError, AttributeError):
        event_id = ""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Patron-Event": event,
        "Patron-Event-Id": event_id,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


# --- The endpoint cache -----------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    id: int
    url: str
    events: frozenset[str]

    def wants(self, event: str) -> bool:
        return ALL_EVENTS in self.events or event in self.events


_lock = threading.Lock()
_cached: tuple[float, tuple[_Target, ...]] | None = None
_generation = 0
_unsettled_until = 0.0


def forget() -> None:
    """Drop this process's cached endpoint list (after endpoint changes; between tests)."""
    global _cached, _generation, _unsettled_until
    with _lock:
        _cached = None
        _generation += 1
        _unsettled_until = 0.0


def _changed() -> None:
    """An endpoint row was written: refill the cache only once the write has committed."""
    global _cached, _generation, _unsettled_until
    with _lock:
        _cached = None
        _generation += 1
        _unsettled_until = time.monotonic() + _UNSETTLED_SECONDS
    transaction.on_commit(forget)


@receiver(post_save, sender=WebhookEndpoint, dispatch_uid="notify.webhooks.saved")
@receiver(post_delete, sender=WebhookEndpoint, dispatch_uid="notify.webhooks.deleted")
def _endpoint_written(**kwargs: Any) -> None:
    _changed()


def _targets() -> tuple[_Target, ...]:
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    generation = _generation
    rows = (
        WebhookEndpoint.objects.filter(active=True)
        .order_by("id")
        .values_list("id", "url", "events")
    )
    targets = tuple(
        _Target(pk, url, frozenset(e for e in events or () if isinstance(e, str)))
        for pk, url, events in rows
    )
    with _lock:
        if generation == _generation and time.monotonic() >= _unsettled_until:
            _cached = (now, targets)
    return targets


# --- Queueing events --------------------------------------------------------------------


def _check_data(value: Any, path: str = "data") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"webhook {path} keys must be strings")
            if key.lower() in PERSONAL_KEYS:
                raise ValueError(f"webhook {path}.{key} would carry personal data: ids only")
            _check_data(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            _check_data(item, path)


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))


def _payload(event: str, data: dict[str, Any]) -> str:
    created = clock.now().astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return _dumps(
        {
            "id": str(uuid.uuid4()),
            "type": event,
            "created_at": created.replace("+00:00", "Z"),
            "data": data,
        }
    )


def _dedupe_key(endpoint_id: int, key: str) -> str:
    full = f"wh:{endpoint_id}:{key}"
    if len(full) <= 128:
        return full
    return f"wh:{endpoint_id}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def _write(event: str, body: str, targets: list[_Target], key: str | None) -> list[int]:
    from patron.notify.tasks import deliver_outbox_message

    now = clock.now()
    written: list[int] = []
    with transaction.atomic():
        for target in targets:
            dedupe = _dedupe_key(target.id, key) if key else None
            if dedupe and OutboxMessage.objects.filter(dedupe_key=dedupe).exists():
                continue
            message = OutboxMessage(
                channel=OutboxMessage.Channel.WEBHOOK,
                endpoint_id=target.id,
                template=event,
                to_address=target.url,
                body=body,
                dedupe_key=dedupe,
                next_attempt_at=now,
                created_at=now,
            )
            try:
                # A savepoint: a concurrent writer of the same key loses quietly instead of
                # breaking the caller's transaction.
                with transaction.atomic():
                    message.save()
            except IntegrityError:
                if dedupe and OutboxMessage.objects.filter(dedupe_key=dedupe).exists():
                    continue
                raise
            written.append(message.pk)
    for message_id in written:
        enqueue_on_commit(deliver_outbox_message, message_id)
    return written


def queue_event(event: str, data: dict, *, key: str | None = None) -> int:
    """Queue ``event`` for every active endpoint subscribed to it; returns how many rows.

    Runs in the caller's transaction (rolled back with it). ``key`` makes the call
    idempotent per endpoint: the same key is never queued twice for one endpoint. ``data``
    carries ids and figures only; a personal-data key (``phone``, ``email``, ``name``...)
    or an unknown ``event`` is a programming error (ValueError), checked even when no
    endpoint exists so the caller's tests find it.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    if not isinstance(data, dict):
        raise ValueError("webhook data must be a dict")
    _check_data(data)
    targets = [target for target in _targets() if target.wants(event)]
    if not targets:
        return 0
    return len(_write(event, _payload(event, data), targets, key))


# --- Endpoints (staff actions, audited) -------------------------------------------------


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once; only the encrypted copy stays


def _failed(errors: list[FieldError]) -> ValidationFailed:
    error = ValidationFailed(errors)
    if len(errors) == 1:
        error.code = errors[0].code
        error.message = str(errors[0].message)
    return error


def _clean_url(url: str, errors: list[FieldError]) -> str:
    url = (url or "").strip()
    if not url:
        errors.append(FieldError("url", "required", _("The URL is required.")))
        return ""
    if len(url) > URL_MAX:
        errors.append(
            FieldError("url", "too_long", _("At most %(n)d characters.") % {"n": URL_MAX})
        )
        return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        errors.append(
            FieldError(
                "url", "url_scheme", _("Only http:// and https:// URLs can receive webhooks.")
            )
        )
        return ""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except DjangoValidationError:
        errors.append(FieldError("url", "invalid_url", _("This is not a valid URL.")))
        return ""
    if parts.username or parts.password:
        errors.append(
            FieldError(
                "url",
                "url_credentials",
                _("Put no user name or password in the URL; requests are signed instead."),
            )
        )
        return ""
    return url


def _clean_events(events: Any, errors: list[FieldError]) -> list[str]:
    if isinstance(events, str):
        events = [events]
    given = [str(e).strip() for e in (events or []) if str(e).strip()]
    if not given:
        errors.append(FieldError("events", "required", _("Choose at least one event.")))
        return []
    unknown = sorted({e for e in given if e != ALL_EVENTS and e not in EVENTS})
    if unknown:
        errors.append(
            FieldError(
                "events",
                "unknown_event",
                _("Unknown events: %(events)s.") % {"events": ", ".join(unknown)},
            )
        )
        return []
    if ALL_EVENTS in given:
        return [ALL_EVENTS]
    return [e for e in EVENTS if e in given]  # catalogue order, no repeats


def create_endpoint(
    *,
    name: str,
    url: str,
    events: list[str] | tuple[str, ...],
    actor: audit.Actor,
    created_by: Any = None,
) -> CreatedEndpoint:
    """Register an endpoint with a fresh signing secret (returned once), audited."""
    name = (name or "").strip()
    errors: list[FieldError] = []
    if _CONTROL.search(name) or _CONTROL.search(url or ""):
        raise _failed(
            [
                FieldError(f, "invalid_characters", _("This field contains invalid characters."))
                for f, v in (("name", name), ("url", url or ""))
                if _CONTROL.search(v)
            ]
        )
    if not name:
        errors.append(FieldError("name", "required", _("A name is required.")))
    elif len(name) > NAME_MAX:
        errors.append(
            FieldError("name", "too_long", _("At most %(n)d characters.") % {"n": NAME_MAX})
        )
    clean_url = _clean_url(url, errors)
    clean_events = _clean_events(events, errors)
    if errors:
        raise _failed(errors)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            name=name,
            url=clean_url,
            secret=secret,
            events=clean_events,
            active=True,
            created_at=clock.now(),
            created_by=created_by,
        )
        audit.record(
            "webhook.created",
            actor=actor,
            subject=endpoint,
            details={"events": clean_events, "scheme": urlsplit(clean_url).scheme.lower()},
        )
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def deactivate_endpoint(*, endpoint: WebhookEndpoint, actor: audit.Actor) -> WebhookEndpoint:
    """Stop sending to ``endpoint``; its pending deliveries become dead letters. Idempotent."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not endpoint.active:
            return endpoint
        now = clock.now()
        endpoint.active = False
        endpoint.deactivated_at = now
        endpoint.save(update_fields=["active", "deactivated_at"])
        abandoned = OutboxMessage.objects.filter(
            endpoint=endpoint, status=OutboxMessage.Status.PENDING
        ).update(status=OutboxMessage.Status.DEAD, last_error="webhook endpoint deactivated")
        audit.record(
            "webhook.deactivated",
            actor=actor,
            subject=endpoint,
            details={"abandoned_deliveries": abandoned},
        )
    return endpoint


def send_test_event(*, endpoint: WebhookEndpoint, actor: audit.Actor) -> OutboxMessage:
    """Queue one ``webhook.test`` event for this endpoint alone (delivered after commit)."""
    from patron.notify.tasks import deliver_outbox_message

    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not endpoint.active:
            raise Conflict(
                _("This endpoint is deactivated; it receives nothing."), code="endpoint_inactive"
            )
        now = clock.now()
        message = OutboxMessage.objects.create(
            channel=OutboxMessage.Channel.WEBHOOK,
            endpoint=endpoint,
            template=TEST_EVENT,
            to_address=endpoint.url,
            body=_payload(TEST_EVENT, {"endpoint": endpoint.pk}),
            next_attempt_at=now,
            created_at=now,
        )
        audit.record(
            "webhook.test_queued",
            actor=actor,
            subject=endpoint,
            details={"outbox_id": message.pk},
        )
        enqueue_on_commit(deliver_outbox_message, message.pk)
    return message


# --- Reads ------------------------------------------------------------------------------


def endpoints() -> QuerySet[WebhookEndpoint]:
    """Every endpoint, newest first, without decrypting secrets."""
    return WebhookEndpoint.objects.defer("secret").select_related("created_by")


def recent_deliveries(endpoint: WebhookEndpoint, *, limit: int = 50) -> list[OutboxMessage]:
    """The endpoint's latest deliveries: state only (the encrypted body stays unread)."""
    return list(
        OutboxMessage.objects.filter(endpoint=endpoint)
        .only(
            "id",
            "template",
            "status",
            "attempts",
            "last_error",
            "created_at",
            "sent_at",
            "next_attempt_at",
            "endpoint_id",
        )
        .order_by("-id")[:limit]
    )
