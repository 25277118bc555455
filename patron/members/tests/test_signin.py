"""Sign-in by username, phone or email; lockout; throttling; account states (AUTH-2, REG-11)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from patron.core import clock
from patron.core.models import AuditEvent
from patron.members.models import Member, User
from patron.members.tests.auth_helpers import PASSWORD, headless_login, make_member
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # allauth keeps its rate-limit counters in the cache: each test starts from zero.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def en_client(**extra) -> Client:
    """A browser that asks for English, so the tests can read the messages."""
    return Client(HTTP_ACCEPT_LANGUAGE="en", **extra)


def web_login(client: Client, login: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": login, "password": password})


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def snapshot() -> tuple[int, int]:
    return AuditEvent.objects.count(), OutboxMessage.objects.count()


# --- identifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["lihua", "+8613812345678", "13812345678", "li@example.com"])
def test_auth_2_web_sign_in_by_username_phone_or_email(identifier):
    member = make_member(username="lihua", phone="+8613812345678", email="li@example.com")
    client = en_client()

    response = web_login(client, identifier)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in_user_id(client) == str(member.user.pk)


@pytest.mark.parametrize("identifier", ["lihua", "+8613812345678", "li@EXAMPLE.com"])
def test_auth_2_headless_sign_in_by_username_phone_or_email(identifier):
    member = make_member(username="lihua", phone="+8613812345678", email="li@example.com")

    response = headless_login(en_client(), identifier)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["data"]["user"]["id"] == member.user.pk
    assert body["meta"]["session_token"]


def test_auth_2_unknown_identifier_is_a_generic_refusal():
    before = snapshot()
    client = en_client()

    response = web_login(client, "nobody")

    assert response.status_code == 200
    assert "do not match" in response.content.decode() or "not correct" in response.content.decode()
    assert signed_in_user_id(client) is None
    assert snapshot() == before


# --- failures and lockout ------------------------------------------------------------------


def test_auth_2_wrong_password_is_counted_and_nothing_else_changes():
    member = make_member(username="counted")
    before = snapshot()
    client = en_client()

    response = web_login(client, "counted", "wrong password")

    assert response.status_code == 200
    assert signed_in_user_id(client) is None
    user = User.objects.get(pk=member.user.pk)
    assert user.failed_sign_ins == 1
    assert user.locked_until is None
    assert snapshot() == before


def test_auth_2_success_resets_the_failure_count():
    member = make_member(username="resets")
    for _ in range(3):
        web_login(en_client(), "resets", "wrong password")
    assert User.objects.get(pk=member.user.pk).failed_sign_ins == 3

    response = web_login(en_client(), "resets")

    assert response.status_code == 302
    assert User.objects.get(pk=member.user.pk).failed_sign_ins == 0


def test_auth_2_lockout_at_threshold_with_one_notice_until_it_expires(settings, time_machine):
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC), tick=False)
    settings.PATRON_LOCKOUT = {"MAX_FAILURES": 5, "MINUTES": 15}
    member = make_member(username="locked", email="locked@example.com")
    user_id = member.user.pk

    for attempt in range(4):
        response = web_login(en_client(), "locked", f"wrong {attempt}")
        assert "is locked" not in response.content.decode()
    assert User.objects.get(pk=user_id).failed_sign_ins == 4
    assert not OutboxMessage.objects.filter(template="account_locked").exists()

    response = web_login(en_client(), "locked", "wrong 5")

    assert "locked for 15 more minute" in response.content.decode()
    user = User.objects.get(pk=user_id)
    assert user.locked_until == clock.now() + dt.timedelta(minutes=15)
    notices = OutboxMessage.objects.filter(template="account_locked", member=member)
    assert sorted(notices.values_list("channel", flat=True)) == ["email", "sms"]
    locks = AuditEvent.objects.filter(action="user.locked", subject_id=str(user_id))
    assert locks.count() == 1
    assert locks.get().details == {"failures": 5, "minutes": 15}

    # While locked, even the right password is refused, clearly, and nothing changes.
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 14, tzinfo=dt.UTC), tick=False)
    before = snapshot()
    for password in (PASSWORD, "still wrong"):
        client = en_client()
        response = web_login(client, "locked", password)
        assert response.status_code == 200
        assert "locked for 1 more minute" in response.content.decode()
        assert signed_in_user_id(client) is None
    response = headless_login(en_client(), "+" + "".join(c for c in member.phone if c.isdigit()))
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "account_locked"
    assert snapshot() == before
    assert User.objects.get(pk=user_id).locked_until == user.locked_until

    # After the lock, the right password works and the count starts again.
    time_machine.move_to(dt.datetime(2026, 11, 22, 10, 15, 1, tzinfo=dt.UTC), tick=False)
    client = en_client()
    response = web_login(client, "locked")
    assert response.status_code == 302
    assert signed_in_user_id(client) == str(user_id)
    user = User.objects.get(pk=user_id)
    assert (user.failed_sign_ins, user.locked_until) == (0, None)
    assert OutboxMessage.objects.filter(template="account_locked").count() == 2


def test_auth_2_throttle_per_ip_refuses_before_checking(settings):
    # allauth's "login_failed" limit: 10 failures a minute from one address.
    members = [make_member(username=f"ip{i}") for i in range(11)]
    for member in members[:10]:
        web_login(en_client(REMOTE_ADDR="203.0.113.9"), member.user.username, "wrong password")
    last = members[10]
    before = snapshot()

    client = en_client(REMOTE_ADDR="203.0.113.9")
    response = web_login(client, last.user.username)

    assert response.status_code in (200, 429)
    assert "Too many failed login attempts" in response.content.decode()
    assert signed_in_user_id(client) is None
    assert User.objects.get(pk=last.user.pk).failed_sign_ins == 0
    assert snapshot() == before
    # Another address is not affected.
    response = web_login(en_client(REMOTE_ADDR="198.51.100.7"), last.user.username)
    assert response.status_code == 302


# --- account states -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Member.Status.FROZEN, "This account is frozen"),
        (Member.Status.CANCELLED, "This account has been cancelled"),
    ],
)
def test_reg_11_frozen_or_cancelled_member_cannot_sign_in(status, message):
    member = make_member(username="stateful", status=status)
    before = snapshot()
    client = en_client()

    response = web_login(client, "stateful")

    assert response.status_code == 200
    assert message in response.content.decode()
    assert signed_in_user_id(client) is None
    assert User.objects.get(pk=member.user.pk).failed_sign_ins == 0
    assert snapshot() == before
    headless = headless_login(en_client(), "stateful")
    assert headless.status_code == 400
    assert headless.json()["errors"][0]["code"] == f"account_{status}"


def test_reg_11_frozen_member_with_wrong_password_learns_nothing_about_the_state():
    make_member(username="frozenwrong", status=Member.Status.FROZEN)
    response = web_login(en_client(), "frozenwrong", "wrong password")
    assert "This account is frozen" not in response.content.decode()
    assert "not correct" in response.content.decode()


def test_reg_6_pending_member_can_sign_in_to_verify_the_phone():
    member = make_member(username="pending", status=Member.Status.PENDING)
    client = en_client()

    response = web_login(client, "pending")

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(member.user.pk)


# --- registration is not allauth's -----------------------------------------------------------


def test_reg_1_allauth_signup_page_sends_people_to_portal_registration():
    response = en_client().get("/accounts/signup/")
    assert response.status_code == 302
    assert response["Location"] == "/register/"


def test_reg_1_headless_signup_is_closed_and_creates_nothing():
    users = User.objects.count()
    before = snapshot()

    response = en_client().post(
        "/api/auth/app/v1/auth/signup",
        {"username": "sneaky", "password": "a long enough password"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert User.objects.count() == users
    assert snapshot() == before
