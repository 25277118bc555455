"""The staff console (AUTH-6, PRIV-2, PRIV-3, PRIV-10, REG-5): permission-checked pages,
masked data, audited reveals, consent document versions, API keys, the audit trail."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test import Client

from patron.api.keys import create_api_key, key_from_token
from patron.api.models import ApiKey
from patron.console.tests.helpers import csrf_post, make_staff, signed_in
from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.crypto import token_digest
from patron.core.models import AuditEvent
from patron.members import selectors as member_selectors
from patron.members.models import Consent, ConsentDocument, Member
from patron.notify.models import OutboxMessage
from patron.notify.tests.helpers import make_member

pytestmark = pytest.mark.django_db

PHONE = "+8613912348765"
EMAIL = "zhang.wei@example.com"
NAME = "张伟"
ID_NUMBER = "110105200001011238"

PAGES = [
    "/console/",
    "/console/members/",
    "/console/documents/",
    "/console/documents/new/",
    "/console/api-keys/",
    "/console/audit/",
]


def state() -> dict:
    """Everything a console refusal must leave untouched."""
    return {
        "audit": AuditEvent.objects.count(),
        "keys": list(ApiKey.objects.values_list("id", "revoked_at")),
        "documents": ConsentDocument.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "members": list(Member.objects.values_list("id", "status", "updated_at")),
    }


@pytest.fixture
def member() -> Member:
    return make_member(
        phone=PHONE,
        email=EMAIL,
        name=NAME,
        id_number=ID_NUMBER,
        birth_date="2000-01-01",
        phone_verified_at=clock.now(),
    )


# --- Access ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/console/members/900000000001/"])
def test_auth_6_anonymous_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", PAGES[1:])
def test_auth_6_staff_without_permission_gets_403(path):
    client = signed_in(make_staff())
    assert client.get(path).status_code == 403


def test_auth_6_member_account_cannot_open_the_console(member):
    client = Client()
    client.force_login(member.user)
    assert client.get("/console/").status_code == 403
    assert client.get("/console/members/").status_code == 403


def test_auth_6_post_without_csrf_token_is_refused(member):
    staff = make_staff("members.view_member", "members.reveal_personal_data")
    before = state()
    response = signed_in(staff).post(
        f"/console/members/{member.number}/reveal/",
        {"category": "member_request", "reason": "caller asked for their data"},
    )
    assert response.status_code == 403
    assert state() == before


# --- Members: masked list and search (PRIV-2) ------------------------------------------


def test_priv_2_member_list_is_masked(member):
    client = signed_in(make_staff("members.view_member"))
    response = client.get("/console/members/")
    assert response.status_code == 200
    page = response.content.decode()
    assert member.number in page
    assert "+86139****8765" in page
    assert "z***@example.com" in page
    assert "张*" in page
    for secret in (PHONE, "13912348765", EMAIL, NAME):
        assert secret not in page


@pytest.mark.parametrize("query", [PHONE, "13912348765", "zhang.wei@EXAMPLE.COM", "number"])
def test_priv_2_search_by_number_phone_or_email_is_exact(member, query):
    other = make_member()
    query = member.number if query == "number" else query
    page = (
        signed_in(make_staff("members.view_member"))
        .get("/console/members/", {"q": query})
        .content.decode()
    )
    assert member.number in page
    assert other.number not in page


def test_priv_2_partial_search_finds_nothing(member):
    page = (
        signed_in(make_staff("members.view_member"))
        .get("/console/members/", {"q": "1391234"})
        .content.decode()
    )
    assert member.number not in page


def test_priv_2_member_detail_is_masked_and_has_no_reveal_form_without_permission(member):
    page = (
        signed_in(make_staff("members.view_member"))
        .get(f"/console/members/{member.number}/")
        .content.decode()
    )
    assert "+86139****8765" in page
    assert PHONE not in page and ID_NUMBER not in page
    assert "/reveal/" not in page


# --- Reveal (PRIV-3) -------------------------------------------------------------------


def test_priv_3_reveal_needs_the_permission_and_nothing_is_audited(member):
    client = signed_in(make_staff("members.view_member"))
    before = state()
    response = csrf_post(
        client,
        f"/console/members/{member.number}/reveal/",
        {"category": "member_request", "reason": "caller asked for their data"},
    )
    assert response.status_code == 403
    assert PHONE not in response.content.decode()
    assert state() == before


@pytest.mark.parametrize("reason", ["", "   ", "why"])
def test_priv_3_reveal_without_reason_is_refused_and_nothing_audited(member, reason):
    staff = make_staff("members.view_member", "members.reveal_personal_data")
    before = state()
    response = csrf_post(
        signed_in(staff),
        f"/console/members/{member.number}/reveal/",
        {"category": "member_request", "reason": reason},
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "Say why you need to see the data" in page or "请说明" in page
    for secret in (PHONE, EMAIL, NAME, ID_NUMBER):
        assert secret not in page
    assert state() == before


def test_priv_3_reveal_with_reason_shows_data_once_and_is_audited(member):
    staff = make_staff("members.view_member", "members.reveal_personal_data")
    client = signed_in(staff)
    reason = "Member called about a wrong phone number, ticket 4711"
    response = csrf_post(
        client,
        f"/console/members/{member.number}/reveal/",
        {"category": "member_request", "reason": reason},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    for secret in (PHONE, EMAIL, NAME, ID_NUMBER):
        assert secret in page

    (event,) = AuditEvent.objects.filter(action="member.personal_data_revealed")
    assert event.actor_type == "staff" and event.actor_id == str(staff.pk)
    assert (event.subject_type, event.subject_id) == ("member", str(member.pk))
    assert event.details == {
        "member_id": member.pk,
        "staff_user_id": staff.pk,
        "category": "member_request",
        "reason_length": len(reason),
        "fields": ["name", "phone", "email", "birth_date", "id_number"],
    }
    stored = json.dumps(event.details, ensure_ascii=False)
    for secret in (PHONE, EMAIL, NAME, ID_NUMBER, "ticket 4711"):
        assert secret not in stored

    # The next visit is masked again: the data was shown once.
    again = client.get(f"/console/members/{member.number}/").content.decode()
    assert PHONE not in again
    assert audit.verify().ok


def test_priv_3_reveal_service_refuses_non_staff(member):
    from patron.core.exceptions import Forbidden
    from patron.members.services.reveal import reveal_personal_data

    before = state()
    with pytest.raises(Forbidden):
        reveal_personal_data(member=member, staff_user=member.user, reason="a long enough reason")
    assert state() == before


# --- Consent documents (REG-5, PRIV-9) -------------------------------------------------


def _documents_v1(member: Member) -> ConsentDocument:
    terms = ConsentDocument.objects.create(
        kind="terms",
        version="1.0",
        title="服务协议",
        body="正文",
        title_en="Terms",
        body_en="Text",
        published_at=clock.now() - dt.timedelta(days=10),
    )
    Consent.objects.create(member=member, document=terms, granted=True, channel="test")
    return terms


def test_reg_5_new_document_version_makes_members_accept_again(member):
    terms = _documents_v1(member)
    assert member_selectors.missing_consents(member) == []
    staff = make_staff("members.view_consentdocument", "members.add_consentdocument")
    client = signed_in(staff)

    form = client.get("/console/documents/new/", {"kind": "terms"})
    assert form.status_code == 200
    assert "服务协议" in form.content.decode()  # starts from the current text

    response = csrf_post(
        client,
        "/console/documents/new/",
        {
            "kind": "terms",
            "version": "2.0",
            "title": "服务协议（2026）",
            "body": "新正文",
            "title_en": "Terms (2026)",
            "body_en": "New text",
            "required": "on",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/console/documents/"
    new = ConsentDocument.objects.get(kind="terms", version="2.0")
    assert new.required and new.body == "新正文"
    assert [doc.pk for doc in member_selectors.missing_consents(member)] == [new.pk]
    (event,) = AuditEvent.objects.filter(action="consent_document.published")
    assert event.actor_id == str(staff.pk)
    assert event.details == {"kind": "terms", "version": "2.0", "required": True}
    listing = client.get("/console/documents/").content.decode()
    assert "2.0" in listing and terms.version in listing


def test_reg_5_existing_version_is_refused_and_nothing_changes(member):
    _documents_v1(member)
    client = signed_in(make_staff("members.view_consentdocument", "members.add_consentdocument"))
    before = state()
    response = csrf_post(
        client,
        "/console/documents/new/",
        {"kind": "terms", "version": "1.0", "title": "x", "body": "y", "required": "on"},
    )
    assert response.status_code == 422
    assert "already exists" in response.content.decode() or "已存在" in response.content.decode()
    assert state() == before


def test_reg_5_publishing_needs_the_add_permission(member):
    _documents_v1(member)
    client = signed_in(make_staff("members.view_consentdocument"))
    before = state()
    assert client.get("/console/documents/").status_code == 200
    response = csrf_post(
        client,
        "/console/documents/new/",
        {"kind": "terms", "version": "9.0", "title": "x", "body": "y", "required": "on"},
    )
    assert response.status_code == 403
    assert state() == before


# --- API keys --------------------------------------------------------------------------


def _raw_dump() -> str:
    """Every row of the API-key and audit tables as stored."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_apikey")
        keys = cursor.fetchall()
        cursor.execute("SELECT * FROM core_auditevent")
        events = cursor.fetchall()
    return json.dumps([keys, events], default=str)


