"""OPS-2: the worker's daily scheduling decision and the day's run of every job."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patron.core.management.commands.worker import PeriodicSweep, daily_jobs_due, jobs_hour
from patron.loyalty import jobs
from patron.loyalty.models import Coupon, JobRun, Lot
from patron.loyalty.tests.helpers import make_member
from patron.loyalty.tests.jobkit import account, at_job_time, credit, local, order, set_tier
from patron.loyalty.verify import verify_ledger

HOUR = dt.timedelta(hours=1)


def test_ops2_daily_jobs_decision():
    morning = local(2026, 11, 22, 2, 0)
    assert not daily_jobs_due(
        morning - dt.timedelta(minutes=1), hour=2, done=False, last_enqueued=None
    )
    assert daily_jobs_due(morning, hour=2, done=False, last_enqueued=None)
    assert not daily_jobs_due(morning, hour=2, done=True, last_enqueued=None)
    # Enqueued a moment ago: the task may still be queued or running.
    assert not daily_jobs_due(morning + HOUR / 2, hour=2, done=False, last_enqueued=morning)
    # Still not done an hour later: a lost task; enqueue again (the jobs resume).
    assert daily_jobs_due(morning + HOUR, hour=2, done=False, last_enqueued=morning)
    # Yesterday's enqueue says nothing about today.
    assert daily_jobs_due(morning, hour=2, done=False, last_enqueued=morning - dt.timedelta(days=1))
    assert not daily_jobs_due(local(2026, 11, 22, 23, 59), hour=2, done=True, last_enqueued=None)


def test_ops2_jobs_hour_setting(settings):
    settings.PATRON_JOBS_HOUR = 5
    assert jobs_hour() == 5
    settings.PATRON_JOBS_HOUR = 99
    assert jobs_hour() == 2


@pytest.mark.django_db
def test_ops2_the_sweep_enqueues_the_day_once_after_the_jobs_hour():
    member = make_member()
    credit(member, 100, "old", when=local(2025, 11, 20, 10))  # last usable day 20 Nov 2026
    sweep = PeriodicSweep(interval=30)
    with time_machine.travel(local(2026, 11, 22, 1, 59), tick=False) as traveller:
        assert sweep.tick_daily() is False
        traveller.move_to(local(2026, 11, 22, 2, 0))
        assert sweep.tick_daily() is True  # the test task backend runs it at once
        assert jobs.daily_done(dt.date(2026, 11, 22))
        assert Lot.objects.get().status == Lot.Status.EXPIRED
        traveller.move_to(local(2026, 11, 22, 5, 0))
        assert sweep.tick_daily() is False
        traveller.move_to(local(2026, 11, 23, 2, 0))
        assert sweep.tick_daily() is True
    assert set(JobRun.objects.filter(job="daily").values_list("as_of", flat=True)) == {
        dt.date(2026, 11, 22),
        dt.date(2026, 11, 23),
    }
    assert verify_ledger().ok


@pytest.mark.django_db
def test_ops2_tier3_the_evaluation_runs_only_on_evaluation_days():
    member = make_member()
    set_tier(member, "gold")  # nothing in the window: Regular at the next evaluation
    with at_job_time(dt.date(2026, 12, 31)):
        assert "evaluate_tiers" not in jobs.run_daily(dt.date(2026, 12, 31))
    assert account(member).tier == "gold"
    with at_job_time(dt.date(2027, 1, 1)):
        results = jobs.run_daily(dt.date(2027, 1, 1))
        assert jobs.run_daily(dt.date(2027, 1, 1)) == {}  # the day is done
    assert results["evaluate_tiers"] == {"changed": 1, "down": 1}
    assert results["notify_tier_changes"] == {"notified": 1}
    assert account(member).tier == "regular"


@pytest.mark.django_db
def test_ops2_a_fortnight_of_daily_runs_keeps_the_ledger_right():
    """Orders, a referral, a birthday, expiry and reminders over two weeks of daily runs."""
    referrer = make_member()
    set_tier(referrer, "silver")
    referee = make_member(referrer=referrer, birth_date="1990-11-25")
    set_tier(referee, "silver")
    credit(referrer, 80, "expiring", when=local(2025, 11, 26, 9))  # through 26 Nov 2026
    order(referee, "fortnight", when=local(2026, 11, 18, 12), amount="300.00")
    order(
        referee,
        "fortnight",
        when=local(2026, 11, 19, 12),
        status="delivered",
        paid_at=local(2026, 11, 18, 12),
        delivered_at=local(2026, 11, 19, 12),
        amount="300.00",
    )
    day = dt.date(2026, 11, 20)
    while day <= dt.date(2026, 12, 3):
        with at_job_time(day):
            jobs.run_daily(day)
        assert verify_ledger().ok, day
        day += dt.timedelta(days=1)
    assert Coupon.objects.filter(member=referee, source="birthday").count() == 1
    assert Lot.objects.get(member=referrer, source="adjustment").status == Lot.Status.EXPIRED
    assert Lot.objects.filter(member=referrer, source="referral").count() == 1
    assert Lot.objects.get(member=referee, source="purchase").status == Lot.Status.AVAILABLE
    assert JobRun.objects.filter(job="daily", done=True).count() == 14
