"""Password policy, history and rotation (AUTH-1)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import ValidationFailed
from patron.core.models import AuditEvent
from patron.members.models import PasswordHistory, User
from patron.members.services import passwords
from patron.members.tests.auth_helpers import PASSWORD, headless_login, make_member, session_token
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()


def snapshot(user: User) -> tuple:
    user.refresh_from_db()
    return (
        user.password,
        user.password_changed_at,
        PasswordHistory.objects.filter(user=user).count(),
        AuditEvent.objects.count(),
        OutboxMessage.objects.count(),
    )


def refusal_codes(excinfo) -> list[str]:
    return [error.code for error in excinfo.value.errors]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("short", "password_too_short"),
        ("password123", "password_too_common"),
        ("lihua2026", "password_too_similar"),  # contains the username
        ("13812345678", "password_too_similar"),  # the phone number
        ("my13812345678!", "password_too_similar"),  # contains it
        ("lihua.wang.mail", "password_too_similar"),  # like the email's local part
    ],
)
def test_auth_1_policy_refusals_change_nothing(raw, code):
    member = make_member(username="lihua", phone="+8613812345678", email="lihua.wang@example.com")
    user = member.user
    before = snapshot(user)

    with pytest.raises(ValidationFailed) as excinfo:
        passwords.set_password(user, raw, actor=Actor.user(user))

    assert code in refusal_codes(excinfo)
    assert snapshot(User.objects.get(pk=user.pk)) == before


def test_auth_1_nist_defaults_accept_a_long_passphrase_without_composition_rules():
    member = make_member(username="phrase")
    passwords.set_password(member.user, "mango river quietly", actor=Actor.system())
    assert member.user.check_password("mango river quietly")


def test_auth_1_composition_rules_apply_only_when_configured(settings):
    settings.PATRON_PASSWORD = {**settings.PATRON_PASSWORD, "REQUIRE_CLASSES": 3}
    member = make_member(username="strict")
    before = snapshot(member.user)

    with pytest.raises(ValidationFailed) as excinfo:
        passwords.set_password(member.user, "mango river quietly", actor=Actor.system())

    assert refusal_codes(excinfo) == ["password_composition"]
    assert snapshot(User.objects.get(pk=member.user.pk)) == before
    passwords.set_password(member.user, "Mango river 42", actor=Actor.system())


def test_auth_1_set_password_records_history_audit_and_notice(time_machine):
    time_machine.move_to(dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC), tick=False)
    member = make_member(username="changer")
    user = member.user

    passwords.set_password(user, "a brand new secret", actor=Actor.user(user))

    user.refresh_from_db()
    assert user.check_password("a brand new secret")
    assert user.password_changed_at == dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC)
    history = list(PasswordHistory.objects.filter(user=user).values_list("password", flat=True))
    assert len(history) == 2  # the registration's password, then the new one
    assert history[0] == user.password
    event = AuditEvent.objects.get(action="user.password_changed")
    assert (event.subject_id, event.actor_type, event.details) == (str(user.pk), "member", {})
    assert list(
        OutboxMessage.objects.filter(template="password_changed").values_list("channel", flat=True)
    ) == ["sms"]


def test_auth_1_reuse_of_the_last_five_is_refused(settings):
    settings.PATRON_PASSWORD = {**settings.PATRON_PASSWORD, "HISTORY": 5}
    member = make_member(username="reuser")
    user = member.user
    first = "first secret phrase"
    passwords.set_password(user, first, actor=Actor.system())
    for n in range(1, 5):
        passwords.set_password(user, f"secret phrase number {n}", actor=Actor.system())
    before = snapshot(user)

    # `first` is the 5th most recent (with the current one): still remembered.
    with pytest.raises(ValidationFailed) as excinfo:
        passwords.set_password(user, first, actor=Actor.system())
    assert refusal_codes(excinfo) == ["password_reused"]
    with pytest.raises(ValidationFailed):
        passwords.set_password(user, "secret phrase number 4", actor=Actor.system())  # current
    assert snapshot(User.objects.get(pk=user.pk)) == before

    # One more change pushes it out of the window of 5: allowed again.
    passwords.set_password(user, "secret phrase number 5", actor=Actor.system())
    passwords.set_password(user, first, actor=Actor.system())
    assert PasswordHistory.objects.filter(user=user).count() == 5


def test_auth_1_change_password_page_refuses_reuse_and_accepts_a_new_one():
    member = make_member(username="webchanger")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert (
        client.post("/accounts/login/", {"login": "webchanger", "password": PASSWORD}).status_code
        == 302
    )
    before = snapshot(member.user)

    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 200
    assert "You used this password recently" in response.content.decode()
    assert snapshot(User.objects.get(pk=member.user.pk)) == before

    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": "fresh new phrase", "password2": "fresh new phrase"},
    )
    assert response.status_code == 302
    user = User.objects.get(pk=member.user.pk)
    assert user.check_password("fresh new phrase")
    assert PasswordHistory.objects.filter(user=user).count() == 2
    assert AuditEvent.objects.filter(action="user.password_changed").count() == 1


def test_auth_1_headless_password_change_applies_the_policy():
    member = make_member(username="appchanger", phone="+8613811112222")
    token = session_token(headless_login(Client(), "appchanger"))
    before = snapshot(member.user)

    response = Client().post(
        "/api/auth/app/v1/account/password/change",
        {"current_password": PASSWORD, "new_password": "13811112222"},
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=token,
    )

    assert response.status_code == 400
    assert "password_too_similar" in {e["code"] for e in response.json()["errors"]}
    assert snapshot(User.objects.get(pk=member.user.pk)) == before


def test_auth_1_rotation_when_configured_forces_a_change_after_sign_in(settings):
    settings.PATRON_PASSWORD = {**settings.PATRON_PASSWORD, "MAX_AGE_DAYS": 90}
    member = make_member(username="rotator")
    User.objects.filter(pk=member.user.pk).update(
        password_changed_at=clock.now() - dt.timedelta(days=91)
    )
    client = Client()
    assert (
        client.post("/accounts/login/", {"login": "rotator", "password": PASSWORD}).status_code
        == 302
    )

    response = client.get("/profile/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/password/change/")
    token = session_token(headless_login(Client(), "rotator"))
    api = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token)
    assert api.status_code == 403
    assert api.json()["code"] == "password_expired"

    client.post(
        "/accounts/password/change/",
        {
            "oldpassword": PASSWORD,
            "password1": "rotated phrase one",
            "password2": "rotated phrase one",
        },
    )
    assert client.get("/profile/").status_code == 200


def test_auth_1_rotation_is_off_by_default():
    member = make_member(username="norotation")
    User.objects.filter(pk=member.user.pk).update(
        password_changed_at=clock.now() - dt.timedelta(days=3650)
    )
    assert passwords.is_expired(User.objects.get(pk=member.user.pk)) is False
