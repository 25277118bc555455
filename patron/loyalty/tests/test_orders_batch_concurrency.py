"""Batches in parallel claiming the same new order ids for different members: the set-based
insert skips an id another batch wrote (waiting for it to commit) and the item goes one by
one, so each order goes to exactly one member and the ledger stays whole."""

from __future__ import annotations

import pytest
import time_machine

from patron.loyalty.models import Lot, Order
from patron.loyalty.services.orders import OrderResult, apply_orders
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.orderkit import PLATFORM, balances, state
from patron.loyalty.tests.test_orders_concurrency import in_threads
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


def test_two_batches_claiming_the_same_new_order_ids_give_each_to_one_member():
    members = [make_member(), make_member()]
    ids = [f"SHARED-{n}" for n in range(20)]

    def work(index: int):
        member = members[index]
        return apply_orders(
            [state(member, order_id, amount="100.00") for order_id in ids]
            + [state(member, f"OWN-{index}", amount="100.00")],
            actor=PLATFORM,
        )

    results = in_threads(2, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    for answers in results:
        assert isinstance(answers[-1], OrderResult) and answers[-1].changed
        assert {getattr(a, "code", "ok") for a in answers[:-1]} <= {"ok", "order_conflict"}
    won = [
        sum(isinstance(a, OrderResult) for a in answers[:-1]) for answers in results
    ]  # per member
    assert sum(won) == len(ids)
    assert Order.objects.count() == len(ids) + 2
    assert Lot.objects.count() == len(ids) + 2
    for member, count in zip(members, won, strict=True):
        assert Order.objects.filter(member=member).count() == count + 1
        assert balances(member) == (0, 100 * (count + 1), 0)
    assert verify_ledger().ok