def test_api_key_is_shown_once_and_only_its_digest_is_stored():
    staff = make_staff("api.view_apikey", "api.manage_api_keys")
    client = signed_in(staff)
    response = csrf_post(
        client, "/console/api-keys/", {"name": "Shop", "scopes": ["members:read", "kyc:callback"]}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    key = ApiKey.objects.get()
    secret = response.context["created"].secret
    assert secret.startswith(f"ptn_{key.prefix}_")
    assert secret in response.content.decode()
    assert key.digest == token_digest(secret)
    assert key.scopes == ["kyc:callback", "members:read"]
    assert key.created_by == staff
    assert secret not in _raw_dump()
    assert secret.split("_", 2)[2] not in _raw_dump()
    assert key_from_token(secret) == key
    (event,) = AuditEvent.objects.filter(action="api_key.created")
    assert event.actor_id == str(staff.pk)
    # Never again: the list page shows the prefix only.
    listing = client.get("/console/api-keys/").content.decode()
    assert secret not in listing and key.prefix in listing


def test_api_key_with_unknown_or_no_scope_is_refused_and_nothing_changes():
    client = signed_in(make_staff("api.view_apikey", "api.manage_api_keys"))
    before = state()
    for data in ({"name": "Shop", "scopes": ["points:write"]}, {"name": "Shop"}):
        response = csrf_post(client, "/console/api-keys/", data)
        assert response.status_code == 422
    assert state() == before


def test_api_key_viewer_cannot_create_or_revoke():
    key = create_api_key(name="Existing", scopes=["members:read"], actor=Actor.system()).api_key
    client = signed_in(make_staff("api.view_apikey"))
    page = client.get("/console/api-keys/").content.decode()
    assert "Existing" in page and "/revoke/" not in page
    before = state()
    assert (
        csrf_post(
            client, "/console/api-keys/", {"name": "x", "scopes": ["members:read"]}
        ).status_code
        == 403
    )
    assert csrf_post(client, f"/console/api-keys/{key.pk}/revoke/").status_code == 403
    assert state() == before


def test_api_key_revoke_is_audited_and_the_key_stops_working():
    created = create_api_key(name="Old", scopes=["members:read"], actor=Actor.system())
    staff = make_staff("api.view_apikey", "api.manage_api_keys")
    response = csrf_post(signed_in(staff), f"/console/api-keys/{created.api_key.pk}/revoke/")
    assert response.status_code == 302
    created.api_key.refresh_from_db()
    assert created.api_key.revoked_at is not None
    assert key_from_token(created.secret) is None
    (event,) = AuditEvent.objects.filter(action="api_key.revoked")
    assert event.actor_id == str(staff.pk)


# --- Audit trail (PRIV-10) -------------------------------------------------------------


def _events(n: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        for i in range(n):
            audit.record("demo.thing_done", actor=Actor.system(), subject_type="demo", subject_id=i)
        audit.record("other.thing", actor=Actor.system(), subject_type="demo", subject_id=99)


def test_priv_10_audit_list_filters_and_paginates():
    _events(30)
    client = signed_in(make_staff("core.view_auditevent"))
    page = client.get("/console/audit/").content.decode()
    assert "other.thing" in page
    assert "Page 1 of 2" in page or "第 1 页，共 2 页" in page
    filtered = client.get("/console/audit/", {"action": "other.thing"})
    assert [e.action for e in filtered.context["page"].object_list] == ["other.thing"]
    by_subject = client.get("/console/audit/", {"subject_type": "demo", "subject_id": "7"})
    assert [e.subject_id for e in by_subject.context["page"].object_list] == ["7"]


def test_priv_10_verify_button_reports_intact_then_the_first_bad_row():
    _events(3)
    client = signed_in(make_staff("core.view_auditevent"))
    before = AuditEvent.objects.count()
    ok = csrf_post(client, "/console/audit/verify/")
    assert ok.status_code == 200
    assert ok.context["verify"].ok is True
    assert ok.context["verify"].checked == before
    assert 'id="verify-result"' in ok.content.decode()
    assert AuditEvent.objects.count() == before  # verifying records nothing

    second = AuditEvent.objects.order_by("id")[1]
    AuditEvent.objects.filter(pk=second.pk).update(details={"edited": True})
    bad = csrf_post(client, "/console/audit/verify/")
    assert bad.context["verify"].ok is False
    assert bad.context["verify"].bad_event_id == second.pk
    assert f"#{second.pk}" in bad.content.decode()


def test_priv_10_verify_needs_the_audit_permission():
    client = signed_in(make_staff("members.view_member"))
    assert csrf_post(client, "/console/audit/verify/").status_code == 403
