"""REG-9, REG-11: freeze (with an end), unfreeze, cancel; reason and actor; sign-in refused."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.management import call_command
from django.test import Client

from patron.core import audit
from patron.core.exceptions import Conflict, ValidationFailed
from patron.core.models import AuditEvent
from patron.members.models import Member, MemberStatusChange
from patron.members.services.status import change_status, unfreeze_expired
from patron.members.services.verification import confirm_code
from patron.members.tests.members_helpers import (
    CREDIT_CODE,
    PASSWORD,
    TODAY,
    counts,
    documents,  # noqa: F401 (fixture)
    enterprise,
    individual,
    register,
)
from patron.notify.models import OutboxMessage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]
STAFF = audit.Actor("staff", "7")


@pytest.fixture(autouse=True)
def _today(time_machine):
    time_machine.move_to(TODAY, tick=False)


def _activate(member: Member) -> Member:
    message = OutboxMessage.objects.filter(member=member, template="verification_code").last()
    code = re.search(r"\b(\d{6})\b", message.body).group(1)
    return confirm_code(member=member, channel="phone", code=code)


def _active(**changes) -> Member:
    return _activate(register(individual(**changes)))


def _refused(member, status, reason, until=None, exc=ValidationFailed):
    before = counts()
    with pytest.raises(exc) as info:
        change_status(member, status, reason, STAFF, until=until)
    assert counts() == before
    return info.value


def test_reg_11_freeze_records_reason_actor_audit_and_notice():
    member = _active()
    until = TODAY + dt.timedelta(days=7)
    member = change_status(member, "frozen", "False address reported", STAFF, until=until)
    member.refresh_from_db()
    assert member.status == "frozen"
    assert member.frozen_until == until
    assert member.status_reason == "False address reported"
    assert member.user.is_active is False
    change = MemberStatusChange.objects.filter(member=member).first()
    assert (change.from_status, change.to_status, change.reason) == (
        "active",
        "frozen",
        "False address reported",
    )
    assert (change.actor_type, change.actor_id, change.until) == ("staff", "7", until)
    event = AuditEvent.objects.filter(action="member.status_changed").last()
    assert event.details == {"from": "active", "to": "frozen", "change_id": change.pk}
    assert (event.actor_type, event.actor_id) == ("staff", "7")
    notice = OutboxMessage.objects.get(member=member, template="status_changed", channel="sms")
    assert "2026-11-29" in notice.body


def test_reg_11_frozen_member_cannot_sign_in(client: Client):
    member = _active(username="frosty")
    assert Client().login(username="frosty", password=PASSWORD)
    change_status(member, "frozen", "Review", STAFF)
    assert not Client().login(username="frosty", password=PASSWORD)
    change_status(member, "active", "Review done", STAFF)
    assert Client().login(username="frosty", password=PASSWORD)


def test_reg_11_freezing_ends_the_members_open_sessions():
    member = _active(username="sessioned")
    browser = Client()
    assert browser.login(username="sessioned", password=PASSWORD)
    assert browser.session.get("_auth_user_id") == str(member.user_id)
    change_status(member, "frozen", "Review", STAFF)
    response = browser.get("/")
    assert not response.wsgi_request.user.is_authenticated


def test_reg_11_unfreeze_of_a_never_verified_member_returns_to_pending():
    member = register(individual())
    change_status(member, "frozen", "Review", STAFF)
    member = change_status(member, "active", "Review done", STAFF)
    assert member.status == "pending"
    assert member.user.is_active


def test_reg_11_pending_member_cannot_be_activated_by_status():
    member = register(individual())
    error = _refused(member, "active", "Because", exc=Conflict)
    assert error.code == "phone_not_verified"


def test_reg_11_reason_is_required_and_status_must_be_known():
    member = _active()
    assert _refused(member, "frozen", "  ").code == "required"
    assert _refused(member, "pending", "x").code == "invalid_status"
    assert _refused(member, "active", "x", exc=Conflict).code == "status_unchanged"
    error = _refused(member, "cancelled", "x", until=TODAY + dt.timedelta(days=1))
    assert error.code == "not_allowed"
    error = _refused(member, "frozen", "x", until=TODAY - dt.timedelta(seconds=1))
    assert error.code == "until_in_past"


def test_reg_11_cancel_is_final_and_frees_phone_email_and_credit_code():
    person = _active(phone="+8613900000001", email="me@example.com")
    company = _activate(register(enterprise(credit_code=CREDIT_CODE)))
    for member in (person, company):
        change_status(member, "cancelled", "Member asked", STAFF)
        member.refresh_from_db()
        assert member.status == "cancelled"
        assert member.user.is_active is False
        assert (member.phone_index, member.email_index, member.credit_code_index) == (
            None,
            None,
            None,
        )
    assert person.phone == "+8613900000001"  # the ciphertext stays for retention (PRIV-6)
    for target in ("active", "frozen"):
        error = _refused(person, target, "Undo", exc=Conflict)
        assert error.code == "member_cancelled"
    again = register(individual(phone="+8613900000001", email="me@example.com"))
    assert again.pk != person.pk
    register(enterprise(credit_code=CREDIT_CODE))


def test_reg_11_unfreeze_expired_job_is_set_based_and_safe_twice(time_machine):
    short = change_status(_active(), "frozen", "a", STAFF, until=TODAY + dt.timedelta(days=1))
    long = change_status(_active(), "frozen", "b", STAFF, until=TODAY + dt.timedelta(days=9))
    open_ended = change_status(_active(), "frozen", "c", STAFF)
    time_machine.move_to(TODAY + dt.timedelta(days=2))
    assert unfreeze_expired() == 1
    assert unfreeze_expired() == 0
    statuses = dict(Member.objects.values_list("pk", "status"))
    assert statuses[short.pk] == "active"
    assert statuses[long.pk] == "frozen"
    assert statuses[open_ended.pk] == "frozen"
    change = MemberStatusChange.objects.filter(member=short).first()
    assert (change.to_status, change.actor_type, change.reason) == (
        "active",
        "system",
        "Freeze ended",
    )
    assert Member.objects.get(pk=short.pk).user.is_active


def test_reg_11_unfreeze_expired_command(time_machine, capsys):
    change_status(_active(), "frozen", "a", STAFF, until=TODAY + dt.timedelta(hours=1))
    time_machine.move_to(TODAY + dt.timedelta(hours=2))
    call_command("unfreeze_expired")
    assert "1" in capsys.readouterr().out
    call_command("unfreeze_expired")
    assert Member.objects.filter(status="frozen").count() == 0
