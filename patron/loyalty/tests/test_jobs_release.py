"""PTS-3 / PTS-2 / OPS-2: ``release-pending-points``: pending points become available once
their return window closed (debt repaid first), and referrals are rewarded once the
referee's first kept order is final, once per referee."""

from __future__ import annotations

import copy
import datetime as dt
import io

import pytest
from django.core.management import call_command

from patron.loyalty import jobs, ledger
from patron.loyalty import rules as program
from patron.loyalty.models import Entry, JobRun, Lot, LoyaltyEvent, ProgramVersion, TierChange
from patron.loyalty.tests.helpers import counts, make_member
from patron.loyalty.tests.jobkit import DAY, account, at_job_time, local, order, spend
from patron.loyalty.verify import verify_ledger
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db

PAID = local(2026, 11, 1, 20, 0)
DELIVERED = local(2026, 11, 2, 15, 30)
FINAL = DELIVERED + 7 * DAY  # 9 November 15:30: the return window closes


def _delivered(member, order_id: str, *, paid=PAID, delivered=DELIVERED, amount="1000.00"):
    order(member, order_id, when=paid, amount=amount)
    return order(
        member,
        order_id,
        when=delivered,
        status="delivered",
        delivered_at=delivered,
        paid_at=paid,
        amount=amount,
    )


def test_pts3_pending_points_become_available_the_day_after_the_window_closed():
    member = make_member()
    _delivered(member, "o-1")
    lot = Lot.objects.get(member=member)
    assert (lot.status, lot.release_at) == (Lot.Status.PENDING, FINAL)

    day_of = dt.date(2026, 11, 9)  # the window closes during this day, after its start
    with at_job_time(day_of):
        assert jobs.release_pending_points(day_of) == {}
    assert account(member).pending == 1000

    day_after = dt.date(2026, 11, 10)
    with at_job_time(day_after):
        result = jobs.release_pending_points(day_after)
    assert result == {"lots": 1, "points": 1000, "members": 1}
    lot.refresh_from_db()
    assert lot.status == Lot.Status.AVAILABLE
    assert lot.available_at == FINAL
    # Available from 9 November (local): usable through 9 November 2027.
    assert lot.expires_at == local(2027, 11, 10)
    entry = Entry.objects.get(kind=Entry.Kind.RELEASE)
    assert (entry.key, entry.points, entry.pending_delta) == (f"release:{lot.pk}", 1000, -1000)
    assert entry.order_id == lot.order_id
    assert (account(member).available, account(member).pending) == (1000, 0)
    assert verify_ledger().ok


def test_pts3_ops2_release_twice_writes_nothing():
    member = make_member()
    _delivered(member, "o-2")
    day = dt.date(2026, 11, 10)
    with at_job_time(day):
        jobs.release_pending_points(day)
        before = counts()
        assert jobs.release_pending_points(day) == {"already_done": 1}
        JobRun.objects.all().delete()
        assert jobs.release_pending_points(day) == {}
        assert counts() == before
    assert verify_ledger().ok


def test_pts3_released_points_repay_debt_first():
    member = make_member()
    _delivered(member, "first")
    with at_job_time(dt.date(2026, 11, 10)):
        jobs.release_pending_points(dt.date(2026, 11, 10))
    spend(member, 1000, "spent-all", when=local(2026, 11, 11))
    # Refunded in full after the window: the points were spent, so they become debt.
    order(
        member,
        "first",
        when=local(2026, 11, 12),
        status="refunded",
        refunded_amount="1000.00",
        paid_at=PAID,
        delivered_at=DELIVERED,
    )
    assert (account(member).available, account(member).debt) == (0, 1000)

    _delivered(
        member, "second", paid=local(2026, 11, 12), delivered=local(2026, 11, 13), amount="600.00"
    )
    day = dt.date(2026, 11, 21)
    with at_job_time(day):
        result = jobs.release_pending_points(day)
    assert result == {"lots": 1, "points": 600, "members": 1, "debt_repaid": 600}
    lot = Lot.objects.get(order__order_id="second")
    assert lot.remaining == 0
    repay = Entry.objects.get(kind=Entry.Kind.DEBT_REPAY)
    assert (repay.key, repay.points, repay.debt_delta) == (f"release:{lot.pk}:repay", -600, -600)
    assert (account(member).available, account(member).pending, account(member).debt) == (
        0,
        0,
        400,
    )
    assert verify_ledger().ok


def test_ops2_release_resumes_after_a_stop():
    members = [make_member() for _ in range(3)]
    for i, member in enumerate(members):
        _delivered(member, f"r-{i}")
    day = dt.date(2026, 11, 10)
    with at_job_time(day):
        assert jobs.release_pending_points(day, chunk=2, max_chunks=1)["members"] == 2
        assert not JobRun.objects.get(job="release_pending_points").done
        assert [account(m).pending for m in members] == [0, 0, 1000]
        result = jobs.release_pending_points(day, chunk=2)
    assert result == {"lots": 3, "points": 3000, "members": 3}
    assert JobRun.objects.get(job="release_pending_points").done
    assert verify_ledger().ok


