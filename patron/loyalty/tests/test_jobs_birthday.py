"""BEN-1 / TIER-5 / OPS-2: ``issue-birthday-coupons``: the tier's coupon once a year on the
birthday (29 February birthdays on 28 February in other years); the birthday index kept in
step with the member's encrypted birth date."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from patron.core.crypto import blind_index
from patron.loyalty import jobs
from patron.loyalty.models import Account, Coupon, JobRun
from patron.loyalty.signals import birthday_index_for, sync_all_birthday_indexes
from patron.loyalty.tests.helpers import counts, make_member
from patron.loyalty.tests.jobkit import at_job_time, local, set_tier
from patron.members.models import Member
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db

BIRTHDAY = dt.date(2026, 11, 22)


def test_ben1_birthday_index_follows_the_birth_date():
    member = make_member(birth_date="1990-11-22")
    assert Account.objects.get(pk=member.pk).birthday_index == blind_index("1122", "birthday")
    member.birth_date = "1992-02-29"
    member.save()
    assert Account.objects.get(pk=member.pk).birthday_index == blind_index("0229", "birthday")
    member.birth_date = ""
    member.save(update_fields=["birth_date"])
    assert Account.objects.get(pk=member.pk).birthday_index == ""
    assert birthday_index_for("not a date") == ""
    assert birthday_index_for(dt.date(2001, 1, 5)) == blind_index("0105", "birthday")


def test_ben1_sync_index_repairs_rows_written_without_the_signal():
    member = make_member(birth_date="1985-11-22")
    Account.objects.filter(pk=member.pk).update(birthday_index="")
    Account.objects.filter(pk=member.pk).delete()
    assert sync_all_birthday_indexes() >= 1
    assert Account.objects.get(pk=member.pk).birthday_index == birthday_index_for("1985-11-22")


def test_ben1_tier5_birthday_coupon_by_tier_once_a_year():
    webhooks.create_endpoint(
        name="platform",
        url="https://platform.example.com/h",
        events=["coupon.issued"],
        actor=jobs.SYSTEM,
    )
    webhooks.forget()
    silver = make_member(birth_date="1990-11-22")
    set_tier(silver, "silver")
    diamond = make_member(birth_date="1970-11-22")
    set_tier(diamond, "diamond")
    regular = make_member(birth_date="1991-11-22")  # Regular: no birthday coupon
    other_day = make_member(birth_date="1990-11-23")
    set_tier(other_day, "gold")
    frozen = make_member(birth_date="1990-11-22")
    Member.objects.filter(pk=frozen.pk).update(status=Member.Status.FROZEN)
    set_tier(frozen, "gold")

    with at_job_time(BIRTHDAY):
        assert jobs.issue_birthday_coupons(BIRTHDAY) == {"coupons": 2}
    coupons = {c.member_id: c for c in Coupon.objects.all()}
    assert set(coupons) == {silver.pk, diamond.pk}
    coupon = coupons[silver.pk]
    assert (coupon.source, coupon.value, coupon.key) == (
        "birthday",
        Decimal("20.00"),
        f"birthday:{silver.pk}:2026",
    )
    assert coupons[diamond.pk].value == Decimal("100.00")
    assert coupon.valid_until == local(2026, 12, 22)  # 30 days counting the birthday
    notice = OutboxMessage.objects.get(
        template="loyalty_birthday_coupon", channel="sms", member=silver
    )
    assert "20.00" in notice.body and "2026-12-21" in notice.body
    assert OutboxMessage.objects.filter(channel="webhook", template="coupon.issued").count() == 2
    assert regular.pk not in coupons and other_day.pk not in coupons and frozen.pk not in coupons

    with at_job_time(BIRTHDAY):
        before = counts()
        assert jobs.issue_birthday_coupons(BIRTHDAY) == {"already_done": 1}
        JobRun.objects.all().delete()
        assert jobs.issue_birthday_coupons(BIRTHDAY) == {}
        assert counts() == before

    next_year = dt.date(2027, 11, 22)
    with at_job_time(next_year):
        assert jobs.issue_birthday_coupons(next_year) == {"coupons": 2}
    assert Coupon.objects.filter(member=silver).count() == 2
    webhooks.forget()


@pytest.mark.parametrize(
    ("as_of", "issued"),
    [
        (dt.date(2027, 2, 28), 1),  # no 29th in 2027: celebrated on the 28th
        (dt.date(2027, 3, 1), 0),
        (dt.date(2028, 2, 28), 0),  # 2028 has a 29th
        (dt.date(2028, 2, 29), 1),
    ],
)
def test_ben1_29_february_birthdays(as_of, issued):
    leapling = make_member(birth_date="2000-02-29")
    set_tier(leapling, "gold")
    with at_job_time(as_of):
        assert jobs.issue_birthday_coupons(as_of).get("coupons", 0) == issued
    assert Coupon.objects.filter(member=leapling).count() == issued


def test_ops2_birthday_command_output_and_resume():
    members = [make_member(birth_date="1990-11-22") for _ in range(3)]
    for member in members:
        set_tier(member, "silver")
    out = io.StringIO()
    with at_job_time(BIRTHDAY):
        call_command("issue_birthday_coupons", "--chunk", "2", "--max-chunks", "1", stdout=out)
        assert out.getvalue().strip() == (
            f"issue-birthday-coupons 2026-11-22: stopped at member {members[1].pk}: coupons=2"
        )
        out = io.StringIO()
        call_command("issue_birthday_coupons", "--sync-index", stdout=out)
    assert "coupons=3" in out.getvalue()
    assert Coupon.objects.count() == 3
