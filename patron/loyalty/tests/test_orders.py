"""Order events (PTS-1, PTS-3, PTS-7): earning by tier and category, the rebate, pending
points until the return window closes, refunds and cancellations before and after it,
retries, out-of-order and conflicting states, and input checks that change nothing."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from patron.core.exceptions import Conflict, NotFound, ValidationFailed
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Entry, Lot, Order, OrderState, TierChange
from patron.loyalty.services.orders import apply_order
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.tests.orderkit import (
    DAY,
    HOUR,
    PLATFORM,
    balances,
    publish,
    put,
    state,
)
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _set_tier(member, code: str) -> None:
    Account.objects.update_or_create(pk=member.pk, defaults={"tier": code})


# --- Earning (PTS-1) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier_code", "category", "amount", "expected"),
    [
        ("regular", "ticket", "1000.00", 1000),  # 1000 x 1 x 1
        ("silver", "ticket", "999.99", 1199),  # floor(1199.988)
        ("gold", "merchandise", "1000.00", 750),  # 1000 x 1.5 x 0.5
        ("gold", "concession", "333.33", 999),  # floor(333.33 x 1.5 x 2 = 999.99)
        ("regular", "concession", "0.49", 0),  # floor(0.98): no lot at all
    ],
)
def test_pts1_earning_is_floor_of_amount_x_tier_rate_x_category_multiplier(
    tier_code, category, amount, expected
):
    publish(categories={"ticket": "1", "concession": "2", "merchandise": "0.5"})
    member = make_member()
    _set_tier(member, tier_code)
    result = put(member, "A-1", amount=amount, category=category)
    assert result.points == {
        "earned": expected,
        "pending": expected,
        "available": 0,
        "clawed_back": 0,
    }
    lots = list(Lot.objects.filter(member=member))
    if expected == 0:
        assert lots == []
    else:
        (lot,) = lots
        assert (lot.source, lot.amount, lot.status) == ("purchase", expected, "pending")
        assert lot.rule["tier"] == tier_code
        assert lot.rule["version"] == 1
        assert lot.rule["kind"] == "purchase"
        assert Decimal(lot.rule["multiplier"]) == Decimal(
            {"ticket": "1", "concession": "2", "merchandise": "0.5"}[category]
        )
    assert balances(member) == (0, expected, 0)
    assert Order.objects.get(order_id="A-1").tier_at_paid == tier_code
    assert verify_ledger().ok


def test_pts1_diamond_rebate_is_a_second_pending_lot_at_the_point_value():
    member = make_member()
    _set_tier(member, "diamond")
    result = put(member, "D-1", amount="1234.56")
    purchase = Lot.objects.get(member=member, source="purchase")
    rebate = Lot.objects.get(member=member, source="rebate")
    assert purchase.amount == 2469  # floor(1234.56 x 2)
    assert rebate.amount == 2469  # floor(1234.56 x 0.02 x 100)
    assert rebate.status == "pending"
    assert rebate.rule["kind"] == "rebate"
    assert Decimal(rebate.rule["rebate_rate"]) == Decimal("0.02")
    assert result.points["pending"] == 4938
    assert set(Entry.objects.values_list("key", flat=True)) == {
        "order:D-1:paid:0.00:purchase",
        "order:D-1:paid:0.00:rebate",
    }


def test_pts1_late_order_earns_at_the_tier_held_when_it_was_paid():
    member = make_member()
    _set_tier(member, "gold")
    TierChange.objects.create(
        member=member,
        from_tier="silver",
        to_tier="gold",
        kind="upgrade",
        reason="order_paid",
        spend=Decimal("10000"),
        orders=30,
        loyalty=0,
        program_version=0,
        changed_at=NOW - 2 * DAY,
    )
    late = put(member, "L-1", paid_at=NOW - 3 * DAY)  # paid while still silver
    live = put(member, "L-2", paid_at=NOW - HOUR)
    assert late.points["earned"] == 1200
    assert live.points["earned"] == 1500
    assert Order.objects.get(order_id="L-1").tier_at_paid == "silver"


def test_pts1_points_earned_webhook_per_lot_with_ids_only():
    endpoint = webhooks.create_endpoint(
        name="shop", url="http://127.0.0.1:9/hook", events=["points.earned"], actor=PLATFORM
    ).endpoint
    try:
        member = make_member()
        _set_tier(member, "diamond")
        put(member, "W-1", amount="100.00")
        put(member, "W-1", amount="100.00")  # a retry queues nothing more
        rows = OutboxMessage.objects.filter(endpoint=endpoint, template="points.earned")
        assert rows.count() == 2
        data = sorted((json.loads(row.body)["data"] for row in rows), key=lambda d: d["source"])
        assert data == [
            {
                "member": member.number,
                "order_id": "W-1",
                "points": 200,
                "source": "purchase",
                "status": "pending",
            },
            {
                "member": member.number,
                "order_id": "W-1",
                "points": 200,
                "source": "rebate",
                "status": "pending",
            },
        ]
    finally:
        webhooks.forget()


# --- Pending until the return window closes (PTS-3) -----------------------------------


def test_pts3_points_stay_pending_until_the_window_closes_after_delivery():
    member = make_member()
    put(member, "P-1")
    delivered_at = NOW - 2 * DAY
    result = put(member, "P-1", "delivered", delivered_at=delivered_at)
    lot = Lot.objects.get(member=member)
    order = Order.objects.get(order_id="P-1")
    assert order.final_at == delivered_at + 7 * DAY
    assert (lot.status, lot.release_at) == ("pending", order.final_at)
    assert result.points["pending"] == 1000
    assert balances(member) == (0, 1000, 0)


def test_pts3_delivery_reported_after_the_window_closed_releases_at_once():
    member = make_member()
    put(member, "P-2", paid_at=NOW - 20 * DAY)
    result = put(member, "P-2", "delivered", paid_at=NOW - 20 * DAY, delivered_at=NOW - 8 * DAY)
    lot = Lot.objects.get(member=member)
    assert lot.status == "available"
    assert lot.available_at == NOW
    assert ledger.last_usable_day(lot.expires_at, program.current()) == dt.date(2027, 11, 22)
    assert result.points == {"earned": 1000, "pending": 0, "available": 1000, "clawed_back": 0}
    assert balances(member) == (1000, 0, 0)
    assert Entry.objects.filter(key="order:P-2:delivered:0.00:purchase", kind="release").exists()
    assert verify_ledger().ok


# --- Refunds and cancellations (PTS-3) ------------------------------------------------


def test_pts3_full_refund_before_the_window_closes_voids_the_pending_points():
    member = make_member()
    put(member, "R-1")
    put(member, "R-1", "delivered", delivered_at=NOW - DAY)
    result = put(member, "R-1", "refunded", delivered_at=NOW - DAY, refunded="1000.00")
    lot = Lot.objects.get(member=member)
    assert (lot.status, lot.remaining, lot.clawed) == ("void", 0, 1000)
    assert result.points == {"earned": 1000, "pending": 0, "available": 0, "clawed_back": 1000}
    assert balances(member) == (0, 0, 0)
    entry = Entry.objects.get(key="order:R-1:refunded:1000.00:purchase")
    assert (entry.kind, entry.pending_delta, entry.reason) == (
        "void_pending",
        -1000,
        "order_refunded",
    )
    report = verify_ledger()
    assert report.ok, report.problems


def test_pts3_partial_refunds_before_the_window_void_pro_rata_and_can_grow():
    member = make_member()
    _set_tier(member, "silver")  # rate 1.2: 1000.00 earns 1200
    put(member, "R-2")
    first = put(member, "R-2", "refunded", refunded="300.00")
    assert first.points["pending"] == 840  # floor(700 x 1.2)
    second = put(member, "R-2", "refunded", refunded="999.99")
    assert second.points["pending"] == 0  # floor(0.01 x 1.2)
    assert second.points["clawed_back"] == 1200
    assert balances(member) == (0, 0, 0)
    lot = Lot.objects.get(member=member)
    assert lot.status == "void"
    assert verify_ledger().ok


def test_pts3_refund_after_the_window_claws_back_available_points_pro_rata():
    member = make_member()
    put(member, "R-3", paid_at=NOW - 30 * DAY, delivered_at=NOW - 20 * DAY, status="delivered")
    assert balances(member) == (1000, 0, 0)
    put(
        member,
        "R-3",
        "refunded",
        paid_at=NOW - 30 * DAY,
        delivered_at=NOW - 20 * DAY,
        refunded="250.00",
    )
    assert balances(member) == (750, 0, 0)
    entry = Entry.objects.get(key="order:R-3:refunded:250.00:purchase")
    assert (entry.kind, entry.points, entry.debt_delta) == ("clawback", -250, 0)
    result = put(
        member,
        "R-3",
        "refunded",
        paid_at=NOW - 30 * DAY,
        delivered_at=NOW - 20 * DAY,
        refunded="1000.00",
    )
    assert result.points == {"earned": 1000, "pending": 0, "available": 0, "clawed_back": 1000}
    assert balances(member) == (0, 0, 0)
    assert verify_ledger().ok


def test_pts3_refund_after_the_points_were_spent_records_a_debt_repaid_by_later_points():
    member = make_member()
    put(member, "S-1", "delivered", paid_at=NOW - 30 * DAY, delivered_at=NOW - 20 * DAY)
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        ledger.spend(account, 900, key="redeem-1", actor=PLATFORM)
    put(
        member,
        "S-1",
        "refunded",
        paid_at=NOW - 30 * DAY,
        delivered_at=NOW - 20 * DAY,
        refunded="1000.00",
    )
    assert balances(member) == (0, 0, 900)  # never negative: the shortfall is debt
    entry = Entry.objects.get(key="order:S-1:refunded:1000.00:purchase")
    assert (entry.points, entry.debt_delta) == (-100, 900)
    # The next points that become available repay the debt first.
    put(member, "S-2", "delivered", paid_at=NOW - 30 * DAY, delivered_at=NOW - 20 * DAY)
    assert balances(member) == (100, 0, 0)
    assert verify_ledger().ok


def test_pts3_refund_when_the_window_closed_but_the_release_job_has_not_run():
    member = make_member()
    put(member, "J-1", "delivered", paid_at=NOW - 10 * DAY, delivered_at=NOW - 7 * DAY + HOUR)
    assert balances(member) == (0, 1000, 0)  # window still open for an hour
    with time_machine.travel(NOW + 2 * HOUR, tick=False):
        put(
            member,
            "J-1",
            "refunded",
            paid_at=NOW - 10 * DAY,
            delivered_at=NOW - 7 * DAY + HOUR,
            refunded="400.00",
        )
    # Released first (the window had closed), then clawed back pro rata from available.
    assert balances(member) == (600, 0, 0)
    kinds = list(Entry.objects.filter(member=member).order_by("id").values_list("kind", flat=True))
    assert kinds == ["earn_pending", "release", "clawback"]
    assert verify_ledger().ok


def test_pts3_cancelled_paid_order_voids_everything_and_is_final():
    member = make_member()
    _set_tier(member, "diamond")
    put(member, "C-1")
    result = put(member, "C-1", "cancelled")
    assert result.points["pending"] == 0
    assert result.points["clawed_back"] == 4000  # purchase 2000 + rebate 2000
    assert result.refunded_amount == Decimal("1000.00")
    assert balances(member) == (0, 0, 0)
    assert set(Lot.objects.values_list("status", flat=True)) == {"void"}
    before = counts()
    with pytest.raises(Conflict) as refused:
        put(member, "C-1", "refunded", refunded="10.00")
    assert refused.value.code == "stale_order_state"
    assert counts() == before
    assert put(member, "C-1", "cancelled").changed is False
    assert verify_ledger().ok


def test_pts3_cancel_after_delivery_is_refused_and_changes_nothing():
    member = make_member()
    put(member, "C-2", "delivered", delivered_at=NOW - DAY)
    before = counts()
    with pytest.raises(Conflict) as refused:
        put(member, "C-2", "cancelled")
    assert refused.value.code == "invalid_transition"
    with pytest.raises(Conflict) as refused:
        put(member, "C-3", "cancelled", delivered_at=NOW - DAY)
    assert refused.value.code == "invalid_transition"
    assert counts() == before


# --- States: retries, order, conflicts (PTS-7) ----------------------------------------


def test_pts7_the_same_state_again_changes_nothing_and_answers_the_same():
    member = make_member()
    first = put(member, "I-1")
    before = counts()
    again = put(member, "I-1")
    assert counts() == before
    assert again.changed is False and first.changed is True
    assert (again.points, again.tier, again.status) == (first.points, first.tier, first.status)
    put(member, "I-1", "refunded", refunded="100.00")
    before = counts()
    assert put(member, "I-1", "refunded", refunded="100.00").changed is False
    assert counts() == before


def test_pts7_an_older_state_is_refused_with_409_and_changes_nothing():
    member = make_member()
    put(member, "O-1", "delivered", delivered_at=NOW - DAY)
    put(member, "O-1", "refunded", delivered_at=NOW - DAY, refunded="300.00")
    before = counts()
    for older in (
        {"status": "paid"},
        {"status": "delivered", "delivered_at": NOW - DAY},
        {"status": "refunded", "delivered_at": NOW - DAY, "refunded": "200.00"},
    ):
        with pytest.raises(Conflict) as refused:
            put(member, "O-1", **older)
        assert refused.value.code == "stale_order_state"
    assert counts() == before
    assert Order.objects.get(order_id="O-1").refunded_amount == Decimal("300.00")


def test_pts7_first_sight_in_a_late_state_applies_the_whole_history():
    member = make_member()
    result = put(
        member,
        "H-1",
        "refunded",
        paid_at=NOW - 40 * DAY,
        delivered_at=NOW - 35 * DAY,
        refunded="100.00",
    )
    assert result.points == {"earned": 1000, "pending": 0, "available": 900, "clawed_back": 100}
    assert balances(member) == (900, 0, 0)
    assert list(OrderState.objects.values_list("status", flat=True)) == ["refunded"]
    kinds = list(Entry.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["earn_pending", "release", "clawback"]
    # A cancelled order seen first: earned and voided at once, nets to zero.
    put(make_member(), "H-2", "cancelled")
    assert Lot.objects.get(order__order_id="H-2").status == "void"
    assert verify_ledger().ok


def test_pts7_immutable_fields_that_change_are_409_order_conflict_naming_them():
    member, other = make_member(), make_member()
    put(member, "X-1")
    before = counts()
    with pytest.raises(Conflict) as refused:
        put(member, "X-1", "delivered", amount="999.00", category="merchandise", delivered_at=NOW)
    assert refused.value.code == "order_conflict"
    assert {e.field for e in refused.value.errors} == {"amount", "category"}
    with pytest.raises(Conflict) as refused:
        put(other, "X-1")
    assert [e.field for e in refused.value.errors] == ["member"]
    with pytest.raises(Conflict):
        put(member, "X-1", paid_at=NOW - 2 * HOUR)
    put(member, "X-1", "delivered", delivered_at=NOW - HOUR)
    before = counts()
    with pytest.raises(Conflict) as refused:
        put(member, "X-1", "refunded", delivered_at=NOW - 2 * HOUR, refunded="1.00")
    assert [e.field for e in refused.value.errors] == ["delivered_at"]
    assert counts() == before


def test_pts3_a_refund_may_bring_the_delivery_time_not_seen_before():
    member = make_member()
    paid_at = NOW - 20 * DAY
    put(member, "N-1", paid_at=paid_at)
    put(member, "N-1", "refunded", paid_at=paid_at, refunded="500.00")
    result = put(
        member, "N-1", "refunded", paid_at=paid_at, refunded="500.00", delivered_at=NOW - 10 * DAY
    )
    assert result.changed is True
    assert Order.objects.get(order_id="N-1").final_at == NOW - 3 * DAY
    assert balances(member) == (500, 0, 0)  # the window has closed: released
    assert verify_ledger().ok


# --- Input checks ---------------------------------------------------------------------


def test_order_input_every_bad_field_is_reported_at_once_and_nothing_changes():
    member = make_member()
    before = counts()
    with pytest.raises(ValidationFailed) as refused:
        apply_order(
            {
                "order_id": "bad id with spaces",
                "member": member.number,
                "amount": "-5",
                "currency": "USD",
                "category": "popcorn",
                "status": "shipped",
                "paid_at": "yesterday",
                "refunded_amount": "1.001",
                "store": "x" * 65,
            },
            actor=PLATFORM,
        )
    codes = {e.field: e.code for e in refused.value.errors}
    assert codes == {
        "order_id": "invalid",
        "amount": "must_be_positive",
        "currency": "unsupported_currency",
        "category": "unknown_category",
        "status": "invalid_status",
        "paid_at": "invalid",
        "refunded_amount": "invalid",
        "store": "invalid",
    }
    assert counts() == before


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"amount": "0"}, "amount", "must_be_positive"),
        ({"amount": "10000000.01"}, "amount", "too_large"),
        ({"amount": "NaN"}, "amount", "invalid"),
        ({"status": "refunded"}, "refunded_amount", "refund_required"),
        (
            {"status": "refunded", "refunded_amount": "1000.01"},
            "refunded_amount",
            "refund_exceeds_amount",
        ),
        (
            {"status": "delivered", "refunded_amount": "1.00", "delivered_at": NOW},
            "refunded_amount",
            "refund_needs_refunded_status",
        ),
        ({"status": "delivered"}, "delivered_at", "required"),
        ({"status": "delivered", "delivered_at": NOW - 4 * DAY}, "delivered_at", "before_paid"),
        ({"delivered_at": NOW}, "delivered_at", "invalid_for_status"),
        ({"paid_at": NOW + HOUR}, "paid_at", "out_of_range"),
        ({"currency": ""}, "currency", "required"),
        ({"order_id": "x" * 65}, "order_id", "invalid"),
    ],
)
def test_order_input_single_errors_have_stable_codes(changes, field, code):
    member = make_member()
    data = state(member, "E-1")
    data.update(changes)
    if "refunded" in changes:
        data["refunded_amount"] = changes.pop("refunded")
    before = counts()
    with pytest.raises(ValidationFailed) as refused:
        apply_order(data, actor=PLATFORM)
    assert [(e.field, e.code) for e in refused.value.errors] == [(field, code)]
    assert refused.value.code == code
    assert counts() == before


def test_order_times_without_offset_are_read_in_the_program_time_zone():
    member = make_member()
    put(member, "T-1", paid_at="2026-11-22T09:00:00")
    assert Order.objects.get(order_id="T-1").paid_at == NOW - HOUR


def test_order_for_unknown_or_cancelled_member_is_refused_and_changes_nothing():
    member = make_member()
    put(member, "M-1")
    before = counts()
    with pytest.raises(NotFound) as refused:
        apply_order({**state(member, "M-2"), "member": "000000000000"}, actor=PLATFORM)
    assert refused.value.code == "member_not_found"
    Member.objects.filter(pk=member.pk).update(status=Member.Status.CANCELLED)
    with pytest.raises(Conflict) as refused:
        put(member, "M-3")
    assert refused.value.code == "member_cancelled"
    assert counts() == before
    # A known order of a cancelled member still follows its refunds, so the books close.
    put(member, "M-1", "cancelled")
    assert balances(member) == (0, 0, 0)
