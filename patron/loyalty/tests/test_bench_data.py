"""The benchmark's data generator (benchmarks/loyalty_data.py) at 1,000 members: the rows it
writes form a consistent ledger (PTS-7), the same rows on SQLite and PostgreSQL, and the
hand-written expiry SQL the benchmark compares ``expire_points`` with keeps it consistent
(PTS-5). The benchmark itself never runs in ``make test``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum

from benchmarks.loyalty_data import (
    DataSpec,
    expire_sql,
    generate,
    ledger_summary,
    member_number,
    tiers_sql,
)
from patron.core import ids
from patron.loyalty.models import Account, Allocation, Entry, Lot, LoyaltyEvent, Order
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member, User

SPEC = DataSpec(members=1_000, orders=10_000, lots=400, as_of=dt.date(2026, 10, 1))


def _generate() -> dict:
    return generate(SPEC, log=lambda message: None, analyze=False)


def _orphans(sql: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_pts7_bench_data_is_a_consistent_ledger():
    out = _generate()

    assert out["counts"] == {
        "members_user": 1_000,
        "members_member": 1_000,
        "loyalty_account": 1_000,
        "loyalty_order": 10_000,
        "loyalty_loyaltyevent": 50 * 13,
        "loyalty_lot": 600,
        "loyalty_entry": 600 + 150,
        "loyalty_allocation": 150,
        "loyalty_tierchange": 0,
    }
    report = verify_ledger()
    assert report.ok, report.problems
    # Foreign keys hold although the PostgreSQL load turns their triggers off.
    assert (
        _orphans(
            "SELECT COUNT(*) FROM loyalty_order o LEFT JOIN members_member m ON m.id = o.member_id"
            " WHERE m.id IS NULL"
        )
        == 0
    )
    assert (
        _orphans(
            "SELECT COUNT(*) FROM loyalty_lot l LEFT JOIN loyalty_order o ON o.id = l.order_id"
            " WHERE o.id IS NULL"
        )
        == 0
    )
    assert (
        _orphans(
            "SELECT COUNT(*) FROM loyalty_allocation a JOIN loyalty_entry e ON e.id = a.entry_id"
            " JOIN loyalty_lot l ON l.id = a.lot_id"
            " WHERE e.kind <> 'redeem' OR e.member_id <> l.member_id"
        )
        == 0
    )
    # Members are usable: valid numbers, decryptable personal data, one user each.
    member = Member.objects.select_related("user").get(pk=7)
    assert member.number == member_number(7)
    assert all(ids.luhn_valid(n) for n in Member.objects.values_list("number", flat=True))
    assert member.phone == "+8613800000000"
    assert member.user.username == "lb7"
    assert User.objects.filter(member__isnull=True).count() == 0
    # The sequences follow the explicit ids: the ORM can add rows after the load.
    assert (
        Order.objects.create(
            order_id="after-load",
            member=member,
            amount=Decimal("1"),
            category="ticket",
            status="paid",
            paid_at=SPEC.boundary(),
            tier_at_paid="regular",
        ).pk
        == 10_001
    )


@pytest.mark.django_db
def test_pts5_bench_data_shape_is_the_same_on_every_database():
    """Every value is a hash of the row number: these figures are the same on SQLite and
    PostgreSQL (numbers from a run on SQLite)."""
    _generate()
    boundary = SPEC.boundary()

    statuses = dict(Order.objects.values_list("status").annotate(n=Count("id")))
    assert statuses == {"cancelled": 459, "delivered": 8_538, "paid": 348, "refunded": 655}
    assert Order.objects.aggregate(s=Sum("amount"))["s"].quantize(Decimal("0.01")) == Decimal(
        "2611085.71"
    )
    assert Order.objects.filter(paid_at__gte=boundary).count() == 0
    assert Order.objects.filter(paid_at__lt=boundary - dt.timedelta(days=457)).count() == 0
    assert Order.objects.values("member").distinct().count() == 1_000
    # 400 lots expired in the 30 days before the as-of date, 200 expire in the 11 months after.
    expired = Lot.objects.filter(expires_at__lt=boundary)
    assert expired.count() == 400
    assert expired.filter(expires_at__lt=boundary - dt.timedelta(days=30)).count() == 0
    assert Lot.objects.filter(expires_at__gt=boundary + dt.timedelta(days=332)).count() == 0
    assert Lot.objects.aggregate(s=Sum("amount"))["s"] == 163_296
    assert Account.objects.aggregate(s=Sum("available"))["s"] == 142_137
    assert LoyaltyEvent.objects.values("member").distinct().count() == 50
    tiers = dict(Account.objects.values_list("tier").annotate(n=Count("member")))
    assert tiers == {"gold": 3, "regular": 564, "silver": 433}


@pytest.mark.django_db
def test_pts5_bench_expiry_sql_makes_consistent_writes():
    _generate()
    before = ledger_summary()
    expiring = Lot.objects.filter(status="available", expires_at__lt=SPEC.boundary())
    points = expiring.aggregate(s=Sum("remaining"))["s"]

    out = expire_sql(SPEC.as_of)

    assert (out["lots"], out["points"]) == (400, points)
    after = ledger_summary()
    assert after["entries"]["expire"] == {"count": 400, "points": -points}
    assert after["lots"]["expired"] == {"count": 400, "remaining": 0}
    assert after["allocations"]["count"] == before["allocations"]["count"] + 400
    assert after["accounts"]["available"] == before["accounts"]["available"] - points
    assert (
        Entry.objects.filter(kind="expire").count()
        == Allocation.objects.filter(entry__kind="expire").count()
    )
    report = verify_ledger()
    assert report.ok, report.problems


@pytest.mark.django_db
def test_tier2_bench_tier_aggregate_counts_every_account():
    _generate()
    out = tiers_sql(SPEC.as_of, repeat=1)
    assert sum(out["tiers"].values()) == 1_000
    assert set(out["tiers"]) <= {"regular", "silver", "gold", "diamond"}


def test_ops2_bench_order_events_never_race_their_own_order():
    """The order-event mix (benchmarks/loyalty.py): every state of an order follows its
    previous state by at least 400 events, so 16 clients cannot send them out of order
    (a refund overtaking its order's delivery was refused 409, rightly, in one run)."""
    import json

    from benchmarks.loyalty import order_events

    requests = order_events("ptn_key", members=1_000, count=6_000, run_id="t")
    last: dict[str, tuple[int, str]] = {}
    kinds: dict[str, int] = {"paid": 0, "delivered": 0, "refunded": 0}
    for n, request in enumerate(requests):
        order_id = request.path.rsplit("/", 1)[1]
        status = json.loads(request.body)["status"]
        kinds[status] += 1
        if order_id in last:
            previous_n, previous = last[order_id]
            assert n - previous_n >= 400, (order_id, previous, status)
            assert (previous, status) in {
                ("paid", "delivered"),
                ("paid", "refunded"),
                ("delivered", "refunded"),
            }
        else:
            assert status == "paid"
        last[order_id] = (n, status)
    assert kinds["paid"] > 0.75 * len(requests)
    assert kinds["delivered"] > 0.1 * len(requests)
    assert kinds["refunded"] > 0.03 * len(requests)
