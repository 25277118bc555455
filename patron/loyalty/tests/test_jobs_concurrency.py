"""OPS-2 / PTS-5 / PTS-3: batch jobs racing each other and order events (threads; SQLite
serialises them, PostgreSQL races them on row locks). The ledger stays right either way."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connections

from patron.loyalty import jobs
from patron.loyalty.models import Entry, JobRun, Lot
from patron.loyalty.tests.helpers import make_member
from patron.loyalty.tests.jobkit import DAY, account, at_job_time, credit, local, order
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db(transaction=True)


def _in_threads(*works):
    barrier = threading.Barrier(len(works))
    results: list = [None] * len(works)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = works[index]()
        except Exception as exc:  # the test looks at what each thread ended with
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_ops2_two_expiry_runs_at_once_expire_each_lot_once():
    members = [make_member() for _ in range(8)]
    for i, member in enumerate(members):
        credit(member, 10 + i, f"lot-{i}", when=local(2025, 11, 1, 10))
    as_of = dt.date(2026, 11, 2)

    def run():
        with at_job_time(as_of):
            return jobs.expire_points(as_of, chunk=2)

    results = _in_threads(run, run)
    assert all(isinstance(r, dict) for r in results), results
    assert Entry.objects.filter(kind=Entry.Kind.EXPIRE).count() == 8
    assert not Lot.objects.filter(status=Lot.Status.AVAILABLE).exists()
    assert JobRun.objects.get(job="expire_points").counts == {
        "lots": 8,
        "members": 8,
        "points": sum(10 + i for i in range(8)),
    }
    assert verify_ledger().ok


def test_pts3_release_job_racing_a_refund_of_the_same_order():
    """The job releases the lot and the refund claws it back, in either order; the points
    of the order net to zero and nothing is released twice."""
    member = make_member()
    paid, delivered = local(2026, 11, 1, 20), local(2026, 11, 2, 15)
    order(member, "race", when=paid)
    order(member, "race", when=delivered, status="delivered", paid_at=paid, delivered_at=delivered)
    as_of = dt.date(2026, 11, 10)

    def release():
        with at_job_time(as_of):
            return jobs.release_pending_points(as_of)

    def refund():
        return order(
            member,
            "race",
            when=local(2026, 11, 10, 2),
            status="refunded",
            refunded_amount="1000.00",
            paid_at=paid,
            delivered_at=delivered,
        )

    results = _in_threads(release, refund)
    assert not any(isinstance(r, Exception) for r in results), results
    lot = Lot.objects.get(member=member)
    assert lot.clawed == lot.amount
    assert Entry.objects.filter(lot=lot, kind=Entry.Kind.RELEASE).count() <= 1
    assert (account(member).available, account(member).pending, account(member).debt) == (
        0,
        0,
        0,
    )
    assert verify_ledger().ok


def test_pts5_expiry_racing_a_spend_of_the_same_member():
    member = make_member()
    credit(member, 100, "old", when=local(2025, 11, 1, 10))  # expired by 2 Nov 2026
    credit(member, 50, "new", when=local(2026, 6, 1, 10))
    as_of = dt.date(2026, 11, 2)

    def expire():
        with at_job_time(as_of):
            return jobs.expire_points(as_of)

    def spend():
        from patron.loyalty.tests.jobkit import spend as spend_points

        return spend_points(member, 50, "racing-spend", when=local(2026, 11, 2, 2) + DAY / 24)

    results = _in_threads(expire, spend)
    assert not any(isinstance(r, Exception) for r in results), results
    assert account(member).available == 0
    assert Entry.objects.get(kind=Entry.Kind.EXPIRE).points == -100
    assert verify_ledger().ok


def test_ops2_two_birthday_runs_at_once_issue_one_coupon_each():
    from patron.loyalty.models import Coupon
    from patron.loyalty.tests.jobkit import set_tier

    members = [make_member(birth_date="1990-11-22") for _ in range(4)]
    for member in members:
        set_tier(member, "gold")
    as_of = dt.date(2026, 11, 22)

    def run():
        with time_machine.travel(local(2026, 11, 22, 2), tick=False):
            return jobs.issue_birthday_coupons(as_of, chunk=1)

    results = _in_threads(run, run)
    assert all(isinstance(r, dict) for r in results), results
    assert Coupon.objects.count() == 4
