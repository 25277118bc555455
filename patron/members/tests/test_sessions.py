"""Sessions: list and revoke; a notice on sign-in from a new device (AUTH-5)."""

from __future__ import annotations

import pytest
from allauth.usersessions.models import UserSession
from django.contrib.auth import SESSION_KEY
from django.test import Client

from patron.core.models import AuditEvent
from patron.members.models import KnownDevice
from patron.members.services.signin import device_fingerprint
from patron.members.tests.auth_helpers import PASSWORD, headless_login, make_member, session_token
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db
LAPTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1"


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()


def signed_in(username: str, agent: str = LAPTOP) -> Client:
    client = Client(HTTP_USER_AGENT=agent, HTTP_ACCEPT_LANGUAGE="en")
    response = client.post("/accounts/login/", {"login": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def is_signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


# --- list and revoke ------------------------------------------------------------------------


def test_auth_5_security_page_lists_the_sessions():
    make_member(username="lister")
    laptop = signed_in("lister", LAPTOP)
    signed_in("lister", PHONE)

    page = laptop.get("/security/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Chrome on Windows" in html
    assert "Safari on iOS" in html
    assert html.count("This device") == 1


def test_auth_5_revoking_another_session_signs_that_device_out():
    member = make_member(username="revoker")
    laptop = signed_in("revoker", LAPTOP)
    phone = signed_in("revoker", PHONE)
    phone_session = UserSession.objects.get(session_key=phone.session.session_key)

    response = laptop.post("/security/sessions/revoke/", {"session": phone_session.pk})

    assert response.status_code == 302
    assert not UserSession.objects.filter(pk=phone_session.pk).exists()
    assert phone.get("/security/").status_code == 302  # back to the sign-in page
    assert not is_signed_in(phone)
    assert laptop.get("/security/").status_code == 200
    event = AuditEvent.objects.get(action="user.sessions_revoked")
    assert (event.subject_id, event.details) == (
        str(member.user.pk),
        {"sessions": [phone_session.pk]},
    )


def test_auth_5_sign_out_everywhere_else_keeps_this_session():
    make_member(username="everywhere")
    laptop = signed_in("everywhere", LAPTOP)
    phone = signed_in("everywhere", PHONE)
    token = session_token(headless_login(Client(), "everywhere"))

    laptop.post("/security/sessions/revoke/", {"scope": "others"})

    assert laptop.get("/security/").status_code == 200
    assert phone.get("/security/").status_code == 302
    assert Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token).status_code == 401


def test_auth_5_revoking_the_current_session_signs_out():
    make_member(username="selfrevoke")
    laptop = signed_in("selfrevoke")
    current = UserSession.objects.get(session_key=laptop.session.session_key)

    response = laptop.post("/security/sessions/revoke/", {"session": current.pk})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert not is_signed_in(laptop)


def test_auth_5_someone_elses_session_cannot_be_revoked():
    make_member(username="attacker")
    make_member(username="victim")
    attacker = signed_in("attacker")
    victim = signed_in("victim", PHONE)
    victim_session = UserSession.objects.get(session_key=victim.session.session_key)
    audit_before = AuditEvent.objects.count()

    attacker.post("/security/sessions/revoke/", {"session": victim_session.pk})

    assert UserSession.objects.filter(pk=victim_session.pk).exists()
    assert victim.get("/security/").status_code == 200
    assert AuditEvent.objects.count() == audit_before


# --- new device ---------------------------------------------------------------------------


def test_auth_5_first_sign_in_records_the_device_without_a_notice():
    member = make_member(username="firsttime", email="first@example.com")

    signed_in("firsttime", LAPTOP)

    device = KnownDevice.objects.get(user=member.user)
    assert device.fingerprint == device_fingerprint(LAPTOP)
    assert not OutboxMessage.objects.filter(template="new_device").exists()
    event = AuditEvent.objects.get(action="user.device_added")
    assert event.details == {"device_id": device.pk, "method": "password", "notified": False}


def test_auth_5_new_device_is_noticed_once():
    member = make_member(username="newdevice", email="nd@example.com")
    signed_in("newdevice", LAPTOP)
    signed_in("newdevice", LAPTOP)
    assert not OutboxMessage.objects.filter(template="new_device").exists()

    signed_in("newdevice", PHONE)

    notices = OutboxMessage.objects.filter(template="new_device", member=member)
    assert sorted(notices.values_list("channel", flat=True)) == ["email", "inapp", "sms"]
    assert "Safari on iOS" in notices.get(channel="sms").body
    assert PHONE not in notices.get(channel="sms").body
    assert KnownDevice.objects.filter(user=member.user).count() == 2
    assert AuditEvent.objects.filter(action="user.device_added").count() == 2

    before = (OutboxMessage.objects.count(), AuditEvent.objects.count())
    signed_in("newdevice", PHONE)
    headless_login(Client(HTTP_USER_AGENT=PHONE), "newdevice")
    assert (OutboxMessage.objects.count(), AuditEvent.objects.count()) == before


def test_auth_5_app_revokes_a_session_through_the_headless_api():
    member = make_member(username="apprevoke")
    laptop = signed_in("apprevoke", LAPTOP)
    laptop_session = UserSession.objects.get(session_key=laptop.session.session_key)
    token = session_token(headless_login(Client(HTTP_USER_AGENT=PHONE), "apprevoke"))

    response = Client().delete(
        "/api/auth/app/v1/auth/sessions",
        {"sessions": [laptop_session.pk]},
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=token,
    )

    assert response.status_code == 200
    assert laptop.get("/security/").status_code == 302
    event = AuditEvent.objects.get(action="user.sessions_revoked")
    assert (event.subject_id, event.actor_id, event.details) == (
        str(member.user.pk),
        str(member.user.pk),
        {"sessions": [laptop_session.pk]},
    )


# --- the cap on signed-in sessions ----------------------------------------------------------


def test_auth_5_sign_in_beyond_the_cap_ends_the_least_recently_seen_session(settings):
    settings.PATRON_MAX_SESSIONS = 3
    make_member(username="capped")
    clients = []
    for _ in range(3):
        clients.append(signed_in("capped"))
    assert UserSession.objects.filter(user__username="capped").count() == 3
    # The first browser is used again, so the second is now the least recently seen.
    UserSession.objects.filter(session_key=clients[0].session.session_key).update(
        last_seen_at=UserSession.objects.order_by("-last_seen_at").first().last_seen_at
    )
    revoked_before = AuditEvent.objects.filter(action="user.sessions_revoked").count()

    clients.append(signed_in("capped"))

    assert UserSession.objects.filter(user__username="capped").count() == 3
    assert [is_signed_in(client) for client in clients] == [True, False, True, True]
    assert AuditEvent.objects.filter(action="user.sessions_revoked").count() == revoked_before + 1


def test_auth_5_sign_ins_within_the_cap_end_nothing(settings):
    settings.PATRON_MAX_SESSIONS = 3
    make_member(username="uncapped")
    clients = [signed_in("uncapped") for _ in range(3)]
    assert all(is_signed_in(client) for client in clients)
    assert not AuditEvent.objects.filter(action="user.sessions_revoked").exists()
