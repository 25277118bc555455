"""Section 4 contract: the members endpoints of the platform API, end to end over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from patron.api.keys import SCOPES
from patron.core.models import AuditEvent
from patron.members.models import Member, PaymentMethod, VerificationCode
from patron.members.tests.members_helpers import (
    ADULT_ID,
    CREDIT_CODE,
    MINOR_ID,
    TODAY,
    counts,
    documents,  # noqa: F401 (fixture)
)
from patron.notify.models import OutboxMessage
from tests.fixtures import PlatformClient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _today(time_machine):
    time_machine.move_to(TODAY, tick=False)


def body(**changes) -> dict:
    data = {
        "kind": "individual",
        "username": "wang_xm",
        "password": "violet tiger lantern",
        "phone": "13800138000",
        "email": "wang@example.com",
        "name": "王小明",
        "birth_date": "2000-01-01",
        "id_number": ADULT_ID,
        "address": "北京市朝阳区建国路 1 号",
        "accepted": ["terms@1.0", "privacy@1.0"],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def enterprise_body(**changes) -> dict:
    data = {
        "kind": "enterprise",
        "username": "starlight",
        "password": "amber harbour window",
        "phone": "+8613900139000",
        "company_name": "北京星光影城有限公司",
        "credit_code": CREDIT_CODE,
        "contact_name": "李华",
        "accepted": ["terms@1.0", "privacy@1.0"],
    }
    data.update(changes)
    return data


def last_code(member_number: str, channel: str = "sms") -> str:
    message = (
        OutboxMessage.objects.filter(
            member__number=member_number, template="verification_code", channel=channel
        )
        .order_by("-id")
        .first()
    )
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def registered(platform, **changes) -> dict:
    response = platform.post_json("/api/v1/members", body(**changes))
    assert response.status_code == 201, response.content
    return response.json()


def active(platform, **changes) -> dict:
    member = registered(platform, **changes)
    number = member["number"]
    response = platform.post_json(
        f"/api/v1/members/{number}/verifications/phone/confirm", {"code": last_code(number)}
    )
    assert response.status_code == 200, response.content
    return response.json()


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    return problem


# --- registration ------------------------------------------------------------------------


def test_reg_1_api_registers_and_answers_masked(platform):
    response = platform.post_json("/api/v1/members", body())
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "pending"
    assert data["kind"] == "individual"
    assert re.fullmatch(r"\d{12}", data["number"])
    assert data["phone"] == "+86138****8000"
    assert data["email"] == "w***@example.com"
    assert data["name"] == "王**"
    assert data["id_number"] == "110***********1238"
    assert data["phone_verified"] is False
    raw = response.content.decode()
    for secret in ("13800138000", "wang@example.com", "王小明", ADULT_ID, "建国路"):
        assert secret not in raw
    assert OutboxMessage.objects.filter(template="verification_code", channel="sms").count() == 1
    event = AuditEvent.objects.get(action="member.registered")
    assert event.actor_type == "api_key"


def test_reg_1_api_registers_an_enterprise(platform):
    response = platform.post_json("/api/v1/members", enterprise_body())
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["kind"] == "enterprise"
    assert data["credit_code"] == "9111**********433B"
    assert data["contact_name"] == "李*"


def test_reg_4_api_refuses_a_minor_and_writes_nothing(platform):
    before = counts()
    response = platform.post_json("/api/v1/members", body(birth_date=None, id_number=MINOR_ID))
    problem = assert_problem(response, 422, "minor")
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("id_number", "minor")]
    assert counts() == before


def test_reg_2_api_reports_schema_and_service_errors(platform):
    before = counts()
    response = platform.post_json("/api/v1/members", {"kind": "individual"})
    problem = assert_problem(response, 422, "validation_failed")
    assert {e["field"] for e in problem["errors"]} >= {"username", "password", "phone"}
    response = platform.post_json("/api/v1/members", body(birth_date="2000-02-31"))
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "birth_date"
    assert counts() == before


def test_reg_2_api_duplicate_phone_is_409_phone_taken(platform):
    registered(platform)
    before = counts()
    response = platform.post_json(
        "/api/v1/members",
        body(username="other", email="other@example.com", phone="+86 138 0013 8000"),
    )
    assert_problem(response, 409, "phone_taken")
    assert counts() == before


def test_reg_5_api_outdated_consent_is_refused(platform):
    before = counts()
    response = platform.post_json("/api/v1/members", body(accepted=["terms@0.9", "privacy@1.0"]))
    assert_problem(response, 422, "consent_version_mismatch")
    response = platform.post_json("/api/v1/members", body(accepted=[]))
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["code"] for e in problem["errors"]] == ["consent_required", "consent_required"]
    assert counts() == before


# --- keys and scopes ---------------------------------------------------------------------


def test_api_no_key_is_401_and_writes_nothing(client):
    before = counts()
    response = client.post("/api/v1/members", json.dumps(body()), content_type="application/json")
    assert_problem(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"
    response = client.get("/api/v1/members/123456789012")
    assert_problem(response, 401, "unauthorized")
    assert counts() == before


def test_api_revoked_or_wrong_key_is_401(api_key_factory):
    from patron.api.keys import revoke_api_key
    from patron.core.audit import Actor

    created = api_key_factory()
    revoke_api_key(key=created.api_key, actor=Actor.system())
    response = PlatformClient(created.secret).get("/api/v1/consent-documents")
    assert_problem(response, 401, "unauthorized")
    response = PlatformClient(created.secret[:-2] + "xx").get("/api/v1/consent-documents")
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path", "payload", "scope"),
    [
        ("post", "/api/v1/members", body(), "members:write"),
        ("get", "/api/v1/members/{number}", None, "members:read"),
        ("get", "/api/v1/members?phone=13800138000", None, "members:read"),
        ("patch", "/api/v1/members/{number}", {"address": "上海"}, "members:write"),
        ("post", "/api/v1/members/{number}/verifications/phone", {}, "members:write"),
        (
            "post",
            "/api/v1/members/{number}/verifications/phone/confirm",
            {"code": "000000"},
            "members:write",
        ),
        (
            "post",
            "/api/v1/members/{number}/status",
            {"status": "frozen", "reason": "check"},
            "members:status",
        ),
        (
            "post",
            "/api/v1/members/{number}/payment-methods",
            {"provider": "alipay", "token": "tok_1"},
            "members:payment",
        ),
        (
            "post",
            "/api/v1/members/{number}/consents",
            {"document": "marketing", "version": "1.0", "granted": True},
            "members:write",
        ),
    ],
)
def test_auth_6_missing_scope_is_403_insufficient_scope(
    platform, api_key_factory, method, path, payload, scope
):
    number = registered(platform, username="scoped", phone="13900000001", email=None)["number"]
    others = [s for s in SCOPES if s != scope]
    limited = PlatformClient(api_key_factory(others, name="limited").secret)
    before = counts()
    attempts = list(VerificationCode.objects.values_list("attempts", flat=True))
    url = path.format(number=number)
    if method == "get":
        response = limited.get(url)
    elif method == "patch":
        response = limited.patch_json(url, payload)
    else:
        response = limited.post_json(url, payload)
    problem = assert_problem(response, 403, "insufficient_scope")
    assert scope in problem["detail"]
    assert counts() == before
    assert list(VerificationCode.objects.values_list("attempts", flat=True)) == attempts


# --- lookups -----------------------------------------------------------------------------


def test_priv_2_get_member_and_exact_lookups(platform):
    person = registered(platform)
    company = platform.post_json("/api/v1/members", enterprise_body()).json()
    number = person["number"]
    assert platform.get(f"/api/v1/members/{number}").json() == person
    for query in ("phone=%2B8613800138000", "phone=138-0013-8000", "email=wang%40EXAMPLE.com"):
        response = platform.get(f"/api/v1/members?{query}")
        assert response.status_code == 200, query
        assert response.json()["number"] == number
    response = platform.get("/api/v1/members?credit_code=91110000802100433b")
    assert response.json()["number"] == company["number"]


def test_priv_2_lookup_refusals(platform):
    registered(platform)
    assert_problem(platform.get("/api/v1/members"), 422, "lookup_needs_one_field")
    assert_problem(
        platform.get("/api/v1/members?phone=13800138000&email=wang@example.com"),
        422,
        "lookup_needs_one_field",
    )
    assert_problem(platform.get("/api/v1/members?phone=13900009999"), 404, "not_found")
    assert_problem(platform.get("/api/v1/members?phone=not-a-phone"), 404, "not_found")
    assert_problem(platform.get("/api/v1/members/000000000000"), 404, "not_found")


# --- verification ------------------------------------------------------------------------


def test_reg_6_api_confirm_activates(platform):
    member = active(platform)
    assert member["status"] == "active"
    assert member["phone_verified"] is True
    assert OutboxMessage.objects.filter(template="welcome").count() == 2  # sms and email


def test_reg_6_api_resend_is_throttled_with_retry_after(platform, time_machine):
    number = registered(platform)["number"]
    time_machine.move_to(TODAY + dt.timedelta(seconds=20))
    before = counts()
    response = platform.post_json(f"/api/v1/members/{number}/verifications/phone", {})
    assert_problem(response, 429, "rate_limited")
    assert response["Retry-After"] == "40"
    assert counts() == before
    time_machine.move_to(TODAY + dt.timedelta(seconds=60))
    response = platform.post_json(
        f"/api/v1/members/{number}/verifications/phone", {"client_ip": "not an ip"}
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "client_ip"
    response = platform.post(  # no body at all
        f"/api/v1/members/{number}/verifications/phone", "", content_type="application/json"
    )
    assert response.status_code == 202, response.content
    assert response.json() == {
        "channel": "phone",
        "sent_to": "+86138****8000",
        "expires_at": "2026-11-22T10:11:00Z",
        "resend_after": 60,
    }


def test_reg_6_api_wrong_code_counts_the_try_even_with_idempotency_key(platform):
    number = registered(platform)["number"]
    code = last_code(number)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    before = counts()
    for attempt in (1, 2):
        response = platform.post_json(
            f"/api/v1/members/{number}/verifications/phone/confirm",
            {"code": wrong},
            idempotency_key=f"confirm-{attempt}",
        )
        assert_problem(response, 422, "code_invalid")
        assert VerificationCode.objects.get().attempts == attempt
    assert counts() == before
    assert Member.objects.get().status == "pending"


def test_reg_6_api_email_verification(platform):
    number = registered(platform)["number"]
    response = platform.post_json(f"/api/v1/members/{number}/verifications/email", {})
    assert response.status_code == 202
    assert response.json()["sent_to"] == "w***@example.com"
    response = platform.post_json(
        f"/api/v1/members/{number}/verifications/email/confirm",
        {"code": last_code(number, "email")},
    )
    assert response.json()["email_verified"] is True
    response = platform.post_json(f"/api/v1/members/{number}/verifications/fax", {})
    assert_problem(response, 422, "invalid_channel")


# --- profile -----------------------------------------------------------------------------


def test_reg_8_api_patch_applies_plain_fields_and_reverifies_the_new_phone(platform, time_machine):
    number = active(platform)["number"]
    time_machine.move_to(TODAY + dt.timedelta(minutes=5))
    response = platform.patch_json(
        f"/api/v1/members/{number}",
        {"address": "上海市浦东新区世纪大道 100 号", "phone": "13900139001"},
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["changed"] == ["address"]
    assert data["pending_verifications"] == ["phone"]
    assert data["phone"] == "+86138****8000"  # not applied yet
    member = Member.objects.get(number=number)
    assert member.address == "上海市浦东新区世纪大道 100 号"
    response = platform.post_json(
        f"/api/v1/members/{number}/verifications/phone/confirm", {"code": last_code(number)}
    )
    assert response.json()["phone"] == "+86139****9001"


def test_reg_8_api_patch_to_a_taken_email_is_409_and_writes_nothing(platform):
    number = registered(platform)["number"]
    registered(platform, username="second", phone="13900000002", email="taken@example.com")
    before = counts()
    response = platform.patch_json(
        f"/api/v1/members/{number}", {"email": "taken@example.com", "address": "x"}
    )
    assert_problem(response, 409, "email_taken")
    assert counts() == before
    assert Member.objects.get(number=number).address == "北京市朝阳区建国路 1 号"


# --- status ------------------------------------------------------------------------------


def test_reg_11_api_freeze_unfreeze_cancel(platform):
    number = active(platform)["number"]
    url = f"/api/v1/members/{number}/status"
    response = platform.post_json(
        url, {"status": "frozen", "reason": "Check", "until": "2026-12-01T00:00:00+08:00"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "frozen"
    until = dt.datetime.fromisoformat(response.json()["frozen_until"])
    assert until == dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)
    assert (
        platform.post_json(url, {"status": "active", "reason": "OK"}).json()["status"] == "active"
    )
    assert (
        platform.post_json(url, {"status": "cancelled", "reason": "Asked"}).json()["status"]
        == "cancelled"
    )
    before = counts()
    assert_problem(
        platform.post_json(url, {"status": "active", "reason": "x"}), 409, "member_cancelled"
    )
    assert_problem(platform.post_json(url, {"status": "frozen", "reason": ""}), 422, "required")
    assert counts() == before


# --- payment methods ---------------------------------------------------------------------


def test_reg_10_api_binds_a_token_and_never_returns_it(platform):
    number = active(platform)["number"]
    response = platform.post_json(
        f"/api/v1/members/{number}/payment-methods",
        {
            "provider": "alipay",
            "token": "tok_2c9f8e7a41b6",
            "brand": "visa",
            "last4": "4242",
            "exp_month": 12,
            "exp_year": 2029,
        },
    )
    assert response.status_code == 201, response.content
    assert "tok_2c9f8e7a41b6" not in response.content.decode()
    listed = platform.get(f"/api/v1/members/{number}/payment-methods").json()
    assert [m["last4"] for m in listed] == ["4242"]
    response = platform.delete(f"/api/v1/members/{number}/payment-methods/{listed[0]['id']}")
    assert response.status_code == 204
    assert platform.get(f"/api/v1/members/{number}/payment-methods").json() == []


@pytest.mark.parametrize(
    "token",
    ["4111111111111111", "4111 1111 1111 1111", "tok-4111-1111-1111-1111", "378282246310005"],
)
def test_reg_10_api_refuses_a_card_number_as_token_and_stores_nothing(platform, token):
    number = active(platform)["number"]
    before = counts()
    response = platform.post_json(
        f"/api/v1/members/{number}/payment-methods", {"provider": "unionpay", "token": token}
    )
    problem = assert_problem(response, 422, "card_number_refused")
    assert token not in response.content.decode()
    assert "1111" not in response.content.decode()
    assert problem["errors"][0]["field"] == "token"
    assert counts() == before
    assert PaymentMethod.objects.count() == 0


# --- consents ----------------------------------------------------------------------------


def test_reg_5_api_consent_documents_in_both_languages(platform):
    response = platform.get("/api/v1/consent-documents")
    assert response.status_code == 200
    docs = response.json()
    assert [d["accept_as"] for d in docs] == [
        "terms@1.0",
        "privacy@1.0",
        "sensitive@1.0",
        "marketing@1.0",
    ]
    assert docs[0]["texts"]["zh-hans"]["title"] == "terms 中文"
    assert docs[0]["texts"]["en"]["title"] == "Terms"
    assert docs[0]["required"] is True and docs[3]["required"] is False


def test_priv_1_api_consent_history_is_append_only(platform):
    number = active(platform)["number"]
    url = f"/api/v1/members/{number}/consents"
    for granted in (True, False):
        response = platform.post_json(
            url, {"document": "marketing", "version": "1.0", "granted": granted}
        )
        assert response.status_code == 201, response.content
        assert response.json()["granted"] is granted
    assert Member.objects.get(number=number).marketing_opt_in is False
    history = platform.get(url).json()
    assert history["missing"] == []
    assert [(c["document"], c["granted"]) for c in history["history"]][:2] == [
        ("marketing", False),
        ("marketing", True),
    ]
    before = counts()
    response = platform.post_json(url, {"document": "terms", "version": "0.1", "granted": True})
    assert_problem(response, 422, "unknown_document")
    assert counts() == before


def test_openapi_documents_every_member_operation_with_examples(client):
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/members"]) == {"post", "get"}
    assert "patch" in paths["/api/v1/members/{number}"]
    for path in (
        "/api/v1/members/{number}/verifications/{channel}",
        "/api/v1/members/{number}/verifications/{channel}/confirm",
        "/api/v1/members/{number}/status",
        "/api/v1/members/{number}/payment-methods",
        "/api/v1/members/{number}/consents",
    ):
        assert "post" in paths[path]
    assert "get" in paths["/api/v1/consent-documents"]
    components = schema["components"]["schemas"]
    for name in ("MemberCreateIn", "MemberOut", "StatusIn", "PaymentMethodIn", "ProblemOut"):
        assert components[name].get("examples"), name
