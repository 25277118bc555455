"""PTS-6 / OPS-2: ``remind-expiring-points``: 30 and 7 days before the last usable day,
one reminder per member per stage (however many lots, however many runs)."""

from __future__ import annotations

import datetime as dt

import pytest

from patron.loyalty import jobs
from patron.loyalty.models import ExpiryReminder, JobRun
from patron.loyalty.tests.helpers import counts, make_member
from patron.loyalty.tests.jobkit import at_job_time, credit, local, set_tier
from patron.loyalty.verify import verify_ledger
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db

LAST_DAY = dt.date(2027, 3, 1)  # lots credited on 1 March 2026 are usable through this day


def _two_lots(member):
    credit(member, 100, f"a{member.pk}", when=local(2026, 3, 1, 9))
    credit(member, 50, f"b{member.pk}", when=local(2026, 3, 1, 21))


def test_pts6_one_reminder_per_member_and_stage_at_30_and_7_days():
    member = make_member(email="fan@example.com")
    _two_lots(member)
    credit(member, 10, "later", when=local(2026, 4, 15, 9))  # another day: not reminded now
    for as_of in (LAST_DAY - dt.timedelta(days=31), LAST_DAY - dt.timedelta(days=29)):
        with at_job_time(as_of):
            assert jobs.remind_expiring_points(as_of) == {}

    stage_30 = LAST_DAY - dt.timedelta(days=30)
    with at_job_time(stage_30):
        result = jobs.remind_expiring_points(stage_30)
    assert result == {"reminders": 1, "stage_30": 1, "points": 150}
    reminder = ExpiryReminder.objects.get()
    assert (reminder.member_id, reminder.stage, reminder.expires_on, reminder.points) == (
        member.pk,
        30,
        LAST_DAY,
        150,
    )
    notices = OutboxMessage.objects.filter(template="loyalty_points_expiring")
    assert sorted(notices.values_list("channel", flat=True)) == ["email", "inapp", "sms"]
    sms = notices.get(channel="sms")
    assert "150" in sms.body and "2027-03-01" in sms.body and "30" in sms.body

    with at_job_time(stage_30):
        before = counts(ExpiryReminder)
        assert jobs.remind_expiring_points(stage_30) == {"already_done": 1}
        JobRun.objects.all().delete()
        assert jobs.remind_expiring_points(stage_30) == {}
        assert counts(ExpiryReminder) == before

    stage_7 = LAST_DAY - dt.timedelta(days=7)
    with at_job_time(stage_7):
        assert jobs.remind_expiring_points(stage_7) == {
            "reminders": 1,
            "stage_7": 1,
            "points": 150,
        }
    assert ExpiryReminder.objects.count() == 2
    assert notices.count() == 6
    assert verify_ledger().ok


def test_pts6_english_members_get_english_text_and_no_email_without_an_address():
    member = make_member(language="en")
    _two_lots(member)
    as_of = LAST_DAY - dt.timedelta(days=7)
    with at_job_time(as_of):
        jobs.remind_expiring_points(as_of)
    notices = OutboxMessage.objects.filter(template="loyalty_points_expiring")
    assert sorted(notices.values_list("channel", flat=True)) == ["inapp", "sms"]
    assert "150 of your points expire after 2027-03-01" in notices.get(channel="sms").body


def test_pts6_points_a_tier_extension_will_move_are_not_reminded():
    diamond, regular = make_member(), make_member()
    _two_lots(diamond)
    _two_lots(regular)
    set_tier(diamond, "diamond")
    as_of = LAST_DAY - dt.timedelta(days=30)
    with at_job_time(as_of):
        jobs.remind_expiring_points(as_of)
    assert list(ExpiryReminder.objects.values_list("member_id", flat=True)) == [regular.pk]


def test_pts6_spent_and_expired_points_are_not_reminded():
    member = make_member()
    credit(member, 100, "gone", when=local(2026, 3, 1, 9))
    as_of = LAST_DAY - dt.timedelta(days=7)
    with at_job_time(as_of):
        from patron.loyalty.tests.jobkit import spend

        spend(member, 100, "all", when=local(2027, 2, 1))
        assert jobs.remind_expiring_points(as_of) == {}
    assert not ExpiryReminder.objects.exists()


def test_ops2_reminders_resume_after_a_stop_and_tell_platforms_once():
    webhooks.create_endpoint(
        name="platform",
        url="https://platform.example.com/h",
        events=["points.expiring"],
        actor=jobs.SYSTEM,
    )
    webhooks.forget()
    members = [make_member() for _ in range(3)]
    for member in members:
        _two_lots(member)
    as_of = LAST_DAY - dt.timedelta(days=30)
    with at_job_time(as_of):
        assert jobs.remind_expiring_points(as_of, chunk=2, max_chunks=1)["reminders"] == 2
        assert jobs.remind_expiring_points(as_of, chunk=2)["reminders"] == 3
    hooks = OutboxMessage.objects.filter(channel="webhook", template="points.expiring")
    assert hooks.count() == 3
    JobRun.objects.all().delete()
    with at_job_time(as_of):
        jobs.remind_expiring_points(as_of)
    assert hooks.count() == 3
    webhooks.forget()