# --- referrals (PTS-2) ---------------------------------------------------------------------


def test_pts2_referral_rewarded_once_only_after_the_first_order_is_final():
    referrer = make_member()
    referee = make_member(referrer=referrer)
    _delivered(referee, "ref-1")
    with at_job_time(dt.date(2026, 11, 9)):  # not final yet at the start of the day
        jobs.release_pending_points(dt.date(2026, 11, 9))
    assert not LoyaltyEvent.objects.exists()
    assert account(referrer).available == 0

    day = dt.date(2026, 11, 10)
    with at_job_time(day):
        result = jobs.release_pending_points(day)
    assert result["referrals"] == 1
    assert account(referrer).available == 500
    assert account(referee).available == 1000 + 200
    bonus = Lot.objects.get(member=referrer)
    assert (bonus.source, bonus.status, bonus.amount) == ("referral", "available", 500)
    assert Entry.objects.filter(key=f"referral:{referee.pk}:referrer").exists()
    assert Entry.objects.filter(key=f"referral:{referee.pk}:referee").exists()
    event = LoyaltyEvent.objects.get()
    assert (event.member_id, event.kind, event.score, event.key) == (
        referrer.pk,
        "referral",
        3,
        f"referral:{referee.pk}",
    )
    assert event.occurred_at == FINAL

    # A second kept order and later runs change nothing.
    _delivered(referee, "ref-2", paid=local(2026, 11, 12), delivered=local(2026, 11, 13))
    for later in (dt.date(2026, 11, 11), dt.date(2026, 11, 21)):
        with at_job_time(later):
            assert "referrals" not in jobs.release_pending_points(later)
    assert account(referrer).available == 500
    assert LoyaltyEvent.objects.count() == 1
    assert verify_ledger().ok


def test_pts2_a_cancelled_or_fully_refunded_first_order_does_not_count():
    referrer = make_member()
    referee = make_member(referrer=referrer)
    order(referee, "cancelled", when=PAID)
    order(referee, "cancelled", when=PAID + DAY, status="cancelled", paid_at=PAID)
    _delivered(referee, "refunded")
    order(
        referee,
        "refunded",
        when=local(2026, 11, 3),
        status="refunded",
        refunded_amount="1000.00",
        paid_at=PAID,
        delivered_at=DELIVERED,
    )
    day = dt.date(2026, 11, 10)
    with at_job_time(day):
        assert "referrals" not in jobs.release_pending_points(day)
    assert not LoyaltyEvent.objects.exists()

    _delivered(referee, "kept", paid=local(2026, 11, 5), delivered=local(2026, 11, 6))
    later = dt.date(2026, 11, 14)
    with at_job_time(later):
        assert jobs.release_pending_points(later)["referrals"] == 1
    assert account(referrer).available == 500
    assert verify_ledger().ok


def test_pts2_tier3_a_referral_can_lift_the_referrer_at_once():
    data = copy.deepcopy(program.DEFAULT_RULES)
    data["tiers"][1]["any_of"] = {"loyalty": 3}
    ProgramVersion.objects.create(version=1, rules=data, effective_at=local(2020, 1, 1))
    program.forget()
    referrer = make_member()
    referee = make_member(referrer=referrer)
    _delivered(referee, "lift")
    day = dt.date(2026, 11, 10)
    with at_job_time(day):
        jobs.release_pending_points(day)
    assert account(referrer).tier == "silver"
    change = TierChange.objects.get(member=referrer)
    assert (change.kind, change.reason, change.loyalty) == ("upgrade", "referral", 3)
    assert verify_ledger().ok


def test_note2_referral_credits_are_sent_as_points_earned():
    webhooks.create_endpoint(
        name="platform",
        url="https://platform.example.com/h",
        events=["points.earned"],
        actor=jobs.SYSTEM,
    )
    webhooks.forget()
    referrer = make_member()
    referee = make_member(referrer=referrer)
    _delivered(referee, "hooked")
    before = OutboxMessage.objects.filter(channel="webhook").count()
    day = dt.date(2026, 11, 10)
    with at_job_time(day):
        jobs.release_pending_points(day)
    assert OutboxMessage.objects.filter(channel="webhook").count() == before + 2
    webhooks.forget()


def test_ops2_release_command_output():
    member = make_member()
    _delivered(member, "cmd")
    out = io.StringIO()
    with at_job_time(dt.date(2026, 11, 10)):
        call_command("release_pending_points", stdout=out)
    assert out.getvalue().strip() == (
        "release-pending-points 2026-11-10: done: lots=1, members=1, points=1000"
    )
    assert ledger.existing(f"release:{Lot.objects.get().pk}") is not None
