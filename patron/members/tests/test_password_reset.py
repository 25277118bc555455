"""A forgotten password, reset with a code sent to the verified phone (AUTH-1, AUTH-2, AUTH-5).

The service, the portal's two pages and the platform API: who gets a code (and that the
answer never tells), what a reset changes (password, history, lockout, every session,
the notice) and every refusal, with proof that nothing else changed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import pytest
from allauth.usersessions.models import UserSession
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.db import connection
from django.test import Client

from patron.api.keys import create_api_key
from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import ValidationFailed
from patron.core.models import AuditEvent
from patron.members.models import Member, PasswordHistory, User, VerificationCode
from patron.members.services import password_reset, verification
from patron.members.tests.auth_helpers import PASSWORD, make_member
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "amber kettle winter 42"
PURPOSE = VerificationCode.Purpose.PASSWORD_RESET


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # allauth's and the portal's rate limits live in the cache


def _key(member: Member) -> str:
    return password_reset.phone_key(member.phone)


def _code_sent(member: Member) -> str:
    """The code as the member reads it: the body of the reset message in the outbox."""
    message = (
        OutboxMessage.objects.filter(member=member, template="password_reset_code")
        .order_by("-id")
        .first()
    )
    assert message is not None, "no reset code was sent"
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def _state(member: Member) -> dict:
    """Everything a reset may change, to prove a refusal changed none of it."""
    member.user.refresh_from_db()
    return {
        "password": member.user.password,
        "history": PasswordHistory.objects.count(),
        "sessions": UserSession.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "audit": AuditEvent.objects.count(),
        "consumed": VerificationCode.objects.filter(consumed_at__isnull=False).count(),
    }


def _signed_in(member: Member) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    response = client.post(
        "/accounts/login/", {"login": member.user.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


# --- the service -----------------------------------------------------------------------------


def test_auth_1_reset_sets_the_password_clears_the_lockout_and_tells_the_member(time_machine):
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC), tick=False)
    member = make_member(username="forgetful")
    User.objects.filter(pk=member.user.pk).update(
        failed_sign_ins=9, locked_until=clock.now() + dt.timedelta(hours=1)
    )
    password_reset.request_reset(key=_key(member), ip="203.0.113.5")
    row = VerificationCode.objects.get(member=member)
    assert (row.purpose, row.channel, row.target) == (PURPOSE, "phone", member.phone)
    code = _code_sent(member)
    assert code not in row.code_hash  # stored only hashed

    password_reset.reset_password(key=_key(member), code=code, password=NEW_PASSWORD)

    user = User.objects.get(pk=member.user.pk)
    assert user.check_password(NEW_PASSWORD)
    assert not user.check_password(PASSWORD)
    assert (user.failed_sign_ins, user.locked_until) == (0, None)
    assert VerificationCode.objects.get(pk=row.pk).consumed_at is not None
    assert OutboxMessage.objects.filter(member=member, template="password_changed").exists()
    reset = AuditEvent.objects.get(action="user.password_reset")
    assert reset.details == {"code_id": row.pk, "sessions_ended": 0}
    assert AuditEvent.objects.filter(action="user.password_changed").count() == 1

    # The old password joined the history: the reuse rule keeps it from coming back.
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 5, tzinfo=dt.UTC), tick=False)
    password_reset.request_reset(key=_key(member))
    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=_code_sent(member), password=PASSWORD)
    assert [(e.field, e.code) for e in info.value.errors] == [("password", "password_reused")]


def test_auth_5_reset_signs_the_member_out_everywhere():
    member = make_member(username="everywhere")
    laptop, phone = _signed_in(member), _signed_in(member)
    assert UserSession.objects.filter(user=member.user).count() == 2

    password_reset.request_reset(key=_key(member))
    password_reset.reset_password(key=_key(member), code=_code_sent(member), password=NEW_PASSWORD)

    assert UserSession.objects.filter(user=member.user).count() == 0
    assert SESSION_KEY not in laptop.session
    assert laptop.get("/security/").status_code == 302  # back to sign-in
    assert phone.get("/security/").status_code == 302
    assert AuditEvent.objects.get(action="user.password_reset").details["sessions_ended"] == 2


@pytest.mark.parametrize(
    "status", [Member.Status.PENDING, Member.Status.CANCELLED], ids=["pending", "cancelled"]
)
def test_auth_1_no_code_for_a_phone_that_cannot_reset(status):
    member = make_member(username=f"cannot_{status}", status=status)
    before = _state(member)
    codes = VerificationCode.objects.count()

    password_reset.request_reset(key=_key(member))  # no error: the same answer as success

    assert VerificationCode.objects.count() == codes
    assert _state(member) == before


def test_auth_1_the_request_costs_the_same_for_any_phone(settings):
    """The request only queues a task with the phone's and the IP's blind indexes, whatever
    the phone: it writes and looks up nothing a caller could time. The worker sends the
    code, and only for a member's verified phone."""
    from django_tasks import default_task_backend

    from patron.members.tasks import send_password_reset_code

    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    member = make_member(username="timed")
    before = _state(member)
    unknown = password_reset.phone_key("+8613999999999")

    password_reset.request_reset(key=_key(member), ip="203.0.113.9")
    password_reset.request_reset(key=unknown, ip="203.0.113.9")

    queued = default_task_backend.results
    assert [r.task.func for r in queued] == [send_password_reset_code.func] * 2
    assert [len(r.args) for r in queued] == [2, 2]
    assert "203.0.113.9" not in str([r.args for r in queued])
    assert member.phone not in str([r.args for r in queued])
    assert VerificationCode.objects.count() == 0 and _state(member) == before

    sent = [send_password_reset_code.call(*r.args) for r in queued]  # the worker's turn

    assert sent == [True, False]
    assert VerificationCode.objects.get().member_id == member.pk
    assert VerificationCode.objects.get().ip_index == queued[0].args[1] != ""


