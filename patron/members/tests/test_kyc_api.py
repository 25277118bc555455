"""KYC over the API: /me/kyc for members, /members/{number}/kyc for platforms, the signed
provider callback (KYC-1..5). Refusals prove nothing changed."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from patron.core.audit import Actor
from patron.members.models import KycSubmission
from patron.members.services.kyc import approve_kyc, reject_kyc, sign_callback, submit_kyc
from patron.members.tests.auth_helpers import headless_login, session_token
from patron.members.tests.kyc_factories import (
    ADULT_ID,
    decision_state,
    image_bytes,
    make_member,
    make_reviewer,
    publish_sensitive,
    state,
    with_bad_checksum,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
SECRET = "provider-shared-secret"


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PATRON_KYC_CALLBACK_SECRET = SECRET
    publish_sensitive("1.0")


@pytest.fixture
def member():
    return make_member()


@pytest.fixture
def token(member) -> str:
    response = headless_login(Client(), member.user.username)
    assert response.status_code == 200, response.content
    return session_token(response)


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def form(**overrides) -> dict:
    data = {
        "name": "王小明",
        "id_number": ADULT_ID,
        "accept_sensitive": "sensitive@1.0",
        "front": upload("front.jpg", image_bytes("JPEG")),
        "back": upload("back.png", image_bytes("PNG"), "image/png"),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def post_kyc(token: str, data: dict):
    return Client().post("/api/v1/me/kyc", data, HTTP_X_SESSION_TOKEN=token)


def test_kyc_1_member_submits_through_the_api_and_reads_the_masked_status(member, token):
    with time_machine.travel(NOW, tick=False):
        response = post_kyc(token, form())
    assert response.status_code == 201, response.content
    body = response.json()
    submission = KycSubmission.objects.get(member=member)
    assert body == {
        "status": "pending_review",
        "verified": False,
        "verified_at": None,
        "submission_id": submission.pk,
        "submitted_at": "2026-11-22T10:00:00Z",
        "reviewed_at": None,
        "reasons": [],
        "name": "王**",
        "id_number": "110***********" + ADULT_ID[-4:],
    }
    got = Client().get("/api/v1/me/kyc", HTTP_X_SESSION_TOKEN=token)
    assert got.status_code == 200
    assert got.json() == body


def test_kyc_1_status_without_any_submission(token):
    body = Client().get("/api/v1/me/kyc", HTTP_X_SESSION_TOKEN=token).json()
    assert (body["status"], body["verified"], body["name"], body["reasons"]) == (
        "none",
        False,
        "",
        [],
    )


def test_kyc_3_rejection_reason_is_shown_to_the_member(member, token):
    submission = submit_kyc(
        member=member,
        name="王小明",
        id_number=ADULT_ID,
        front=image_bytes("JPEG"),
        back=image_bytes("PNG"),
        actor=Actor.user(member.user),
        accept_sensitive="sensitive@1.0",
    )
    reject_kyc(submission=submission, reviewer=make_reviewer(), reason="Back photo is blurred")
    body = Client().get("/api/v1/me/kyc", HTTP_X_SESSION_TOKEN=token).json()
    assert (body["status"], body["reasons"]) == (
        "rejected",
        [{"code": "rejected", "message": "Back photo is blurred"}],
    )


def test_kyc_2_text_file_named_jpg_is_refused_with_field_reasons(member, token):
    before = state(member)
    response = post_kyc(
        token,
        form(
            front=upload("id.jpg", b"just some text, not a photo\n" * 10),
            back=upload("back.gif", image_bytes("GIF"), "image/gif"),
        ),
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("front", "image_invalid"),
        ("back", "image_type_not_allowed"),
    ]
    assert state(member) == before


def test_kyc_2_bad_checksum_over_the_api(member, token):
    before = state(member)
    response = post_kyc(token, form(id_number=with_bad_checksum(ADULT_ID)))
    assert (response.status_code, response.json()["code"]) == (422, "invalid_id_number")
    assert state(member) == before


def test_kyc_2_oversized_upload_is_refused_without_reading_it_all(member, token, settings):
    settings.PATRON_KYC_MAX_IMAGE_BYTES = 1000
    before = state(member)
    response = post_kyc(token, form(front=upload("big.png", image_bytes("PNG", (400, 400)))))
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("front", "image_too_large"),
        ("back", "image_too_large"),
    ]
    assert state(member) == before


def test_kyc_2_missing_files_are_named(member, token):
    before = state(member)
    response = post_kyc(token, form(front=None, back=None))
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("front", "image_required"),
        ("back", "image_required"),
    ]
    assert state(member) == before


def test_kyc_5_missing_sensitive_consent_over_the_api(member, token):
    before = state(member)
    response = post_kyc(token, form(accept_sensitive=None))
    body = response.json()
    assert (response.status_code, body["code"]) == (422, "sensitive_consent_required")
    assert body["errors"][0]["field"] == "accept_sensitive"
    assert state(member) == before


def test_kyc_1_second_submission_while_pending_is_409(member, token):
    assert post_kyc(token, form()).status_code == 201
    before = state(member)
    response = post_kyc(token, form())
    assert (response.status_code, response.json()["code"]) == (409, "kyc_pending")
    assert state(member) == before


def test_kyc_1_me_kyc_needs_a_session():
    response = Client().post("/api/v1/me/kyc", form())
    assert response.status_code == 401
    assert Client().get("/api/v1/me/kyc").status_code == 401
    assert KycSubmission.objects.count() == 0


# --- Platform view --------------------------------------------------------------------------


def test_kyc_3_platform_sees_status_only(member, api_key_factory):
    from tests.fixtures import PlatformClient

    platform = PlatformClient(api_key_factory(["members:read"]).secret)
    assert platform.get(f"/api/v1/members/{member.number}/kyc").json() == {
        "number": member.number,
        "status": "none",
        "verified": False,
        "verified_at": None,
    }
    submission = submit_kyc(
        member=member,
        name="王小明",
        id_number=ADULT_ID,
        front=image_bytes("JPEG"),
        back=image_bytes("PNG"),
        actor=Actor.user(member.user),
        accept_sensitive="sensitive@1.0",
    )
    with time_machine.travel(NOW, tick=False):
        approve_kyc(submission=submission, reviewer=make_reviewer())
    body = platform.get(f"/api/v1/members/{member.number}/kyc").json()
    assert body == {
        "number": member.number,
        "status": "approved",
        "verified": True,
        "verified_at": "2026-11-22T10:00:00Z",
    }


def test_kyc_3_platform_needs_the_read_scope(member, api_key_factory):
    from tests.fixtures import PlatformClient

    platform = PlatformClient(api_key_factory(["members:write"]).secret)
    response = platform.get(f"/api/v1/members/{member.number}/kyc")
    assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")
    assert platform.get("/api/v1/members/000000000000/kyc").status_code == 403


def test_kyc_3_platform_unknown_member_is_404(platform):
    response = platform.get("/api/v1/members/000000000000/kyc")
    assert (response.status_code, response.json()["code"]) == (404, "member_not_found")


# --- Provider callback (KYC-4) ------------------------------------------------------------


@pytest.fixture
def submission(member):
    return submit_kyc(
        member=member,
        name="王小明",
        id_number=ADULT_ID,
        front=image_bytes("JPEG"),
        back=image_bytes("PNG"),
        actor=Actor.user(member.user),
        accept_sensitive="sensitive@1.0",
    )


def callback(body: bytes, signature: str | None):
    extra = {"HTTP_PATRON_SIGNATURE": signature} if signature is not None else {}
    return Client().post("/api/v1/kyc/callback", body, content_type="application/json", **extra)


def payload(target, **overrides) -> bytes:
    data = {"submission": target.pk, "result": "match", "score": 93.0, "reference": "fm-1"}
    data.update(overrides)
    return json.dumps(data).encode()


def test_kyc_4_signed_callback_stores_the_result(submission):
    body = payload(submission, result="no_match", score=12.5)
    with time_machine.travel(NOW, tick=False):
        response = callback(body, sign_callback(body, int(NOW.timestamp())))
    assert response.status_code == 200, response.content
    assert response.json() == {
        "submission_id": submission.pk,
        "status": "pending_review",
        "result": "no_match",
    }
    fresh = KycSubmission.objects.get(pk=submission.pk)
    assert fresh.provider_result == {
        "result": "no_match",
        "score": 12.5,
        "reference": "fm-1",
        "received_at": NOW.isoformat(),
    }
    assert fresh.status == KycSubmission.Status.PENDING_REVIEW


def test_kyc_4_callback_within_tolerance_is_accepted(submission):
    body = payload(submission)
    stamp = int(NOW.timestamp()) - 299
    with time_machine.travel(NOW, tick=False):
        assert callback(body, sign_callback(body, stamp)).status_code == 200


@pytest.mark.parametrize(
    "make_signature",
    [
        pytest.param(lambda body, t: None, id="missing"),
        pytest.param(lambda body, t: "", id="empty"),
        pytest.param(lambda body, t: "garbage", id="malformed"),
        pytest.param(lambda body, t: f"t={t}", id="no-v1"),
        pytest.param(
            lambda body, t: sign_callback(body, t, secret="wrong secret"), id="wrong-secret"
        ),
        pytest.param(lambda body, t: sign_callback(body + b" ", t), id="other-body"),
        pytest.param(
            lambda body, t: sign_callback(body, t).replace(f"t={t}", f"t={t + 1}"), id="other-t"
        ),
        pytest.param(lambda body, t: f"t={t},v1=" + "é" * 64, id="non-ascii"),
        pytest.param(
            lambda body, t: "t=²," + sign_callback(body, t).split(",")[1], id="t-not-ascii"
        ),
    ],
)
def test_kyc_4_bad_signature_is_refused_and_changes_nothing(submission, make_signature):
    body = payload(submission)
    before = decision_state(submission)
    with time_machine.travel(NOW, tick=False):
        response = callback(body, make_signature(body, int(NOW.timestamp())))
    assert response.status_code == 401
    assert response.json()["code"] == "signature_invalid"
    assert decision_state(submission) == before


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_kyc_4_stale_timestamp_is_refused_and_changes_nothing(submission, offset):
    body = payload(submission)
    before = decision_state(submission)
    with time_machine.travel(NOW, tick=False):
        response = callback(body, sign_callback(body, int(NOW.timestamp()) + offset))
    assert (response.status_code, response.json()["code"]) == (401, "signature_expired")
    assert decision_state(submission) == before


def test_kyc_4_signed_but_invalid_body_is_422(submission):
    before = decision_state(submission)
    for body in (
        b"not json",
        b"\xff\xfe",
        json.dumps({"submission": submission.pk, "result": "maybe"}).encode(),
        payload(submission, reference="a\x00b"),
        payload(submission, submission="ref\ud800"),
    ):
        with time_machine.travel(NOW, tick=False):
            response = callback(body, sign_callback(body, int(NOW.timestamp())))
        assert response.status_code == 422
    assert decision_state(submission) == before


@pytest.mark.parametrize("unknown", ["no-such-reference", 10**30, "9" * 100])
def test_kyc_4_unknown_submission_is_404(submission, unknown):
    body = payload(submission, submission=unknown)
    before = decision_state(submission)
    with time_machine.travel(NOW, tick=False):
        response = callback(body, sign_callback(body, int(NOW.timestamp())))
    assert (response.status_code, response.json()["code"]) == (404, "kyc_submission_not_found")
    assert decision_state(submission) == before


def test_kyc_4_openapi_documents_the_kyc_endpoints():
    schema = Client().get("/api/v1/openapi.json").json()
    assert {"/api/v1/me/kyc", "/api/v1/members/{number}/kyc", "/api/v1/kyc/callback"} <= set(
        schema["paths"]
    )
    callback_op = schema["paths"]["/api/v1/kyc/callback"]["post"]
    assert callback_op["requestBody"]["content"]["application/json"]["example"]["result"] == "match"
    upload = schema["paths"]["/api/v1/me/kyc"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
