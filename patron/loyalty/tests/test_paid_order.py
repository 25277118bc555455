"""A new paid order written by ``services.paid_order`` (one statement on PostgreSQL, a few
plain ones on SQLite) has exactly the rows the general path (``orders._first_sight``)
writes (PTS-1, PTS-3, TIER-3)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from patron.core import clock
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Entry, Lot, Order, OrderState
from patron.loyalty.services import orders, paid_order
from patron.loyalty.services.orders import OrderResult, apply_order
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.tests.orderkit import DAY, PLATFORM, state
from patron.loyalty.tests.test_orders_batch import _ledger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _general(data: dict) -> OrderResult:
    """The order through the general path, as SQLite takes it."""
    rules = program.current()
    item = orders.parse(data, rules, clock.now())
    with transaction.atomic():
        account, status = orders._lock_member(item.member)
        ctx = orders._Context(rules, clock.now(), PLATFORM, item.member, status)
        order = orders._new_order(ctx, account, item)
        assert orders._insert_rows(Order, [order], unique="order_id")
        return orders._first_sight(ctx, account, item, order)


def _scenario(prefix: str):
    regular, near, diamond = (make_member() for _ in range(3))
    Account.objects.update_or_create(pk=diamond.pk, defaults={"tier": "diamond"})
    p = prefix
    history = [state(near, f"{p}h{n}", amount="400.00", paid_at=NOW - n * DAY) for n in (5, 6)]
    items = [
        state(regular, f"{p}1", amount="120.50"),
        state(regular, f"{p}2", amount="0.50"),  # earns no points: no lot
        state(regular, f"{p}3", amount="99.99", category="merchandise"),
        state(near, f"{p}4", amount="1300.00"),  # 400 + 400 + 1,300: Silver at once
        state(near, f"{p}5", amount="10.00", paid_at=NOW - 400 * DAY),  # outside the window
        state(diamond, f"{p}6", amount="4321.09"),  # purchase and cash-back lots
    ]
    return [regular, near, diamond], history, items


def test_pts1_one_statement_writes_what_the_general_path_writes():
    one_members, one_history, one_items = _scenario("q")
    general_members, general_history, general_items = _scenario("g")
    for item in one_history:
        apply_order(item, actor=PLATFORM)
    for item in general_history:
        _general(item)
    fast = [apply_order(item, actor=PLATFORM) for item in one_items]
    general = [_general(item) for item in general_items]
    assert [(r.points, r.tier, r.tier_change) for r in fast] == [
        (r.points, r.tier, r.tier_change) for r in general
    ]
    assert fast[3].tier_change == {
        "from_tier": "regular",
        "to_tier": "silver",
        "kind": "upgrade",
        "reason": "order_paid",
    }
    assert _ledger(one_members, "q") == _ledger(general_members, "g")
    assert Lot.objects.filter(order__order_id="q6").count() == 2


def test_pts7_one_statement_writes_nothing_when_the_order_id_is_taken():
    member = make_member()
    apply_order(state(member, "TAKEN-1"), actor=PLATFORM)
    before = counts()
    with transaction.atomic():
        account, _status = orders._lock_member(member.number)
        order = Order(
            order_id="TAKEN-1",
            member_id=member.pk,
            amount=Decimal("500.00"),
            category="ticket",
            status="paid",
            paid_at=NOW - DAY,
            tier_at_paid=account.tier,
            created_at=NOW,
            updated_at=NOW,
        )
        written = paid_order.write(
            account,
            order,
            rules=program.current(),
            actor=PLATFORM,
            at=NOW,
            entry_key=lambda kind: f"order:TAKEN-1:paid:0.00:{kind}",
        )
        assert written is None
        assert account.pending == 1000  # the in-memory balance is put back too
    assert counts() == before
    assert Account.objects.get(pk=member.pk).pending == 1000
    assert (Entry.objects.count(), OrderState.objects.count()) == (1, 1)
