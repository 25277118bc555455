"""Writing and verifying the audit trail (PRIV-10, architecture rule 5).

``record()`` must run inside the caller's transaction: the event commits or rolls back with
the change it describes. The chain is extended under a lock (a PostgreSQL advisory lock;
SQLite's IMMEDIATE transactions already serialise writers) so two writers never both
chain onto the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from patron.core import clock
from patron.core.models import AuditEvent

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x5041_5452  # "PATR"


@dataclass(frozen=True)
class Actor:
    """Who did it: a member or staff user, a platform API key, or the system itself."""

    type: str
    id: str = ""

    @classmethod
    def system(cls) -> Actor:
        return cls("system")

    @classmethod
    def user(cls, user: Any) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return cls("anonymous")
        return cls("staff" if user.is_staff else "member", str(user.pk))

    @classmethod
    def api_key(cls, key_id: int | str) -> Actor:
        return cls("api_key", str(key_id))


def _digest(prev_hash: str, event: AuditEvent) -> str:
    payload = json.dumps(
        {
            "at": event.occurred_at.isoformat(timespec="microseconds"),
            "actor": [event.actor_type, event.actor_id],
            "action": event.action,
            "subject": [event.subject_type, event.subject_id],
            "details": event.details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def record(
    action: str,
    *,
    actor: Actor,
    subject: Any = None,
    subject_type: str = "",
    subject_id: str | int = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event; call it inside the transaction that makes the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record() must run inside the transaction it describes")
    if subject is not None:
        subject_type = subject_type or subject._meta.model_name
        subject_id = subject_id or subject.pk
    _lock_chain()
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    event = AuditEvent(
        occurred_at=clock.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=json.loads(json.dumps(details or {}, default=str)),
        prev_hash=last or GENESIS,
    )
    event.hash = _digest(event.prev_hash, event)
    event.save()
    return event


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_event_id: int | None = None
    reason: str = ""


def _events() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=2000)


def verify() -> VerifyResult:
    """Walk the chain in id order; report the first row that does not fit."""
    expected_prev = GENESIS
    checked = 0
    for event in _events():
        if event.prev_hash != expected_prev:
            return VerifyResult(
                False, checked, event.pk, "previous-hash link broken (row removed or reordered)"
            )
        if _digest(event.prev_hash, event) != event.hash:
            return VerifyResult(
                False, checked, event.pk, "content does not match its hash (edited)"
            )
        expected_prev = event.hash
        checked += 1
    return VerifyResult(True, checked)
