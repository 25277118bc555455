"""``apply_orders`` (POST /orders:batch): item-by-item answers, the same ledger as one by
one, the 1,000-item limit, and the one-by-one fallback when a set-based write fails."""

from __future__ import annotations

import pytest
import time_machine
from django.db import transaction

from patron.core.exceptions import Conflict, NotFound, PatronError, ValidationFailed
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit
from patron.loyalty.models import Account, Entry, Lot, Order, TierChange
from patron.loyalty.services.orders import BATCH_MAX, OrderResult, apply_order, apply_orders
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.tests.orderkit import DAY, PLATFORM, balances, put, state
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_batch_answers_item_by_item_in_order():
    member, cancelled = make_member(), make_member()
    put(member, "K-1", amount="500.00")
    Member.objects.filter(pk=cancelled.pk).update(status=Member.Status.CANCELLED)
    items = [
        state(member, "B-1"),
        {**state(member, "B-2"), "amount": "abc"},
        {**state(member, "B-3"), "member": "999999999999"},
        state(member, "B-1", "delivered", delivered_at=NOW - DAY),
        state(member, "K-1", "refunded", amount="500.00", refunded="100.00"),
        state(member, "K-1", "paid", amount="500.00"),  # older than what is recorded now
        state(cancelled, "B-4"),
        "not an object",
    ]
    results = apply_orders(items, actor=PLATFORM)
    assert len(results) == len(items)
    ok, bad_amount, unknown, delivered, refunded, stale, gone, junk = results
    assert isinstance(ok, OrderResult) and ok.points["pending"] == 1000
    assert isinstance(bad_amount, ValidationFailed) and bad_amount.errors[0].field == "amount"
    assert isinstance(unknown, NotFound) and unknown.code == "member_not_found"
    assert isinstance(delivered, OrderResult) and delivered.status == "delivered"
    assert isinstance(refunded, OrderResult) and refunded.points["pending"] == 400
    assert isinstance(stale, Conflict) and stale.code == "stale_order_state"
    assert isinstance(gone, Conflict) and gone.code == "member_cancelled"
    assert isinstance(junk, ValidationFailed)
    assert not Order.objects.filter(order_id__in=["B-2", "B-3", "B-4"]).exists()
    assert Order.objects.get(order_id="B-1").final_at == NOW + 6 * DAY
    assert balances(member) == (0, 1400, 0)
    assert verify_ledger().ok


def test_batch_over_the_limit_is_refused_whole():
    member = make_member()
    before = counts()
    with pytest.raises(ValidationFailed) as refused:
        apply_orders([state(member, f"Z-{n}") for n in range(BATCH_MAX + 1)], actor=PLATFORM)
    assert refused.value.code == "too_many_orders"
    assert counts() == before


def _ledger(members: list[Member], prefix: str) -> list:
    """Everything the orders wrote, per member position, with the order-id prefix removed."""

    def strip(key):
        return key.replace(f":{prefix}", ":") if key else key

    snapshot = []
    for member in members:
        account = Account.objects.get(pk=member.pk)
        snapshot.append(
            {
                "account": (account.available, account.pending, account.debt, account.tier),
                "orders": sorted(
                    (
                        o.order_id[len(prefix) :],
                        o.status,
                        o.refunded_amount,
                        o.tier_at_paid,
                        o.final_at,
                        o.delivered_at,
                    )
                    for o in Order.objects.filter(member=member)
                ),
                "lots": sorted(
                    (
                        lot.order.order_id[len(prefix) :] if lot.order else "",
                        lot.source,
                        lot.amount,
                        lot.remaining,
                        lot.status,
                        lot.clawed,
                        lot.release_at,
                        lot.available_at,
                        lot.expires_at,
                        sorted(lot.rule.items()),
                    )
                    for lot in Lot.objects.filter(member=member).select_related("order")
                ),
                "entries": sorted(
                    (
                        strip(e.key),
                        e.kind,
                        e.points,
                        e.pending_delta,
                        e.debt_delta,
                        e.reason,
                        sorted(e.allocations.values_list("points", flat=True)),
                    )
                    for e in Entry.objects.filter(member=member)
                ),
                "tiers": sorted(
                    (
                        c.kind,
                        c.from_tier,
                        c.to_tier,
                        c.reason,
                        c.spend,
                        c.orders,
                        strip(c.key or ""),
                    )
                    for c in TierChange.objects.filter(member=member)
                ),
            }
        )
    return snapshot


