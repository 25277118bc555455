"""Tiers between evaluations (TIER-2, TIER-3, TIER-4, TIER-6): upgrade at once, an upgrade
undone by a refund within the return window (and only then), the tier at a past moment,
what a member needs and keeps, and staff setting a tier."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from patron.core.audit import Actor
from patron.core.exceptions import Conflict, ValidationFailed
from patron.core.models import AuditEvent
from patron.loyalty import tiers
from patron.loyalty.models import Account, LoyaltyEvent, TierChange
from patron.loyalty.tests.helpers import NOW, SHANGHAI, counts, make_member
from patron.loyalty.tests.orderkit import DAY, HOUR, SPEND_ONLY, publish, put, tier
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db
STAFF = Actor("staff", "7")


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _changes(member) -> list[tuple[str, str, str, str]]:
    return list(
        TierChange.objects.filter(member=member)
        .order_by("changed_at", "id")
        .values_list("kind", "from_tier", "to_tier", "reason")
    )


def test_tier3_upgrade_at_once_when_an_order_makes_the_member_qualify():
    member = make_member()
    first = put(member, "U-1", amount="1500.00")
    assert (first.tier, first.tier_change) == ("regular", None)
    second = put(member, "U-2", amount="600.00")
    assert second.tier == "silver"
    assert second.tier_change == {
        "from_tier": "regular",
        "to_tier": "silver",
        "kind": "upgrade",
        "reason": "order_paid",
    }
    change = TierChange.objects.get(member=member)
    assert (change.spend, change.orders, change.loyalty) == (Decimal("2100.00"), 2, 0)
    assert change.order.order_id == "U-2"
    assert change.key == "upgrade:U-2"
    assert change.notified_at is None  # the notice task tells the member (TIER-4)
    # The qualifying order itself earned at the tier before it.
    assert second.points["earned"] == 600


def test_tier3_gold_needs_both_silver_thresholds_by_default():
    member = make_member()
    put(member, "G-1", amount="12000.00")  # spend alone: Silver, not Gold (orders < 10)
    assert tier(member) == "silver"
    for n in range(9):
        put(member, f"G-n{n}", amount="10.00")
    assert tier(member) == "gold"  # 10 orders, spend >= 10,000 and >= 2,000


def test_tier4_a_tier_change_enqueues_the_notice_task_on_commit(
    django_capture_on_commit_callbacks,
):
    member = make_member()
    with django_capture_on_commit_callbacks() as callbacks:
        put(member, "N-0", amount="100.00")
    assert callbacks == []  # no change, no task
    with django_capture_on_commit_callbacks() as callbacks:
        put(member, "N-1", amount="2500.00")
    assert len(callbacks) == 1  # notify_tier_changes, which sends notices and webhooks


def test_tier3_refund_within_the_window_undoes_the_upgrade_it_was_behind():
    member = make_member()
    put(member, "R-1", amount="2500.00")
    assert tier(member) == "silver"
    result = put(member, "R-1", "refunded", amount="2500.00", refunded="1000.00")
    assert result.tier == "regular"
    assert result.tier_change == {
        "from_tier": "silver",
        "to_tier": "regular",
        "kind": "undo",
        "reason": "order_refunded",
    }
    undo = TierChange.objects.get(kind="undo")
    assert (undo.spend, undo.orders, undo.order.order_id) == (Decimal("1500.00"), 1, "R-1")
    assert verify_ledger().ok


def test_tier3_cancellation_undoes_too_with_its_reason():
    member = make_member()
    put(member, "C-1", amount="2500.00")
    put(member, "C-1", "cancelled", amount="2500.00")
    assert _changes(member)[-1] == ("undo", "silver", "regular", "order_cancelled")


def test_tier3_undo_falls_back_step_by_step_never_below_the_tier_held_before():
    publish(tier_changes=SPEND_ONLY)
    member = make_member()
    put(member, "A", amount="2500.00")
    put(member, "B", amount="8000.00")
    assert tier(member) == "gold"
    put(member, "B", "cancelled", amount="8000.00")
    assert tier(member) == "silver"  # still qualifies for Silver with A
    put(member, "A", "refunded", amount="2500.00", refunded="2500.00")
    assert tier(member) == "regular"
    assert _changes(member) == [
        ("upgrade", "regular", "silver", "order_paid"),
        ("upgrade", "silver", "gold", "order_paid"),
        ("undo", "gold", "silver", "order_cancelled"),
        ("undo", "silver", "regular", "order_refunded"),
    ]


def test_tier3_undo_never_goes_below_a_tier_set_by_staff():
    publish(tier_changes=SPEND_ONLY)
    member = make_member()
    tiers.set_tier(member, "silver", reason="compensation", actor=STAFF)
    put(member, "M-1", amount="10000.00")
    assert tier(member) == "gold"
    put(member, "M-1", "cancelled", amount="10000.00")
    assert tier(member) == "silver"


def test_tier3_no_undo_after_the_return_window_closed():
    member = make_member()
    put(member, "W-1", "delivered", amount="2500.00", paid_at=NOW - 5 * DAY, delivered_at=NOW - DAY)
    assert tier(member) == "silver"
    with time_machine.travel(NOW + 7 * DAY, tick=False):
        put(
            member,
            "W-1",
            "refunded",
            amount="2500.00",
            paid_at=NOW - 5 * DAY,
            delivered_at=NOW - DAY,
            refunded="2500.00",
        )
    assert tier(member) == "silver"  # the downgrade waits for the evaluation
    assert [c[0] for c in _changes(member)] == ["upgrade"]
    assert verify_ledger().ok


def test_tier3_no_undo_of_an_upgrade_made_before_the_last_evaluation():
    member = make_member()
    before_evaluation = dt.datetime(2026, 9, 28, 12, 0, tzinfo=SHANGHAI)
    with time_machine.travel(before_evaluation, tick=False):
        put(member, "E-1", amount="2500.00", paid_at=before_evaluation - HOUR)
    assert tier(member) == "silver"
    with time_machine.travel(dt.datetime(2026, 10, 2, 12, 0, tzinfo=SHANGHAI), tick=False):
        put(member, "E-1", "cancelled", amount="2500.00", paid_at=before_evaluation - HOUR)
    assert tier(member) == "silver"


def test_tier_at_names_the_tier_held_at_each_moment():
    member = make_member()
    assert tiers.tier_at(member.pk, NOW) == "regular"  # no account yet
    with time_machine.travel(NOW - 10 * DAY, tick=False):
        put(member, "T-1", amount="2500.00", paid_at=NOW - 10 * DAY - HOUR)
    with time_machine.travel(NOW - 5 * DAY, tick=False):
        tiers.set_tier(member, "gold", reason="vip", actor=STAFF)
    assert tiers.tier_at(member.pk, NOW - 11 * DAY) == "regular"
    assert tiers.tier_at(member.pk, NOW - 7 * DAY) == "silver"
    assert tiers.tier_at(member.pk, NOW) == "gold"
    # A late order paid between the changes earns at Silver's rate.
    assert put(member, "T-2", amount="100.00", paid_at=NOW - 7 * DAY).points["earned"] == 120


def test_tier6_status_shows_what_is_missing_to_rise_and_to_keep_the_tier():
    member = make_member()
    put(
        member,
        "S-1",
        "delivered",
        amount="1500.00",
        paid_at=dt.datetime(2025, 12, 15, tzinfo=SHANGHAI),
        delivered_at=dt.datetime(2025, 12, 16, tzinfo=SHANGHAI),
    )
    put(member, "S-2", amount="1000.00", paid_at=NOW - DAY)
    assert tier(member) == "silver"
    status = tiers.tier_status(member)
    assert status["tier"] == "silver"
    assert status["since"] == NOW
    assert status["window"] == {"spend": Decimal("2500.00"), "orders": 2, "loyalty": 0}
    assert status["next"]["tier"] == "gold"
    # Gold: spend 10,000 or 30 orders (either), and at least 10 orders in any case.
    assert status["next"]["missing"] == {"spend": Decimal("7500.00"), "orders": 28, "loyalty": 0}
    # At the next evaluation (1 January) the December 2025 order has left the window.
    assert status["retain"]["until"] == dt.datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert status["retain"]["missing"] == {"spend": Decimal("1000.00"), "orders": 9, "loyalty": 0}


def test_tier6_status_of_a_member_without_orders():
    member = make_member()
    status = tiers.tier_status(member)
    assert status["tier"] == "regular"
    assert status["window"] == {"spend": Decimal("0.00"), "orders": 0, "loyalty": 0}
    assert status["next"]["missing"] == {"spend": Decimal("2000.00"), "orders": 10, "loyalty": 0}
    assert status["retain"]["missing"] == {"spend": Decimal("0.00"), "orders": 0, "loyalty": 0}


def test_tier_set_by_staff_is_audited_and_refusals_change_nothing():
    member = make_member()
    audits = AuditEvent.objects.count()
    change = tiers.set_tier(member, "gold", reason="service recovery", actor=STAFF)
    assert (change.kind, change.from_tier, change.to_tier) == ("manual", "regular", "gold")
    assert Account.objects.get(pk=member.pk).tier == "gold"
    event = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == audits + 1
    assert event.action == "loyalty.tier_set"
    assert event.details == {"from": "regular", "to": "gold", "tier_change": change.pk}
    before = counts(AuditEvent)
    with pytest.raises(ValidationFailed) as refused:
        tiers.set_tier(member, "platinum", reason="x", actor=STAFF)
    assert refused.value.code == "unknown_tier"
    with pytest.raises(ValidationFailed) as refused:
        tiers.set_tier(member, "silver", reason="  ", actor=STAFF)
    assert refused.value.code == "required"
    with pytest.raises(Conflict) as refused:
        tiers.set_tier(member, "gold", reason="again", actor=STAFF)
    assert refused.value.code == "tier_unchanged"
    assert counts(AuditEvent) == before


def test_tier4_the_change_records_every_figure_behind_it_loyalty_included():
    member = make_member()
    LoyaltyEvent.objects.create(
        member=member, kind="activity", score=4, occurred_at=NOW - DAY, key="act-1"
    )
    put(member, "F-1", amount="2500.00")
    change = TierChange.objects.get(member=member)
    assert (change.spend, change.orders, change.loyalty) == (Decimal("2500.00"), 1, 4)