def test_auth_1_unknown_phone_sends_nothing_and_fails_like_a_wrong_code():
    member = make_member(username="bystander")
    before = _state(member)
    unknown = password_reset.phone_key("+8613999999999")

    password_reset.request_reset(key=unknown)
    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=unknown, code="123456", password=NEW_PASSWORD)

    assert (info.value.errors[0].field, info.value.code) == ("code", "code_invalid")
    assert VerificationCode.objects.count() == 0
    assert _state(member) == before


def test_auth_1_not_a_phone_number_is_refused_by_field():
    with pytest.raises(ValidationFailed) as info:
        password_reset.phone_key("call me maybe")
    assert (info.value.errors[0].field, info.value.code) == ("phone", "invalid_phone")


def test_auth_2_wrong_code_costs_a_try_and_changes_nothing_else():
    member = make_member(username="typo")
    password_reset.request_reset(key=_key(member))
    code = _code_sent(member)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    before = _state(member)

    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=wrong, password=NEW_PASSWORD)

    assert info.value.code == "code_invalid"
    assert VerificationCode.objects.get(member=member).attempts == 1
    assert _state(member) == before


def test_auth_2_five_wrong_tries_lock_the_code_even_for_the_right_one():
    member = make_member(username="guesser")
    password_reset.request_reset(key=_key(member))
    code = _code_sent(member)
    for _ in range(5):
        with pytest.raises(ValidationFailed):
            password_reset.reset_password(key=_key(member), code="000000", password=NEW_PASSWORD)
    before = _state(member)

    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=code, password=NEW_PASSWORD)

    assert info.value.code == "code_locked"
    assert _state(member) == before


def test_auth_1_expired_code_is_refused(time_machine):
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC), tick=False)
    member = make_member(username="late")
    password_reset.request_reset(key=_key(member))
    code = _code_sent(member)
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 10, tzinfo=dt.UTC), tick=False)
    before = _state(member)

    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=code, password=NEW_PASSWORD)

    assert info.value.code == "code_expired"
    assert _state(member) == before


