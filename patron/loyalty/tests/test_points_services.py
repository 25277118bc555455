"""Staff point changes (PTS-2, PTS-5, PTS-7): adjustments, expiry extensions, feedback
rewards; each audited, each once per key; refusals change nothing."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patron.core.exceptions import Conflict, PatronError
from patron.core.models import AuditEvent
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import InsufficientPoints
from patron.loyalty.models import Account, Entry, Lot
from patron.loyalty.services import points
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.reward_support import (
    STAFF,
    at,
    endpoint,  # noqa: F401 - fixture
    give,
    snapshot,
    webhook_events,
)
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db


def _refused(error_type, code, call, *args, **kwargs):
    before = snapshot()
    lots = list(Lot.objects.order_by("id").values_list("remaining", "expires_at"))
    with pytest.raises(error_type) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code
    assert snapshot() == before
    assert list(Lot.objects.order_by("id").values_list("remaining", "expires_at")) == lots
    return caught.value


@pytest.mark.usefixtures("endpoint")
@time_machine.travel(NOW, tick=False)
def test_pts7_positive_adjustment_is_a_new_lot_audited_once_per_key():
    member = make_member()
    entry = points.adjust(member, 500, reason="Compensation, case 17", key="a1", actor=STAFF)
    assert (entry.kind, entry.points, entry.key, entry.reason) == (
        "adjust",
        500,
        "adjust:a1",
        "Compensation, case 17",
    )
    assert (entry.actor_type, entry.actor_id) == ("staff", "7")
    lot = Lot.objects.get()
    assert (lot.source, lot.status, lot.remaining) == ("adjustment", "available", 500)
    assert Account.objects.get(pk=member.pk).available == 500
    event = AuditEvent.objects.get(action="points.adjusted")
    assert event.details == {"entry_id": entry.pk, "lot_id": lot.pk, "points": 500}
    assert "Compensation" not in str(event.details)  # the reason stays on the entry
    assert len(webhook_events("points.earned")) == 1
    assert OutboxMessage.objects.filter(template="points_adjusted", channel="inapp").count() == 1

    before = snapshot()
    again = points.adjust(member, 500, reason="Compensation, case 17", key="a1", actor=STAFF)
    assert again.pk == entry.pk and snapshot() == before
    _refused(
        Conflict,
        "idempotency_key_reused",
        points.adjust,
        member,
        400,
        reason="x",
        key="a1",
        actor=STAFF,
    )
    assert verify_ledger().ok


def test_pts7_negative_adjustment_spends_nearest_expiry_and_never_below_zero():
    member = make_member()
    with time_machine.travel(NOW - dt.timedelta(days=100), tick=False):
        give(member, 30, "old")
    with time_machine.travel(NOW, tick=False):
        give(member, 100, "new")
        entry = points.adjust(member, -50, reason="Duplicate credit", key="d1", actor=STAFF)
        assert (entry.kind, entry.points) == ("adjust", -50)
        old, new = Lot.objects.order_by("id")
        assert {a.lot_id: a.points for a in entry.allocations.all()} == {old.pk: -30, new.pk: -20}
        assert AuditEvent.objects.get(action="points.adjusted").details == {
            "entry_id": entry.pk,
            "points": -50,
        }
        error = _refused(
            InsufficientPoints,
            "insufficient_points",
            points.adjust,
            member,
            -81,
            reason="Too much",
            key="d2",
            actor=STAFF,
        )
        assert error.status == 409
        assert Account.objects.get(pk=member.pk).available == 80
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_pts7_adjustment_refusals_change_nothing():
    member = make_member()
    error = _refused(
        PatronError, "validation_failed", points.adjust, member, 0, reason=" ", key="z", actor=STAFF
    )
    assert {e.field for e in error.errors} == {"points", "reason"}
    _refused(PatronError, "invalid", points.adjust, member, True, reason="r", key="z", actor=STAFF)
    _refused(
        PatronError, "too_long", points.adjust, member, 5, reason="x" * 201, key="z", actor=STAFF
    )
    _refused(PatronError, "invalid", points.adjust, member, 5, reason="r", key="", actor=STAFF)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.CANCELLED)
    member.refresh_from_db()
    _refused(
        Conflict, "member_not_active", points.adjust, member, 5, reason="r", key="z", actor=STAFF
    )


@pytest.mark.usefixtures("endpoint")
@time_machine.travel(NOW, tick=False)
def test_pts2_feedback_points_are_a_feedback_lot():
    member = make_member()
    entry = points.credit_feedback(member, 200, reason="Useful report", key="case-9", actor=STAFF)
    assert (entry.kind, entry.key) == ("earn", "feedback:case-9")
    assert Lot.objects.get().source == "feedback"
    assert AuditEvent.objects.filter(action="points.feedback_credited").count() == 1
    assert points.credit_feedback(member, 200, reason="again", key="case-9", actor=STAFF) == entry
    _refused(
        PatronError, "invalid", points.credit_feedback, member, -5, reason="r", key="n", actor=STAFF
    )
    assert verify_ledger().ok


def test_pts5_staff_extension_moves_expiry_by_months_audited():
    member, other = make_member(), make_member()
    with time_machine.travel(at(2026, 1, 31, 12), tick=False):
        give(member, 10, "jan")
    with time_machine.travel(at(2026, 3, 1, 12), tick=False):
        give(member, 20, "mar")
        give(other, 5, "other")
    rules = program.current()
    jan, mar, theirs = Lot.objects.order_by("id")
    assert ledger.last_usable_day(jan.expires_at, rules) == dt.date(2027, 1, 31)
    with time_machine.travel(NOW, tick=False):
        _refused(
            Conflict,
            "lot_not_available",
            points.extend_expiry,
            member,
            months=3,
            reason="Closed for works",
            actor=STAFF,
            lot_ids=[jan.pk, theirs.pk],
        )
        _refused(
            PatronError,
            "validation_failed",
            points.extend_expiry,
            member,
            months=0,
            reason="",
            actor=STAFF,
        )
        assert (
            points.extend_expiry(
                member, months=1, reason="Closed for works", actor=STAFF, lot_ids=[jan.pk]
            )
            == 1
        )
        jan.refresh_from_db()
        # 31 January + 12 months + 1 month: the last day of February 2027.
        assert ledger.last_usable_day(jan.expires_at, rules) == dt.date(2027, 2, 28)
        assert points.extend_expiry(member, months=6, reason="Goodwill", actor=STAFF) == 2
    jan.refresh_from_db()
    mar.refresh_from_db()
    assert (jan.extended_months, mar.extended_months) == (7, 6)
    assert ledger.last_usable_day(mar.expires_at, rules) == dt.date(2027, 9, 1)
    events = list(AuditEvent.objects.filter(action="points.expiry_extended").order_by("id"))
    assert [e.details for e in events] == [
        {"lots": [jan.pk], "months": 1, "reason": "Closed for works"},
        {"lots": [jan.pk, mar.pk], "months": 6, "reason": "Goodwill"},
    ]
    assert Entry.objects.filter(member=member).count() == 2  # balances did not move
    assert verify_ledger().ok