def _scenario(prefix: str) -> tuple[list[Member], list[dict]]:
    regular, silver, diamond, debtor = (make_member() for _ in range(4))
    Account.objects.update_or_create(pk=silver.pk, defaults={"tier": "silver"})
    Account.objects.update_or_create(pk=diamond.pk, defaults={"tier": "diamond"})
    with transaction.atomic():  # the debtor owes 300 points
        account = ledger.lock_account(debtor.pk)
        lot = ledger.credit(
            account,
            Credit(points=300, source="adjustment", key=f"seed:{prefix}"),
            rules=program.current(),
            actor=PLATFORM,
        )
        ledger.spend(account, 300, key=f"spend:{prefix}", actor=PLATFORM)
        ledger.take_back(account, lot, 300, key=f"claw:{prefix}", actor=PLATFORM, reason="t")
    old, delivered_old = NOW - 40 * DAY, NOW - 30 * DAY
    p = prefix
    items = [
        state(regular, f"{p}1", amount="120.50"),
        state(regular, f"{p}2", "delivered", amount="80.00", delivered_at=NOW - DAY),
        state(regular, f"{p}3", "delivered", paid_at=old, delivered_at=delivered_old),
        state(
            regular, f"{p}4", "refunded", paid_at=old, delivered_at=delivered_old, refunded="333.33"
        ),
        state(regular, f"{p}5", "refunded", refunded="1000.00"),
        state(regular, f"{p}6", "cancelled", category="merchandise"),
        state(regular, f"{p}7", amount="1500.00"),  # the upgrade to Silver comes here
        state(silver, f"{p}8", "refunded", amount="999.99", refunded="0.01"),
        state(
            diamond, f"{p}9", "delivered", amount="4321.09", paid_at=old, delivered_at=delivered_old
        ),
        state(diamond, f"{p}10", "refunded", amount="100.00", refunded="37.00"),
        state(debtor, f"{p}11", "delivered", paid_at=old, delivered_at=delivered_old),
        state(debtor, f"{p}12", amount="10.00"),
        state(regular, f"{p}1", "refunded", amount="120.50", refunded="20.50"),
    ]
    return [regular, silver, diamond, debtor], items


def test_batch_writes_exactly_what_one_by_one_writes():
    one_members, one_items = _scenario("s")
    one = [apply_order(item, actor=PLATFORM) for item in one_items]
    batch_members, batch_items = _scenario("b")
    batch = apply_orders(batch_items, actor=PLATFORM)
    assert all(isinstance(r, OrderResult) for r in batch), batch
    assert [(r.status, r.points, r.tier) for r in batch] == [
        (r.status, r.points, r.tier) for r in one
    ]
    assert _ledger(batch_members, "b") == _ledger(one_members, "s")
    assert balances(batch_members[3]) == (700, 10, 0)  # the debt was repaid first
    report = verify_ledger()
    assert report.ok, report.problems


def test_batch_enqueues_the_tier_notice_task_once(django_capture_on_commit_callbacks):
    members = [make_member() for _ in range(3)]
    with django_capture_on_commit_callbacks() as callbacks:
        results = apply_orders(
            [state(m, f"Q-{m.pk}", amount="2500.00") for m in members], actor=PLATFORM
        )
    assert {r.tier for r in results} == {"silver"}
    assert TierChange.objects.count() == 3
    assert len(callbacks) == 1


def test_batch_falls_back_to_one_by_one_when_a_set_based_write_fails():
    member, other = make_member(), make_member()
    with transaction.atomic():  # a ledger key the batch would write is already taken
        account = ledger.lock_account(other.pk)
        ledger.credit(
            account,
            Credit(points=1, source="adjustment", key="order:F-2:paid:0.00:purchase"),
            rules=program.current(),
            actor=PLATFORM,
        )
    results = apply_orders([state(member, "F-1"), state(member, "F-2")], actor=PLATFORM)
    assert isinstance(results[0], OrderResult) and results[0].changed
    assert isinstance(results[1], PatronError) and results[1].code == "retry_order"
    assert list(Order.objects.filter(member=member).values_list("order_id", flat=True)) == ["F-1"]
    assert balances(member) == (0, 1000, 0)
    assert verify_ledger().ok


def test_batch_of_new_orders_is_written_set_based(django_assert_max_num_queries):
    members = [make_member() for _ in range(50)]
    items = [state(m, f"V-{m.pk}-{n}", amount="100.00") for m in members for n in range(4)]
    with django_assert_max_num_queries(25):
        results = apply_orders(items, actor=PLATFORM)
    assert all(isinstance(r, OrderResult) and r.changed for r in results)
    assert Lot.objects.count() == 200
    assert verify_ledger().ok


def test_batch_keeps_every_character_of_text_values():
    member = make_member()
    store = "a\"b\\c{d},e NULL 影城's"
    results = apply_orders([state(member, "Q:1.x_y-z", store=store)], actor=PLATFORM)
    assert isinstance(results[0], OrderResult)
    order = Order.objects.get(order_id="Q:1.x_y-z")
    assert order.store == store
    assert Lot.objects.get(order=order).rule["tier"] == "regular"
