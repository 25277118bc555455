"""REG-6, REG-7, REG-8: verification codes for phone and email, activation, welcome."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from patron.core.exceptions import Conflict, RateLimited, ValidationFailed
from patron.core.models import AuditEvent
from patron.members.models import Member, MemberStatusChange, VerificationCode
from patron.members.services.verification import code_matches, confirm_code, send_code
from patron.members.tests.members_helpers import (
    TODAY,
    counts,
    documents,  # noqa: F401 (fixture)
    individual,
    register,
)
from patron.notify.models import OutboxMessage
from tests.fixtures import read_sms

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]


@pytest.fixture(autouse=True)
def _today(time_machine):
    time_machine.move_to(TODAY, tick=False)


def _last_code(member: Member, channel: str = "phone") -> str:
    """The code as the member reads it: from the outbox message's (decrypted) body."""
    message = (
        OutboxMessage.objects.filter(member=member, template="verification_code")
        .order_by("-id")
        .first()
    )
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def _refused_confirm(member, code, expected, channel="phone", changed=("VerificationCode",)):
    before = counts()
    attempts_before = list(VerificationCode.objects.values_list("attempts", flat=True))
    with pytest.raises(ValidationFailed) as info:
        confirm_code(member=member, channel=channel, code=code)
    assert info.value.code == expected
    assert info.value.status == 422
    assert counts() == before
    member.refresh_from_db()
    return attempts_before


def test_reg_6_code_is_six_digits_stored_only_hashed():
    member = register(individual())
    row = VerificationCode.objects.get(member=member)
    code = _last_code(member)
    assert len(code) == 6
    assert code not in row.code_hash
    assert code_matches(code, row.code_hash)
    assert not code_matches(f"{(int(code) + 1) % 1_000_000:06d}", row.code_hash)
    assert row.expires_at == row.created_at + dt.timedelta(minutes=10)
    assert AuditEvent.objects.filter(action="member.verification_sent").count() == 1
    assert code not in str(AuditEvent.objects.values_list("details", flat=True))


