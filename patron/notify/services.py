"""Notices through the outbox (NOTE-1, architecture rule 2).

``queue_notice`` renders the text now, in the member's language, and writes one encrypted
``OutboxMessage`` per channel inside the caller's transaction: if the caller rolls back, no
message exists. A task is enqueued after commit carrying only the message id; the task (or
the periodic sweep, or ``patron deliver-outbox``) delivers it with retries and, after
``PATRON_OUTBOX_MAX_ATTEMPTS`` failures, moves it to the dead-letter state.

Texts are rendered at queue time, not at delivery time, so a verification code exists only
in the encrypted body (never in a task payload, a log line or an audit detail).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template import Context, Engine
from django.utils import translation

from patron.core import clock
from patron.core.metrics import NOTICES
from patron.core.tasks import enqueue_on_commit
from patron.notify import channels
from patron.notify.models import InboxMessage, OutboxMessage, WebhookEndpoint

if TYPE_CHECKING:
    from patron.members.models import Member

log = logging.getLogger(__name__)

LANGUAGES = ("zh-hans", "en")
DEFAULT_LANGUAGE = "zh-hans"
CHANNELS = ("sms", "email", "inapp")
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
# While one worker sends a message over the network, no other worker may pick it up; if the
# worker dies mid-send the message becomes due again after this lease (at-least-once).
CLAIM_LEASE_SECONDS = 300


@lru_cache(maxsize=1)
def _engine() -> Engine:
    """A plain-text template engine: same template folders as the site, no HTML escaping.

    Notice texts are SMS and email bodies, not HTML: escaping would turn ``&`` into
    ``&amp;`` in a text message.
    """
    dirs = [d for conf in settings.TEMPLATES for d in conf.get("DIRS", [])]
    return Engine(dirs=dirs, app_dirs=True, autoescape=False)


def _language(language: str | None, member: Member | None) -> str:
    lang = (language or getattr(member, "language", "") or DEFAULT_LANGUAGE).lower()
    if lang in LANGUAGES:
        return lang
    # "en-us", "en_GB" -> en; anything else (zh-cn, zh-tw, unknown) -> the default.
    return "en" if lang.startswith("en") else DEFAULT_LANGUAGE


def render(template: str, channel: str, language: str, context: dict[str, Any]) -> tuple[str, str]:
    """Render ``notify/<language>/<template>.<channel>.txt`` -> (subject, body).

    Email and in-app templates start with the subject on the first line, then a blank line,
    then the body; SMS templates are the body alone. Raises ``TemplateDoesNotExist`` for a
    template/channel pair nobody wrote: a programming error, found by the caller's tests.
    """
    name = f"notify/{language}/{template}.{channel}.txt"
    with translation.override(language):
        text = _engine().get_template(name).render(Context(context, autoescape=False)).strip()
    if channel == "sms":
        return "", text
    subject, _, body = text.partition("\n")
    return subject.strip(), body.strip()


def _address(channel: str, member: Member | None, to: str | None) -> str:
    """The recipient: an explicit ``to`` of the right shape, else the member's own address.

    ``to`` is meant for a new phone or email awaiting verification; it applies to the
    channel whose shape it has (an email address has an "@"), so a caller asking for
    ``("sms", "email")`` with a new phone still emails the current address.
    """
    if channel == "sms":
        if to and "@" not in to:
            return to
        return getattr(member, "phone", "") or ""
    if channel == "email":
        if to and "@" in to:
            return to
        return getattr(member, "email", "") or ""
    return ""


def queue_notice(
    *,
    template: str,
    member: Member | None = None,
    channels: Sequence[str] = ("sms",),
    context: dict[str, Any] | None = None,
    to: str | None = None,
    dedupe_key: str | None = None,
    language: str | None = None,
) -> list[OutboxMessage]:
    """Write the outbox rows for one notice; delivery follows after the caller commits.

    Returns the rows written. A channel without an address (no email on file, no member for
    an in-app message) is skipped silently. With a ``dedupe_key`` each channel's row gets
    the key ``<dedupe_key>:<channel>``; a repeat with the same key writes nothing and
    returns ``[]``, so retried requests and re-run jobs never notify twice.
    """
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown notice channels: {unknown}")
    lang = _language(language, member)
    values = dict(context or {})
    if member is not None:
        # The member number is not personal data; every template may greet with it.
        values.setdefault("member_number", member.number)
    written: list[OutboxMessage] = []
    now = clock.now()
    with transaction.atomic():
        for channel in dict.fromkeys(channels):  # keep order, drop repeats
            if channel == "inapp":
                if member is None:
                    continue
                address = ""
            else:
                address = _address(channel, member, to)
                if not address:
                    continue
            key = f"{dedupe_key}:{channel}"[:128] if dedupe_key else None
            if key and OutboxMessage.objects.filter(dedupe_key=key).exists():
                continue
            subject, body = render(template, channel, lang, values)
            message = OutboxMessage(
                channel=channel,
                member=member,
                template=template,
                language=lang,
                to_address=address,
                subject=subject,
                body=body,
                dedupe_key=key,
                next_attempt_at=now,
                created_at=now,
            )
            try:
                # A savepoint: a concurrent writer of the same key loses quietly instead of
                # breaking the caller's transaction.
                with transaction.atomic():
                    message.save()
            except IntegrityError:
                if key and OutboxMessage.objects.filter(dedupe_key=key).exists():
                    continue
                raise
            written.append(message)
    for message in written:
        from patron.notify.tasks import deliver_outbox_message

        enqueue_on_commit(deliver_outbox_message, message.pk)
    return written


# --- Delivery ---------------------------------------------------------------------------


def backoff(attempts: int) -> dt.timedelta:
    """Wait before retry number ``attempts``: 30 s, 60 s, 120 s, ... capped at an hour."""
    seconds = BACKOFF_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=min(seconds, BACKOFF_MAX_SECONDS))


def _max_attempts() -> int:
    return int(getattr(settings, "PATRON_OUTBOX_MAX_ATTEMPTS", 6))


def deliver(message_id: int) -> str:
    """Deliver one outbox message if it is pending and due; safe to call any number of times.

    Returns the outcome: ``sent``, ``retry``, ``dead`` or ``skipped``. In-app messages are
    delivered in one transaction (the inbox row and the ``sent`` mark commit together).
    External channels are claimed first (row lock, attempt counted, lease set), sent with
    no lock held (a slow gateway must not block other writers), then the result is
    recorded under the lock again.
    """
    now = clock.now()
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().filter(pk=message_id).first()
        if (
            message is None
            or message.status != OutboxMessage.Status.PENDING
            or message.next_attempt_at > now
        ):
            return "skipped"
        message.attempts += 1
        if message.channel == OutboxMessage.Channel.INAPP:
            return _deliver_inapp(message, now)
        message.next_attempt_at = now + dt.timedelta(seconds=CLAIM_LEASE_SECONDS)
        message.save(update_fields=["attempts", "next_attempt_at"])
        claimed_attempts = message.attempts

    error = ""
    final = False
    try:
        _send_external(message)
    except channels.DeliveryFailed as exc:
        error = str(exc)
        final = isinstance(exc, channels.DeliveryAbandoned)
    except Exception as exc:
        # Any failure is retried. Its text (and traceback) may quote an address, so only
        # the exception type is stored and logged.
        error = f"unexpected {type(exc).__name__}"
        log.error("outbox message %s failed unexpectedly: %s", message_id, type(exc).__name__)

    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().get(pk=message_id)
        if message.status != OutboxMessage.Status.PENDING:
            return "skipped"
        if message.attempts != claimed_attempts:
            # Our lease ran out and another worker claimed it: its result counts.
            return "skipped"
        return _record_outcome(message, error, clock.now(), final=final)


def _send_external(message: OutboxMessage) -> None:
    if message.channel == OutboxMessage.Channel.SMS:
        channels.send_sms(to=message.to_address, template=message.template, text=message.body)
    elif message.channel == OutboxMessage.Channel.EMAIL:
        channels.send_email(to=message.to_address, subject=message.subject, body=message.body)
    elif message.channel == OutboxMessage.Channel.WEBHOOK:
        _send_webhook(message)
    else:
        raise channels.DeliveryFailed(f"no sender for channel {message.channel}")


def _send_webhook(message: OutboxMessage) -> None:
    """Sign with the endpoint's current secret; a deactivated endpoint gets nothing more."""
    endpoint = (
        WebhookEndpoint.objects.filter(pk=message.endpoint_id).first()
        if message.endpoint_id
        else None
    )
    if endpoint is None:
        raise channels.DeliveryAbandoned("webhook endpoint missing")
    if not endpoint.active:
        raise channels.DeliveryAbandoned("webhook endpoint deactivated")
    channels.send_webhook(
        url=message.to_address, secret=endpoint.secret, event=message.template, body=message.body
    )