def test_auth_1_a_weak_password_is_refused_and_the_code_stays_usable():
    member = make_member(username="weakling")
    password_reset.request_reset(key=_key(member))
    code = _code_sent(member)
    before = _state(member)

    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=code, password="password")

    assert {e.field for e in info.value.errors} == {"password"}
    assert _state(member) == before
    assert VerificationCode.objects.get(member=member).attempts == 0
    password_reset.reset_password(key=_key(member), code=code, password=NEW_PASSWORD)
    assert User.objects.get(pk=member.user.pk).check_password(NEW_PASSWORD)


def test_auth_1_a_used_code_does_not_work_twice():
    member = make_member(username="twice")
    password_reset.request_reset(key=_key(member))
    code = _code_sent(member)
    password_reset.reset_password(key=_key(member), code=code, password=NEW_PASSWORD)
    before = _state(member)

    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=code, password="another fine phrase 9")

    assert info.value.code == "code_used"
    assert _state(member) == before


def test_auth_1_codes_prove_one_purpose_only():
    """A code sent to verify the phone cannot reset the password, and a reset code cannot
    verify a phone."""
    member = make_member(username="purposeful")
    verification.send_code(member=member, channel="phone")
    verify_message = OutboxMessage.objects.get(member=member, template="verification_code")
    verify_code = re.search(r"\b(\d{6})\b", verify_message.body).group(1)
    before = _state(member)

    with pytest.raises(ValidationFailed) as info:
        password_reset.reset_password(key=_key(member), code=verify_code, password=NEW_PASSWORD)
    assert info.value.code == "code_invalid"
    assert _state(member) == before

    VerificationCode.objects.update(created_at=clock.now() - dt.timedelta(minutes=2))
    password_reset.request_reset(key=_key(member))
    with pytest.raises(ValidationFailed) as info:
        verification.confirm_code(member=member, channel="phone", code=_code_sent(member))
    assert info.value.code == "code_invalid"


def test_auth_2_a_throttled_request_is_silent_and_sends_nothing():
    member = make_member(username="impatient")
    password_reset.request_reset(key=_key(member))
    password_reset.request_reset(key=_key(member))  # within the 60 s cooldown

    assert VerificationCode.objects.filter(member=member).count() == 1
    assert OutboxMessage.objects.filter(template="password_reset_code").count() == 1


@pytest.mark.django_db(transaction=True)
def test_auth_1_parallel_resets_with_one_code_exactly_one_wins():
    member = make_member(username="racer")
    password_reset.request_reset(key=_key(member))
    code, key = _code_sent(member), _key(member)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def reset(password: str) -> None:
        try:
            barrier.wait(timeout=10)
            password_reset.reset_password(key=key, code=code, password=password)
            results.append(password)
        except ValidationFailed as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=reset, args=(p,)) for p in (NEW_PASSWORD, "velvet harbor comet 88")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [r for r in results if r != "code_used"]
    assert len(results) == 2 and len(winners) == 1
    assert User.objects.get(pk=member.user.pk).check_password(winners[0])
    assert AuditEvent.objects.filter(action="user.password_reset").count() == 1


# --- the portal ------------------------------------------------------------------------------