def test_reg_7_right_code_activates_and_welcomes(sms_outbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        member = register(individual(email="hello@example.com"))
    code = _last_code(member)
    with django_capture_on_commit_callbacks(execute=True):
        member = confirm_code(member=member, channel="phone", code=code)
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE
    assert member.phone_verified_at == VerificationCode.objects.get().consumed_at
    change = MemberStatusChange.objects.get(member=member)
    assert (change.from_status, change.to_status) == ("pending", "active")
    welcome = OutboxMessage.objects.filter(member=member, template="welcome")
    assert sorted(welcome.values_list("channel", flat=True)) == ["email", "sms"]
    texts = [line["template"] for line in read_sms(sms_outbox)]
    assert texts == ["verification_code", "welcome"]
    assert {"member.phone_verified", "member.status_changed"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


def test_reg_6_wrong_code_is_refused_and_the_try_is_counted():
    member = register(individual())
    code = _last_code(member)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    _refused_confirm(member, wrong, "code_invalid")
    assert VerificationCode.objects.get().attempts == 1
    assert member.status == Member.Status.PENDING


def test_reg_6_five_wrong_tries_lock_the_code_even_for_the_right_one():
    member = register(individual())
    code = _last_code(member)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        _refused_confirm(member, wrong, "code_invalid")
    assert VerificationCode.objects.get().attempts == 5
    _refused_confirm(member, code, "code_locked")
    assert VerificationCode.objects.get().attempts == 5
    assert member.status == Member.Status.PENDING


def test_reg_6_expired_code_is_refused(time_machine):
    member = register(individual())
    code = _last_code(member)
    time_machine.move_to(TODAY + dt.timedelta(minutes=10, seconds=1))
    _refused_confirm(member, code, "code_expired")
    assert member.status == Member.Status.PENDING


def test_reg_6_used_code_is_refused():
    member = register(individual())
    code = _last_code(member)
    confirm_code(member=member, channel="phone", code=code)
    _refused_confirm(member, code, "code_used")


def test_reg_6_a_new_code_supersedes_the_old_one(time_machine):
    member = register(individual())
    old = _last_code(member)
    time_machine.move_to(TODAY + dt.timedelta(seconds=61))
    send_code(member=member, channel="phone")
    new = _last_code(member)
    if old != new:
        _refused_confirm(member, old, "code_invalid")
    confirm_code(member=member, channel="phone", code=new)


def test_reg_6_resend_within_cooldown_is_rate_limited(time_machine):
    member = register(individual())
    time_machine.move_to(TODAY + dt.timedelta(seconds=45))
    before = counts()
    with pytest.raises(RateLimited) as info:
        send_code(member=member, channel="phone")
    assert info.value.status == 429
    assert info.value.code == "rate_limited"
    assert info.value.headers == {"Retry-After": "15"}
    assert counts() == before
    time_machine.move_to(TODAY + dt.timedelta(seconds=60))
    send_code(member=member, channel="phone")


def test_reg_6_daily_cap_per_phone(time_machine, settings):
    settings.PATRON_VERIFICATION = {**settings.PATRON_VERIFICATION, "DAILY_CAP_PER_TARGET": 3}
    member = register(individual())
    for minute in (2, 4):
        time_machine.move_to(TODAY + dt.timedelta(minutes=minute))
        send_code(member=member, channel="phone")
    time_machine.move_to(TODAY + dt.timedelta(minutes=6))
    before = counts()
    with pytest.raises(RateLimited) as info:
        send_code(member=member, channel="phone")
    assert counts() == before
    # The window is a rolling 24 hours from the first code of the three.
    assert int(info.value.headers["Retry-After"]) == 24 * 3600 - 6 * 60
    time_machine.move_to(TODAY + dt.timedelta(hours=24, seconds=1))
    send_code(member=member, channel="phone")


def test_reg_6_daily_cap_per_ip(time_machine, settings):
    settings.PATRON_VERIFICATION = {**settings.PATRON_VERIFICATION, "DAILY_CAP_PER_IP": 2}
    first = register(individual(), ip="198.51.100.7")
    register(individual(), ip="198.51.100.7")
    time_machine.move_to(TODAY + dt.timedelta(minutes=5))
    before = counts()
    with pytest.raises(RateLimited):
        send_code(member=first, channel="phone", ip="198.51.100.7")
    assert counts() == before
    send_code(member=first, channel="phone", ip="198.51.100.8")


def test_reg_6_email_is_verified_by_code():
    member = register(individual(email="me@example.com"))
    send_code(member=member, channel="email")
    message = OutboxMessage.objects.filter(member=member, channel="email").get()
    assert message.to_address == "me@example.com"
    code = re.search(r"\b(\d{6})\b", message.body).group(1)
    member = confirm_code(member=member, channel="email", code=code)
    assert member.email_verified_at is not None
    assert member.status == Member.Status.PENDING  # only the phone activates


def test_reg_6_email_code_without_an_email_is_refused():
    member = register(individual(email=None))
    before = counts()
    with pytest.raises(ValidationFailed) as info:
        send_code(member=member, channel="email")
    assert info.value.code == "no_address"
    assert counts() == before


def test_reg_8_new_phone_applies_only_once_verified(time_machine):
    member = register(individual(phone="+8613900000001"))
    confirm_code(member=member, channel="phone", code=_last_code(member))
    time_machine.move_to(TODAY + dt.timedelta(minutes=2))
    send_code(member=member, channel="phone", target="13900000002")
    member.refresh_from_db()
    assert member.phone == "+8613900000001"
    sms = OutboxMessage.objects.filter(member=member).order_by("-id").first()
    assert sms.to_address == "+8613900000002"
    member = confirm_code(member=member, channel="phone", code=_last_code(member))
    member.refresh_from_db()
    assert member.phone == "+8613900000002"
    assert member.status == Member.Status.ACTIVE


def test_reg_8_new_phone_taken_meanwhile_is_a_409_and_nothing_changes(time_machine):
    member = register(individual(phone="+8613900000001"))
    confirm_code(member=member, channel="phone", code=_last_code(member))
    time_machine.move_to(TODAY + dt.timedelta(minutes=2))
    send_code(member=member, channel="phone", target="+8613900000002")
    code = _last_code(member)
    register(individual(phone="+8613900000002"))
    before = counts()
    with pytest.raises(Conflict) as info:
        confirm_code(member=member, channel="phone", code=code)
    assert info.value.code == "phone_taken"
    assert counts() == before
    member.refresh_from_db()
    assert member.phone == "+8613900000001"
    assert VerificationCode.objects.filter(member=member, consumed_at__isnull=True).count() == 1
