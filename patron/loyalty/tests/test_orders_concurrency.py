"""Order events in parallel (PTS-7, architecture rule 3). Real threads and transactions on
both databases: on SQLite the IMMEDIATE transactions serialise; on PostgreSQL they race on
the account's row lock and exactly one of them applies a state."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import time_machine
from django.db import connections

from patron.core import clock
from patron.loyalty import figures
from patron.loyalty import rules as program
from patron.loyalty.models import Entry, Lot, Order, OrderState
from patron.loyalty.services.orders import OrderResult, apply_orders
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.orderkit import DAY, PLATFORM, balances, put, state
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


def in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # the test inspects what each thread ended with
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_pts7_the_same_order_state_sent_8_times_in_parallel_changes_once():
    member = make_member()
    results = in_threads(8, lambda i: put(member, "PAR-1", amount="1000.00"))
    assert all(isinstance(r, OrderResult) for r in results), results
    assert sorted(r.changed for r in results) == [False] * 7 + [True]
    assert {r.points["pending"] for r in results} == {1000}
    assert Lot.objects.count() == 1
    assert Entry.objects.count() == 1
    assert OrderState.objects.count() == 1
    assert balances(member) == (0, 1000, 0)
    assert verify_ledger().ok


def test_pts7_the_same_refund_sent_8_times_in_parallel_takes_back_once():
    member = make_member()
    put(member, "PAR-2", "delivered", paid_at=NOW - 30 * DAY, delivered_at=NOW - 20 * DAY)
    results = in_threads(
        8,
        lambda i: put(
            member,
            "PAR-2",
            "refunded",
            paid_at=NOW - 30 * DAY,
            delivered_at=NOW - 20 * DAY,
            refunded="400.00",
        ),
    )
    assert sorted(r.changed for r in results) == [False] * 7 + [True], results
    assert balances(member) == (600, 0, 0)
    assert Entry.objects.filter(kind="clawback").count() == 1
    assert verify_ledger().ok


def test_pts1_two_orders_of_one_member_in_parallel_both_count():
    member = make_member()
    results = in_threads(2, lambda i: put(member, f"TWO-{i}", amount="1500.00"))
    assert all(isinstance(r, OrderResult) and r.changed for r in results), results
    assert balances(member) == (0, 3000, 0)
    figs = figures.for_member(member.pk, clock.now(), program.current())
    assert (figs.spend, figs.orders) == (Decimal("3000.00"), 2)
    # Together they reach Silver (2,000): whichever came second upgraded the member.
    assert {r.tier for r in results} == {"regular", "silver"}
    assert verify_ledger().ok


def test_pts7_batches_and_single_events_for_the_same_members_in_parallel():
    members = [make_member() for _ in range(6)]

    def work(index: int):
        if index % 2:
            return put(members[index], f"ONE-{index}", amount="100.00")
        return apply_orders(
            [state(m, f"BAT-{index}-{m.pk}", amount="100.00") for m in members], actor=PLATFORM
        )

    results = in_threads(4, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Order.objects.count() == 2 * 6 + 2
    for member in members:
        expected = 100 * (2 + (1 if members.index(member) in (1, 3) else 0))
        assert balances(member) == (0, expected, 0)
    assert verify_ledger().ok


def test_pts7_one_new_order_id_claimed_by_two_members_in_parallel_goes_to_one():
    members = [make_member(), make_member()]
    results = in_threads(2, lambda i: put(members[i], "CLAIM-1", amount="100.00"))
    won = [r for r in results if isinstance(r, OrderResult)]
    lost = [r for r in results if not isinstance(r, OrderResult)]
    assert len(won) == 1 and len(lost) == 1, results
    assert getattr(lost[0], "code", None) == "order_conflict", lost
    assert Order.objects.count() == 1
    assert Lot.objects.count() == 1
    assert verify_ledger().ok