def _deliver_inapp(message: OutboxMessage, now: dt.datetime) -> str:
    if message.member_id is None:
        return _record_outcome(message, "in-app message without a member", now)
    InboxMessage.objects.create(
        member_id=message.member_id,
        template=message.template,
        subject=message.subject[:200],
        body=message.body,
        created_at=now,
    )
    return _record_outcome(message, "", now)


def _record_outcome(
    message: OutboxMessage, error: str, now: dt.datetime, *, final: bool = False
) -> str:
    if not error:
        message.status = OutboxMessage.Status.SENT
        message.sent_at = now
        message.last_error = ""
        outcome = "sent"
    elif final or message.attempts >= _max_attempts():
        message.status = OutboxMessage.Status.DEAD
        message.last_error = error[:300]
        outcome = "dead"
    else:
        message.next_attempt_at = now + backoff(message.attempts)
        message.last_error = error[:300]
        outcome = "retry"
    message.save(update_fields=["status", "sent_at", "last_error", "next_attempt_at", "attempts"])
    NOTICES.labels(channel=message.channel, outcome=outcome).inc()
    log.info(
        "outbox message %s %s (attempt %s)",
        message.pk,
        outcome,
        message.attempts,
        extra={"outbox_id": message.pk, "channel": message.channel, "outcome": outcome},
    )
    return outcome


def deliver_due(*, limit: int | None = None) -> dict[str, int]:
    """Deliver every pending message that is due, oldest first; returns outcome counts.

    Each message commits on its own, so an interrupted sweep loses nothing and a second
    sweep (or two at once) only finds what is still due.
    """
    due = OutboxMessage.objects.filter(
        status=OutboxMessage.Status.PENDING, next_attempt_at__lte=clock.now()
    ).order_by("next_attempt_at", "id")
    ids = due.values_list("id", flat=True)
    if limit:
        ids = ids[:limit]
    counts: dict[str, int] = {"sent": 0, "retry": 0, "dead": 0, "skipped": 0}
    for message_id in list(ids):
        counts[deliver(message_id)] += 1
    return counts


def has_due() -> bool:
    return OutboxMessage.objects.filter(
        status=OutboxMessage.Status.PENDING, next_attempt_at__lte=clock.now()
    ).exists()
