"""The window's figures (TIER-2) have one definition in four forms: ``figures.for_member``
(one member), ``figures.member_sql`` (the same as SQL, for the order path),
``figures.window_sql`` + ``tier_case_sql`` (every member, for the evaluation and the dry
run) and ``orders.figures_for`` (a batch's members). On a varied data set, boundaries
included, all four give the same spend, orders, loyalty score and tier."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connection

from patron.loyalty import figures
from patron.loyalty import rules as program
from patron.loyalty.models import Account, LoyaltyEvent, Order
from patron.loyalty.services.orders import figures_for
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.orderkit import SPEND_ONLY, publish

pytestmark = pytest.mark.django_db
CENT = Decimal("0.01")


def _data(seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    start = figures.window_start(NOW, program.current())
    ids = []
    for _ in range(40):
        member = make_member()
        Account.objects.get_or_create(pk=member.pk)
        ids.append(member.pk)
        for n in range(rng.choice([0, 1, 3, 12, 35])):
            amount = Decimal(rng.choice(["0.01", "19.90", "99.99", "250.00", "1234.56", "8000"]))
            status = rng.choice(["paid", "delivered", "delivered", "refunded", "cancelled"])
            refunded = Decimal(0)
            if status == "refunded":
                refunded = rng.choice([amount, (amount / 3).quantize(CENT), CENT])
            if status == "cancelled":
                refunded = rng.choice([Decimal(0), amount])
            paid_at = rng.choice(
                [
                    start,  # just outside: the window is (start, at]
                    start + dt.timedelta(microseconds=1),
                    NOW,  # just inside
                    NOW + dt.timedelta(seconds=1),  # after: not counted
                    NOW - dt.timedelta(days=rng.randint(0, 460), seconds=rng.randint(0, 86399)),
                ]
            )
            Order.objects.create(
                order_id=f"F-{member.pk}-{n}",
                member=member,
                amount=amount,
                category="ticket",
                status=status,
                refunded_amount=refunded,
                paid_at=paid_at,
                tier_at_paid="regular",
            )
        for n in range(rng.choice([0, 0, 2, 12])):
            LoyaltyEvent.objects.create(
                member=member,
                kind=rng.choice(["activity", "referral"]),
                score=rng.choice([1, 3]),
                occurred_at=rng.choice([start, NOW, NOW - dt.timedelta(days=rng.randint(0, 460))]),
                key=f"ev-{member.pk}-{n}",
            )
    return ids


def _sql_rows(rules, at, **bounds) -> dict[int, tuple[Decimal, int, int, str]]:
    sql, params = figures.window_sql(at, rules, **bounds)
    case, case_params = figures.tier_case_sql(rules, "w.spend", "w.orders", "w.loyalty")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT w.member_id, w.spend, w.orders, w.loyalty, {case} FROM ({sql}) w",  # noqa: S608
            [*case_params, *params],
        )
        return {
            member_id: (Decimal(str(spend)).quantize(CENT), int(orders), int(loyalty), tier)
            for member_id, spend, orders, loyalty, tier in cursor.fetchall()
        }


@pytest.mark.parametrize("spend_only", [False, True])
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
def test_tier2_for_member_window_sql_and_batch_figures_agree(spend_only, zone):
    if spend_only:
        publish(tier_changes=SPEND_ONLY)
    rules = program.current()
    ids = _data()
    at = NOW.astimezone(zoneinfo.ZoneInfo(zone))
    python = {}
    for member_id in ids:
        f = figures.for_member(member_id, at, rules)
        tier = rules.qualified_tier(f.spend, f.orders, f.loyalty).code
        python[member_id] = (f.spend, f.orders, f.loyalty, tier)
    sql = _sql_rows(rules, at)
    assert {k: v for k, v in sql.items() if k in python} == python
    lo, hi = sorted(ids)[5], sorted(ids)[20]
    ranged = _sql_rows(rules, at, lo=lo, hi=hi)
    assert ranged == {k: v for k, v in python.items() if lo <= k <= hi}
    one_by_one = {}
    for member_id in ids:
        sql, params = figures.member_sql(member_id, at, rules)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            spend, orders, loyalty = cursor.fetchone()
        one_by_one[member_id] = (Decimal(str(spend)).quantize(CENT), int(orders), int(loyalty))
    assert one_by_one == {k: v[:3] for k, v in python.items()}
    batch = figures_for(ids, at, rules)
    assert {k: (f.spend, f.orders, f.loyalty) for k, f in batch.items()} == {
        k: v[:3] for k, v in python.items()
    }
    # The data reach every tier, so the comparison means something.
    assert len({v[3] for v in python.values()}) >= 3
