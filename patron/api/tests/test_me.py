"""GET /api/v1/me and /me/sessions with an allauth headless session token (AUTH-*, PRIV-9)."""

from __future__ import annotations

import pytest
from django.test import Client

from patron.core.models import AuditEvent
from patron.members.models import Consent, Member
from patron.members.tests.auth_helpers import (
    headless_login,
    make_member,
    make_staff,
    publish,
    session_token,
)

pytestmark = pytest.mark.django_db


def _signed_in(client: Client, identifier: str) -> str:
    response = headless_login(client, identifier)
    assert response.status_code == 200, response.content
    return session_token(response)


def test_auth_me_returns_the_members_own_masked_profile():
    member = make_member(username="lihua", phone="+8613812345678", email="lihua@example.com")
    client = Client()
    token = _signed_in(client, "lihua")

    response = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token)

    assert response.status_code == 200
    body = response.json()
    assert body["number"] == member.number
    assert body["username"] == "lihua"
    assert body["status"] == "active"
    assert body["phone"] == "+86138****5678"
    assert body["email"] == "l***@example.com"
    assert body["phone_verified"] is True
    assert body["two_factor_enabled"] is False


def test_auth_me_without_token_is_401():
    response = Client().get("/api/v1/me")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"


def test_auth_me_with_unknown_token_is_401():
    make_member()
    response = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN="not-a-session")
    assert response.status_code == 401


def test_auth_me_for_staff_identity_is_403():
    make_staff(username="agent007")
    token = _signed_in(Client(), "agent007")
    response = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token)
    assert response.status_code == 403
    assert response.json()["code"] == "not_a_member"


def test_reg_11_me_refuses_a_member_frozen_after_sign_in():
    member = make_member(username="willfreeze")
    token = _signed_in(Client(), "willfreeze")
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)

    response = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token)

    assert response.status_code == 403
    assert response.json()["code"] == "account_inactive"


def test_priv_9_me_answers_consent_required_for_a_new_document_version():
    member = make_member(username="needsconsent")
    old = publish("terms", "1.0")
    Consent.objects.create(member=member, document=old, granted=True, channel="portal")
    token = _signed_in(Client(), "needsconsent")
    assert Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token).status_code == 200
    new = publish("terms", "2.0")
    consents_before = Consent.objects.count()
    audit_before = AuditEvent.objects.count()

    response = Client().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token)

    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "consent_required"
    assert body["errors"] == [
        {"field": "terms", "code": "consent_required", "message": f"terms@{new.version}"}
    ]
    assert Consent.objects.count() == consents_before
    assert AuditEvent.objects.count() == audit_before


def test_auth_5_me_sessions_lists_the_current_session():
    make_member(username="sessions")
    token = _signed_in(Client(HTTP_USER_AGENT="PhoneApp/1.0"), "sessions")

    response = Client().get("/api/v1/me/sessions", HTTP_X_SESSION_TOKEN=token)

    assert response.status_code == 200
    sessions = response.json()
    assert len(sessions) == 1
    assert sessions[0]["current"] is True
    assert sessions[0]["user_agent"] == "PhoneApp/1.0"