def test_auth_1_portal_reset_end_to_end():
    member = make_member(username="portal_forgot")
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    login_page = browser.get("/accounts/login/").content.decode()
    assert 'href="/password/reset/"' in login_page

    sent = browser.post("/password/reset/", {"phone": member.phone})
    assert sent.status_code == 302 and sent["Location"] == "/password/reset/confirm/"
    # Between the steps the session holds the phone's blind index, never the number.
    stored = json.dumps(dict(browser.session.items()))
    assert member.phone not in stored and member.phone[3:] not in stored

    page = browser.get("/password/reset/confirm/")
    assert page.status_code == 200 and "valid for 10 minutes" in page.content.decode()
    done = browser.post(
        "/password/reset/confirm/",
        {"code": _code_sent(member), "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/login/"
    signed = browser.post(
        "/accounts/login/", {"login": member.user.username, "password": NEW_PASSWORD}
    )
    assert signed.status_code == 302 and SESSION_KEY in browser.session


def test_auth_1_portal_same_answer_for_an_unknown_phone_and_errors_by_field():
    member = make_member(username="portal_refusals")
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    unknown = browser.post("/password/reset/", {"phone": "+8613999999999"})
    assert unknown.status_code == 302 and unknown["Location"] == "/password/reset/confirm/"
    assert VerificationCode.objects.count() == 0

    not_a_phone = browser.post("/password/reset/", {"phone": "12"})
    assert not_a_phone.status_code == 200
    assert "This is not a valid phone number." in not_a_phone.content.decode()

    browser.post("/password/reset/", {"phone": member.phone})
    before = _state(member)
    mismatch = browser.post(
        "/password/reset/confirm/",
        {"code": _code_sent(member), "password": NEW_PASSWORD, "password_again": "other"},
    )
    wrong = browser.post(
        "/password/reset/confirm/",
        {"code": "000000", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    assert mismatch.status_code == 200
    assert "The two passwords do not match." in mismatch.content.decode()
    assert wrong.status_code == 200 and "The code is not correct." in wrong.content.decode()
    assert _state(member) == before


def test_auth_1_portal_confirm_without_a_request_starts_over():
    response = Client().get("/password/reset/confirm/")
    assert response.status_code == 302 and response["Location"] == "/password/reset/"


def test_auth_2_portal_reset_is_rate_limited_per_address():
    browser = Client(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR="198.51.100.7")
    statuses = [
        browser.post("/password/reset/", {"phone": "+8613999999999"}).status_code for _ in range(11)
    ]
    assert statuses[:10] == [302] * 10
    assert statuses[10] == 429


# --- the platform API ------------------------------------------------------------------------


def _api() -> Client:
    key = create_api_key(name="shop", scopes=["members:write"], actor=Actor.system())
    return Client(HTTP_AUTHORIZATION=f"Bearer {key.secret}")


def _post(client: Client, path: str, body: dict):
    return client.post(path, json.dumps(body), content_type="application/json")


def test_auth_1_api_reset_end_to_end_and_the_same_202_for_unknown_phones():
    member = make_member(username="api_forgot")
    api = _api()
    known = _post(api, "/api/v1/password-resets", {"phone": member.phone})
    unknown = _post(api, "/api/v1/password-resets", {"phone": "+8613999999999"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json() == {"expires_in": 600, "resend_after": 60}

    done = _post(
        api,
        "/api/v1/password-resets/confirm",
        {"phone": member.phone, "code": _code_sent(member), "password": NEW_PASSWORD},
    )
    assert done.status_code == 204
    assert User.objects.get(pk=member.user.pk).check_password(NEW_PASSWORD)


def test_auth_1_api_refusals_are_problem_json_by_field_and_change_nothing():
    member = make_member(username="api_refusals")
    api = _api()
    _post(api, "/api/v1/password-resets", {"phone": member.phone})
    before = _state(member)

    bad_phone = _post(api, "/api/v1/password-resets", {"phone": "nope"})
    weak = _post(
        api,
        "/api/v1/password-resets/confirm",
        {"phone": member.phone, "code": _code_sent(member), "password": "password"},
    )
    no_scope = Client().post("/api/v1/password-resets", "{}", content_type="application/json")

    assert bad_phone.status_code == 422
    assert bad_phone["Content-Type"].startswith("application/problem+json")
    assert bad_phone.json()["errors"][0]["field"] == "phone"
    assert weak.status_code == 422
    assert {e["field"] for e in weak.json()["errors"]} == {"password"}
    assert no_scope.status_code == 401
    assert _state(member) == before
