"""PTS-5 / OPS-2: ``expire-points``: the day boundary in Asia/Shanghai, tier extensions once,
twice-safe, resumable, one webhook per member, the command."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.core.management import CommandError, call_command

from patron.loyalty import jobs
from patron.loyalty.ledger import InsufficientPoints
from patron.loyalty.models import Allocation, Entry, JobRun, Lot
from patron.loyalty.tests.helpers import counts, make_member
from patron.loyalty.tests.jobkit import account, at_job_time, credit, local, set_tier, spend
from patron.loyalty.verify import verify_ledger
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db

EARNED = local(2026, 3, 1, 23, 30)  # usable through 1 March 2027, expired from midnight
LAST_DAY = dt.date(2027, 3, 1)
NEXT_DAY = dt.date(2027, 3, 2)


def test_pts5_expiry_at_the_day_boundary_in_shanghai():
    member = make_member()
    lot = credit(member, 100, "boundary", when=EARNED)
    assert lot.expires_at == local(2027, 3, 2)

    spend(member, 10, "last-second", when=local(2027, 3, 1, 23, 59, 59))  # still usable
    with pytest.raises(InsufficientPoints):
        spend(member, 10, "first-second", when=local(2027, 3, 2))  # gone from midnight

    with at_job_time(LAST_DAY):
        assert jobs.expire_points(LAST_DAY) == {}  # nothing had expired by its start
    lot.refresh_from_db()
    assert (lot.status, lot.remaining) == (Lot.Status.AVAILABLE, 90)

    with at_job_time(NEXT_DAY):
        result = jobs.expire_points(NEXT_DAY)
    assert result == {"lots": 1, "points": 90, "members": 1}
    lot.refresh_from_db()
    assert (lot.status, lot.remaining) == (Lot.Status.EXPIRED, 0)
    entry = Entry.objects.get(kind=Entry.Kind.EXPIRE)
    assert (entry.key, entry.points, entry.lot_id) == (f"expire:{lot.pk}", -90, lot.pk)
    assert list(Allocation.objects.filter(entry=entry).values_list("lot_id", "points")) == [
        (lot.pk, -90)
    ]
    assert account(member).available == 0
    assert verify_ledger().ok


def test_pts5_ops2_second_run_writes_nothing_even_without_its_job_record():
    member = make_member()
    credit(member, 50, "a", when=EARNED)
    credit(member, 70, "b", when=EARNED - dt.timedelta(hours=1))
    with at_job_time(NEXT_DAY):
        assert jobs.expire_points(NEXT_DAY)["points"] == 120
        before = counts()
        assert jobs.expire_points(NEXT_DAY) == {"already_done": 1}
        assert counts() == before
        JobRun.objects.all().delete()  # an operator forcing a rerun
        assert jobs.expire_points(NEXT_DAY) == {}
        assert counts() == before
    assert Entry.objects.filter(kind=Entry.Kind.EXPIRE).count() == 2
    assert verify_ledger().ok


def test_pts5_a_spent_lot_expires_only_its_remainder_and_a_used_up_lot_just_closes():
    member = make_member()
    used_up = credit(member, 30, "used-up", when=EARNED - dt.timedelta(days=1))
    partly = credit(member, 100, "partly", when=EARNED)
    later = credit(member, 40, "later", when=EARNED + dt.timedelta(days=40))
    spend(member, 30 + 25, "spent", when=local(2026, 6, 1))  # used_up first, then 25 of partly
    with at_job_time(NEXT_DAY):
        result = jobs.expire_points(NEXT_DAY)
    assert result == {"lots": 2, "points": 75, "members": 1}
    used_up.refresh_from_db()
    partly.refresh_from_db()
    later.refresh_from_db()
    assert (used_up.status, used_up.remaining) == (Lot.Status.EXPIRED, 0)
    assert (partly.status, partly.remaining) == (Lot.Status.EXPIRED, 0)
    assert (later.status, later.remaining) == (Lot.Status.AVAILABLE, 40)
    assert not Entry.objects.filter(key=f"expire:{used_up.pk}").exists()  # nothing to expire
    assert Entry.objects.get(key=f"expire:{partly.pk}").points == -75
    assert account(member).available == 40
    assert verify_ledger().ok


def test_pts5_diamond_extension_applies_once_per_lot():
    member = make_member()
    lot = credit(member, 100, "diamond", when=EARNED)
    set_tier(member, "diamond")
    with at_job_time(NEXT_DAY):
        result = jobs.expire_points(NEXT_DAY)
    assert result == {"extended": 1}
    lot.refresh_from_db()
    # Last usable day 1 March 2027 + 6 months: usable through 1 September 2027.
    assert (lot.status, lot.remaining) == (Lot.Status.AVAILABLE, 100)
    assert lot.expires_at == local(2027, 9, 2)
    assert lot.extended_months == 6
    assert account(member).available == 100

    after = dt.date(2027, 9, 2)
    with at_job_time(after):
        result = jobs.expire_points(after)  # still Diamond: no second extension
    assert result == {"lots": 1, "points": 100, "members": 1}
    lot.refresh_from_db()
    assert (lot.status, lot.extended_months) == (Lot.Status.EXPIRED, 6)
    assert verify_ledger().ok


def test_pts5_no_extension_for_a_tier_without_one():
    member = make_member()
    credit(member, 100, "gold", when=EARNED)
    set_tier(member, "gold")
    with at_job_time(NEXT_DAY):
        assert jobs.expire_points(NEXT_DAY) == {"lots": 1, "points": 100, "members": 1}
    assert verify_ledger().ok


def test_ops2_a_crashed_run_resumes_after_its_cursor():
    members = [make_member() for _ in range(3)]
    for i, member in enumerate(members):
        credit(member, 10 * (i + 1), f"m{i}", when=EARNED)
    with at_job_time(NEXT_DAY):
        partial = jobs.expire_points(NEXT_DAY, chunk=1, max_chunks=1)
        assert partial == {"lots": 1, "points": 10, "members": 1}
        run = JobRun.objects.get(job="expire_points", as_of=NEXT_DAY)
        assert (run.cursor, run.done) == (members[0].pk, False)
        assert [account(m).available for m in members] == [0, 20, 30]

        finished = jobs.expire_points(NEXT_DAY, chunk=1)
    assert finished == {"lots": 3, "points": 60, "members": 3}
    run.refresh_from_db()
    assert run.done and run.cursor == members[-1].pk
    assert Entry.objects.filter(kind=Entry.Kind.EXPIRE).count() == 3
    assert verify_ledger().ok


def test_ops2_a_run_resumes_from_a_cursor_set_mid_way():
    first, second = make_member(), make_member()
    credit(first, 10, "first", when=EARNED)
    credit(second, 20, "second", when=EARNED)
    JobRun.objects.create(job="expire_points", as_of=NEXT_DAY, cursor=first.pk)
    with at_job_time(NEXT_DAY):
        assert jobs.expire_points(NEXT_DAY) == {"lots": 1, "points": 20, "members": 1}
    # The member before the cursor counts as done: only the next run day picks it up.
    assert account(first).available == 10 and account(second).available == 0
    with at_job_time(NEXT_DAY + dt.timedelta(days=1)):
        assert jobs.expire_points(NEXT_DAY + dt.timedelta(days=1))["points"] == 10
    assert verify_ledger().ok


def test_note2_one_points_expired_webhook_per_member_per_run():
    webhooks.create_endpoint(
        name="platform",
        url="https://platform.example.com/hooks",
        events=["points.expired"],
        actor=jobs.SYSTEM,
    )
    webhooks.forget()
    member, other = make_member(), make_member()
    credit(member, 50, "a", when=EARNED)
    credit(member, 70, "b", when=EARNED - dt.timedelta(hours=2))
    credit(other, 5, "c", when=EARNED)
    with at_job_time(NEXT_DAY):
        jobs.expire_points(NEXT_DAY)
    hooks = OutboxMessage.objects.filter(channel="webhook")
    assert hooks.count() == 2
    JobRun.objects.all().delete()
    with at_job_time(NEXT_DAY):
        jobs.expire_points(NEXT_DAY)
    assert hooks.count() == 2
    webhooks.forget()


def test_ops2_expire_points_command_prints_counts_and_refuses_bad_dates():
    member = make_member()
    credit(member, 100, "cmd", when=EARNED)
    out = io.StringIO()
    with at_job_time(NEXT_DAY):
        call_command("expire_points", "--as-of", NEXT_DAY.isoformat(), stdout=out)
        assert out.getvalue().strip() == (
            "expire-points 2027-03-02: done: lots=1, members=1, points=100"
        )
        out = io.StringIO()
        call_command("expire_points", stdout=out)  # default: today, 2 March
        assert "already done (lots=1, members=1, points=100)" in out.getvalue()
        with pytest.raises(CommandError, match="after today"):
            call_command("expire_points", "--as-of", "2027-03-03")
        with pytest.raises(CommandError, match="YYYY-MM-DD"):
            call_command("expire_points", "--as-of", "2 March")
    assert account(member).available == 0
    assert verify_ledger().ok


def test_pts5_expiry_waits_for_the_start_of_the_day_after():
    """Run at any time on the last usable day, the job leaves the points alone."""
    member = make_member()
    credit(member, 100, "late", when=EARNED)
    with time_machine.travel(local(2027, 3, 1, 23, 59, 59), tick=False):
        assert jobs.expire_points(LAST_DAY) == {}
    assert account(member).available == 100
