"""QR sign-in (AUTH-4): show, approve on a signed-in device, then sign in once."""

from __future__ import annotations

import datetime as dt
import threading
from urllib.parse import urlparse

import pytest
from django.contrib.auth import SESSION_KEY
from django.db import connection
from django.test import Client

from patron.core.models import AuditEvent
from patron.members.models import KnownDevice, QrLoginToken
from patron.members.services import qr_login
from patron.members.tests.auth_helpers import PASSWORD, make_member, make_staff
from patron.notify.models import OutboxMessage

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
DESKTOP = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"
)
PHONE = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36"


@pytest.fixture(autouse=True)
def _clock(time_machine):
    from django.core.cache import cache

    cache.clear()
    time_machine.move_to(T0, tick=False)
    return time_machine


def waiting_browser() -> tuple[Client, str]:
    """A browser that shows the QR code; returns it and the approval path the code encodes."""
    client = Client(HTTP_USER_AGENT=DESKTOP, HTTP_ACCEPT_LANGUAGE="en")
    page = client.get("/qr/login/")
    assert page.status_code == 200
    assert "<svg" in page.content.decode()
    return client, urlparse(page.context["approve_url"]).path


def phone_of(username: str) -> Client:
    client = Client(HTTP_USER_AGENT=PHONE, HTTP_ACCEPT_LANGUAGE="en")
    response = client.post("/accounts/login/", {"login": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def state() -> tuple:
    return (
        list(QrLoginToken.objects.values_list("status", "approved_by", "consumed_at")),
        AuditEvent.objects.count(),
        OutboxMessage.objects.count(),
    )


@pytest.mark.django_db
def test_auth_4_happy_path_signs_the_waiting_browser_in():
    member = make_member(username="scanner")
    browser, approve_path = waiting_browser()
    token = QrLoginToken.objects.get()
    assert token.digest not in approve_path  # only the secret travels; only its digest is kept
    assert token.expires_at == T0 + dt.timedelta(seconds=120)
    assert browser.get("/qr/login/status/").json() == {"status": "pending"}

    phone = phone_of("scanner")
    page = phone.get(approve_path)
    assert page.status_code == 200
    assert "Safari on macOS" in page.content.decode()
    assert phone.post(approve_path, {"decision": "approve"}).status_code == 200
    assert browser.get("/qr/login/status/").json() == {"status": "approved"}

    response = browser.post("/qr/login/complete/")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert browser.session[SESSION_KEY] == str(member.user.pk)
    token.refresh_from_db()
    assert (token.status, token.approved_by_id, token.consumed_at) == (
        "consumed",
        member.user.pk,
        T0,
    )
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("qr_login.approved") == 1
    assert actions.count("qr_login.consumed") == 1
    assert OutboxMessage.objects.filter(template="qr_login_approved", channel="inapp").count() == 1
    assert KnownDevice.objects.filter(user=member.user).count() == 2  # the phone, then this one
    assert browser.get("/security/").status_code == 200


@pytest.mark.django_db
def test_auth_4_sign_in_page_shows_the_qr_code():
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    assert 'src="/qr/login/?embed=1"' in page.content.decode()
    frame = Client().get("/qr/login/?embed=1")
    assert frame.status_code == 200
    assert frame["X-Frame-Options"] == "SAMEORIGIN"


@pytest.mark.django_db
def test_auth_4_expired_code_cannot_be_approved_or_used(_clock):
    make_member(username="late")
    browser, approve_path = waiting_browser()
    phone = phone_of("late")
    _clock.move_to(T0 + dt.timedelta(seconds=121), tick=False)
    before = state()

    approve = phone.post(approve_path, {"decision": "approve"})
    complete = browser.post("/qr/login/complete/")

    assert approve.status_code == 410
    assert "expired" in approve.content.decode()
    assert complete.status_code == 410
    assert SESSION_KEY not in browser.session
    assert browser.get("/qr/login/status/").json() == {"status": "expired"}
    assert state() == before


@pytest.mark.django_db
def test_auth_4_approved_but_expired_before_use_fails(_clock):
    make_member(username="slow")
    browser, approve_path = waiting_browser()
    phone_of("slow").post(approve_path, {"decision": "approve"})
    _clock.move_to(T0 + dt.timedelta(seconds=120), tick=False)
    before = state()

    response = browser.post("/qr/login/complete/")

    assert response.status_code == 410
    assert SESSION_KEY not in browser.session
    assert state() == before


@pytest.mark.django_db
def test_auth_4_a_used_code_cannot_be_used_again():
    make_member(username="twice")
    browser, approve_path = waiting_browser()
    phone = phone_of("twice")
    phone.post(approve_path, {"decision": "approve"})
    token_id = QrLoginToken.objects.get().pk
    assert browser.post("/qr/login/complete/").status_code == 302
    before = state()

    with pytest.raises(qr_login.QrLoginFailed) as excinfo:
        qr_login.consume(token_id=token_id, user_agent=DESKTOP)
    again = phone.post(approve_path, {"decision": "approve"})

    assert excinfo.value.code == "qr_used"
    assert again.status_code == 409
    assert "already used" in again.content.decode()
    assert state() == before


@pytest.mark.django_db
def test_auth_4_denied_code_signs_nobody_in():
    make_member(username="denier")
    browser, approve_path = waiting_browser()
    phone = phone_of("denier")

    assert phone.post(approve_path, {"decision": "deny"}).status_code == 200
    assert browser.get("/qr/login/status/").json() == {"status": "denied"}
    before = state()
    response = browser.post("/qr/login/complete/")

    assert response.status_code == 409
    assert "denied" in response.content.decode()
    assert SESSION_KEY not in browser.session
    assert state() == before
    assert AuditEvent.objects.filter(action="qr_login.denied").count() == 1


@pytest.mark.django_db
def test_auth_4_unapproved_code_signs_nobody_in():
    browser, _path = waiting_browser()
    before = state()

    response = browser.post("/qr/login/complete/")

    assert response.status_code == 409
    assert "not been approved" in response.content.decode()
    assert SESSION_KEY not in browser.session
    assert state() == before


@pytest.mark.django_db
def test_auth_4_another_browser_cannot_use_someone_elses_approved_code():
    make_member(username="owner")
    _browser, approve_path = waiting_browser()
    phone_of("owner").post(approve_path, {"decision": "approve"})
    thief = Client(HTTP_ACCEPT_LANGUAGE="en")
    before = state()

    response = thief.post("/qr/login/complete/")

    assert response.status_code == 400
    assert SESSION_KEY not in thief.session
    assert state() == before


@pytest.mark.django_db
def test_auth_4_approval_needs_a_signed_in_member():
    make_staff(username="staffer")
    _browser, approve_path = waiting_browser()
    before = state()

    anonymous = Client().get(approve_path)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")

    staff = make_staff.__globals__["User"].objects.get(username="staffer")
    with pytest.raises(qr_login.QrLoginFailed) as excinfo:
        qr_login.approve(secret=approve_path.rstrip("/").rsplit("/", 1)[1], user=staff)
    assert excinfo.value.code == "qr_member_required"
    assert state() == before


@pytest.mark.django_db
def test_auth_4_unknown_code_is_refused():
    make_member(username="guesser")
    response = phone_of("guesser").get("/qr/approve/not-a-real-token/")
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_auth_4_parallel_consumes_exactly_one_wins():
    member = make_member(username="racer")
    new = qr_login.start(user_agent=DESKTOP)
    qr_login.approve(secret=new.secret, user=member.user)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def consume() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(qr_login.consume(token_id=new.token.pk, user_agent=DESKTOP))
        except qr_login.QrLoginFailed as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=consume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    users = [r for r in results if not isinstance(r, str)]
    assert len(results) == 2
    assert [u.pk for u in users] == [member.user.pk]  # type: ignore[attr-defined]
    assert [r for r in results if isinstance(r, str)] == ["qr_used"]
    assert AuditEvent.objects.filter(action="qr_login.consumed").count() == 1
    assert QrLoginToken.objects.get().status == "consumed"
