"""New versions of required documents are accepted at the next sign-in (PRIV-9)."""

from __future__ import annotations

import pytest
from django.test import Client

from patron.core.models import AuditEvent
from patron.members.models import Consent
from patron.members.tests.auth_helpers import (
    PASSWORD,
    headless_login,
    make_member,
    make_staff,
    publish,
    session_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def member_with_old_terms():
    member = make_member(username="reader")
    for kind in ("terms", "privacy"):
        Consent.objects.create(
            member=member, document=publish(kind, "1.0"), granted=True, channel="portal"
        )
    publish("terms", "2.0")
    return member


def signed_in(username: str) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert (
        client.post("/accounts/login/", {"login": username, "password": PASSWORD}).status_code
        == 302
    )
    return client


def snapshot() -> tuple[int, int]:
    return Consent.objects.count(), AuditEvent.objects.count()


def test_priv_9_portal_pages_redirect_to_the_accept_page(member_with_old_terms):
    client = signed_in("reader")

    response = client.get("/profile/")

    assert response.status_code == 302
    assert response["Location"] == "/consents/accept/?next=%2Fprofile%2F"
    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="terms@2.0"' in html
    assert "privacy@" not in html  # accepted already in its current version


def test_priv_9_documents_and_sign_out_stay_reachable(member_with_old_terms):
    client = signed_in("reader")
    assert client.get("/documents/terms/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302


def test_priv_9_accepting_without_ticking_changes_nothing(member_with_old_terms):
    client = signed_in("reader")
    before = snapshot()

    response = client.post("/consents/accept/", {"next": "/profile/"})

    assert response.status_code == 400
    assert "tick each document" in response.content.decode()
    assert snapshot() == before
    assert client.get("/profile/").status_code == 302


def test_priv_9_accepting_an_outdated_version_changes_nothing(member_with_old_terms):
    client = signed_in("reader")
    before = snapshot()

    response = client.post("/consents/accept/", {"accept": ["terms@1.0"]})

    assert response.status_code == 400
    assert snapshot() == before


def test_priv_9_accepting_records_the_exact_version_and_lifts_the_gate(member_with_old_terms):
    client = signed_in("reader")
    token = session_token(headless_login(Client(), "reader"))
    assert Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token).status_code == 403

    response = client.post("/consents/accept/", {"accept": ["terms@2.0"], "next": "/profile/"})

    assert response.status_code == 302
    assert response["Location"] == "/profile/"
    latest = Consent.objects.filter(member=member_with_old_terms).order_by("-id").first()
    assert (latest.document.kind, latest.document.version, latest.granted, latest.channel) == (
        "terms",
        "2.0",
        True,
        "portal",
    )
    assert AuditEvent.objects.filter(action="consent.granted").count() == 1
    assert client.get("/profile/").status_code == 200
    assert Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token).status_code == 200


def test_priv_9_open_redirect_is_not_followed(member_with_old_terms):
    client = signed_in("reader")
    response = client.post(
        "/consents/accept/", {"accept": ["terms@2.0"], "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_priv_9_member_with_current_consents_is_not_stopped():
    member = make_member(username="uptodate")
    Consent.objects.create(
        member=member, document=publish("terms", "3.0"), granted=True, channel="api"
    )
    client = signed_in("uptodate")
    assert client.get("/profile/").status_code == 200
    assert client.get("/consents/accept/").status_code == 302


def test_priv_9_staff_are_not_gated_by_member_documents():
    publish("terms", "1.0")
    make_staff(username="staffer")
    client = signed_in("staffer")
    # Staff meet the 2FA gate instead, never the consent page.
    assert client.get("/").headers["Location"] == "/accounts/2fa/totp/activate/"
