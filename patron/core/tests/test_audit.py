"""PRIV-10: the audit trail shows any edit, removal or reordering."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from patron.core import audit
from patron.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def _write_events(count: int) -> list[AuditEvent]:
    events = []
    for i in range(count):
        with transaction.atomic():
            events.append(
                audit.record(
                    "test.happened",
                    actor=audit.Actor.system(),
                    subject_type="thing",
                    subject_id=i,
                    details={"n": i},
                )
            )
    return events


def test_priv_10_intact_chain_verifies():
    _write_events(5)
    result = audit.verify()
    assert result.ok and result.checked == 5
    call_command("audit", "verify")  # exits 0


def test_priv_10_edited_row_is_named():
    events = _write_events(4)
    AuditEvent.objects.filter(pk=events[2].pk).update(details={"n": 99})
    result = audit.verify()
    assert (result.ok, result.bad_event_id, result.checked) == (False, events[2].pk, 2)
    with pytest.raises(CommandError, match=f"event {events[2].pk}"):
        call_command("audit", "verify")


def test_priv_10_removed_row_breaks_the_next_link():
    events = _write_events(4)
    AuditEvent.objects.filter(pk=events[1].pk).delete()
    result = audit.verify()
    assert (result.ok, result.bad_event_id) == (False, events[2].pk)
    assert "removed or reordered" in result.reason


def test_priv_10_reordered_rows_are_found():
    events = _write_events(4)
    first, second = events[1], events[2]
    # Swap the two rows' whole content, hashes included: each still matches its own hash,
    # but the chain no longer links.
    fields = [
        "occurred_at",
        "actor_type",
        "actor_id",
        "action",
        "subject_type",
        "subject_id",
        "details",
        "prev_hash",
        "hash",
    ]
    values_1 = {f: getattr(first, f) for f in fields}
    values_2 = {f: getattr(second, f) for f in fields}
    AuditEvent.objects.filter(pk=second.pk).update(hash="x" * 64)
    AuditEvent.objects.filter(pk=first.pk).update(**values_2)
    AuditEvent.objects.filter(pk=second.pk).update(**values_1)
    result = audit.verify()
    assert (result.ok, result.bad_event_id) == (False, first.pk)


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError):
        audit.record("x", actor=audit.Actor.system())
    assert AuditEvent.objects.count() == 0
