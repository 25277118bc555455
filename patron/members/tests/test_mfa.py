"""Two-step verification: TOTP and recovery codes for members, required for staff (AUTH-3)."""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from django.contrib.auth import SESSION_KEY
from django.test import Client

from patron.core import crypto
from patron.core.models import AuditEvent
from patron.members.tests.auth_helpers import (
    PASSWORD,
    headless_login,
    make_member,
    make_staff,
    session_token,
    totp_code,
)

pytestmark = pytest.mark.django_db
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
T0 = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _frozen_clock(time_machine):
    from django.core.cache import cache

    cache.clear()
    time_machine.move_to(T0, tick=False)
    return time_machine


def login(client: Client, identifier: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": identifier, "password": password})


def reauthenticate(client: Client) -> None:
    # allauth asks for the password again before any change to two-step verification.
    response = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302


def with_totp(user) -> RecoveryCodes:
    TOTP.activate(user, SECRET)
    return RecoveryCodes.activate(user)


def test_auth_3_member_turns_on_totp_and_the_secret_is_stored_encrypted(
    django_capture_on_commit_callbacks,
):
    member = make_member(username="twofactor")
    client = Client()
    assert login(client, "twofactor").status_code == 302
    reauthenticate(client)
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = client.session["mfa.totp.secret"]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})

    assert response.status_code == 302
    stored = Authenticator.objects.get(user=member.user, type=Authenticator.Type.TOTP)
    assert secret not in str(stored.data)
    assert crypto.decrypt(stored.data["secret"]) == secret
    assert Authenticator.objects.filter(
        user=member.user, type=Authenticator.Type.RECOVERY_CODES
    ).exists()
    added = AuditEvent.objects.filter(action="user.mfa_added", subject_id=str(member.user.pk))
    assert {event.details["type"] for event in added} >= {"totp"}


def test_auth_3_wrong_code_does_not_turn_totp_on():
    member = make_member(username="wrongcode")
    client = Client()
    login(client, "wrongcode")
    reauthenticate(client)
    client.get("/accounts/2fa/totp/activate/")
    before = AuditEvent.objects.count()

    response = client.post("/accounts/2fa/totp/activate/", {"code": "000000"})

    assert response.status_code == 200
    assert not Authenticator.objects.filter(user=member.user).exists()
    assert AuditEvent.objects.count() == before


def test_auth_3_sign_in_asks_for_the_code_after_the_password(_frozen_clock):
    member = make_member(username="coded")
    with_totp(member.user)
    client = Client()

    response = login(client, "coded")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert SESSION_KEY not in client.session  # not signed in on the password alone

    wrong = client.post("/accounts/2fa/authenticate/", {"code": "123456"})
    assert wrong.status_code == 200
    assert SESSION_KEY not in client.session

    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(SECRET)})
    assert response.status_code == 302
    assert client.session[SESSION_KEY] == str(member.user.pk)


def test_auth_3_headless_sign_in_with_totp():
    member = make_member(username="appcoded")
    with_totp(member.user)

    first = headless_login(Client(), "appcoded")

    assert first.status_code == 401
    flows = {flow["id"]: flow for flow in first.json()["data"]["flows"]}
    assert flows["mfa_authenticate"]["is_pending"] is True
    token = session_token(first)
    second = Client().post(
        "/api/auth/app/v1/auth/2fa/authenticate",
        {"code": totp_code(SECRET)},
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=token,
    )
    assert second.status_code == 200
    me = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=session_token(second))
    assert me.status_code == 200
    assert me.json()["two_factor_enabled"] is True
    assert me.json()["number"] == member.number


def test_auth_3_a_recovery_code_works_once(_frozen_clock):
    member = make_member(username="recovering")
    codes = with_totp(member.user).get_unused_codes()
    code = codes[0]

    client = Client()
    login(client, "recovering")
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302
    assert client.session[SESSION_KEY] == str(member.user.pk)
    rc = Authenticator.objects.get(user=member.user, type=Authenticator.Type.RECOVERY_CODES)
    assert code not in rc.wrap().get_unused_codes()

    _frozen_clock.move_to(T0 + dt.timedelta(minutes=2), tick=False)
    again = Client()
    login(again, "recovering")
    response = again.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 200
    assert SESSION_KEY not in again.session


# --- staff ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/console/", "/console/members/", "/console/admin/", "/"])
def test_auth_3_staff_without_totp_is_sent_to_set_it_up(path):
    make_staff(username="agent")
    client = Client()
    assert login(client, "agent").status_code == 302

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/totp/activate/"


def test_auth_3_staff_without_totp_may_still_set_it_up_and_sign_out():
    make_staff(username="agent")
    client = Client()
    login(client, "agent")

    assert client.get("/accounts/2fa/totp/activate/").status_code == 302  # password again
    reauthenticate(client)
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert SESSION_KEY not in client.session


def test_auth_3_staff_with_totp_reaches_the_console(_frozen_clock):
    staff = make_staff(username="agent")
    staff.is_superuser = True
    staff.save()
    with_totp(staff)
    client = Client()
    login(client, "agent")
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(SECRET)})

    response = client.get("/console/")

    assert response.status_code == 200


def test_auth_3_admin_login_form_is_replaced_by_the_sign_in_with_mfa():
    response = Client().get("/console/admin/login/?next=/console/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
