"""Real-name verification (KYC-1..5) in the API.

- ``POST/GET /me/kyc``: the signed-in member submits and follows their own verification
  (session token from the headless API, ``X-Session-Token``).
- ``GET /members/{number}/kyc``: a platform learns the status only (scope ``members:read``).
- ``POST /kyc/callback``: a third-party identity service reports its result, authenticated
  by an HMAC signature instead of an API key (KYC-4).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from django.conf import settings
from django.http import HttpRequest
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import BaseModel, Field, ValidationError, field_validator

from patron.api.auth import ApiKeyAuth
from patron.api.member_auth import MemberSessionAuth
from patron.core.audit import Actor
from patron.core.exceptions import FieldError, NotFound, ValidationFailed
from patron.members import selectors, selectors_kyc
from patron.members.models import Member
from patron.members.services import kyc as kyc_services

router = Router(tags=["kyc"])


class ReasonOut(Schema):
    code: str
    message: str


class KycOut(Schema):
    status: str = Field(description="none, pending_review, approved or rejected")
    verified: bool
    verified_at: datetime | None
    submission_id: int | None
    submitted_at: datetime | None
    reviewed_at: datetime | None
    reasons: list[ReasonOut] = Field(description="Why the last submission was rejected")
    name: str = Field(description="Masked")
    id_number: str = Field(description="Masked")


class PlatformKycOut(Schema):
    number: str
    status: str = Field(description="none, pending_review, approved or rejected")
    verified: bool
    verified_at: datetime | None


class CallbackIn(BaseModel):
    submission: int | str = Field(description="Our submission id, or your reference for it")
    result: str = Field(pattern="^(match|no_match)$")
    score: float | None = Field(default=None, ge=0, le=100)
    reference: str = Field(min_length=1, max_length=64)

    @field_validator("submission", "reference")
    @classmethod
    def _storable(cls, value: int | str) -> int | str:
        # The body is parsed here, not by the API's JSON parser (the signature needs the
        # raw bytes), so refuse what no column can hold: NUL and lone surrogates.
        if isinstance(value, str) and any(
            char == "\x00" or "\ud800" <= char <= "\udfff" for char in value
        ):
            raise ValueError("holds NUL or a lone surrogate")
        return value


class CallbackOut(Schema):
    submission_id: int
    status: str
    result: str


def _kyc_out(member: Member) -> KycOut:
    status = selectors_kyc.kyc_status(member)
    reasons = (
        [ReasonOut(code="rejected", message=status.rejection_reason)]
        if status.rejection_reason
        else []
    )
    return KycOut(
        status=status.status,
        verified=status.verified,
        verified_at=status.verified_at,
        submission_id=status.submission_id,
        submitted_at=status.submitted_at,
        reviewed_at=status.reviewed_at,
        reasons=reasons,
        name=status.masked_name,
        id_number=status.masked_id_number,
    )


def _read_upload(upload: UploadedFile | None) -> bytes | None:
    """The upload's bytes, never more than one past the limit (enough to refuse it)."""
    if upload is None:
        return None
    return upload.read(int(settings.PATRON_KYC_MAX_IMAGE_BYTES) + 1)


_STATUS_EXAMPLE = {
    "status": "pending_review",
    "verified": False,
    "verified_at": None,
    "submission_id": 42,
    "submitted_at": "2026-11-22T10:00:00+08:00",
    "reviewed_at": None,
    "reasons": [],
    "name": "王**",
    "id_number": "110***********1235",
}


@router.post(
    "/me/kyc",
    auth=MemberSessionAuth(),
    response={201: KycOut},
    summary="Submit real-name verification (KYC-1, KYC-2, KYC-5)",
    description=(
        "Multipart form: `name`, `id_number`, `front` and `back` (JPEG or PNG photos of the "
        "ID card, each at most `PATRON_KYC_MAX_IMAGE_BYTES`), and `accept_sensitive` = "
        "`sensitive@<version>` unless the member already consented to the current "
        "sensitive-information notice (see `GET /consent-documents`).\n\n"
        "Refusals store nothing: 422 `sensitive_consent_required`; 422 with one `errors` "
        "entry per failed pre-check (`invalid_id_number`, `minor`, `name_mismatch`, "
        "`birth_date_mismatch`, `image_invalid`, `image_type_not_allowed`, "
        "`image_too_large`, `image_too_many_pixels`, ...; the top-level `code` is the "
        "field code when there is one error, `validation_failed` otherwise); 409 "
        "`kyc_pending` or `kyc_already_verified`."
    ),
    openapi_extra={
        "responses": {
            201: {"content": {"application/json": {"example": _STATUS_EXAMPLE}}},
            422: {
                "content": {
                    "application/problem+json": {
                        "example": {
                            "type": "https://patron.dev/problems/validation_failed",
                            "status": 422,
                            "title": "Unprocessable Content",
                            "detail": "The request is not valid.",
                            "code": "validation_failed",
                            "errors": [
                                {
                                    "field": "id_number",
                                    "code": "minor",
                                    "message": "Members must be at least 18 years old.",
                                },
                                {
                                    "field": "front",
                                    "code": "image_invalid",
                                    "message": "The file is not a readable JPEG or PNG image.",
                                },
                            ],
                        }
                    }
                }
            },
        }
    },
)
def submit_kyc(
    request: HttpRequest,
    name: Annotated[str, Form()] = "",
    id_number: Annotated[str, Form()] = "",
    accept_sensitive: Annotated[str, Form()] = "",
    front: Annotated[UploadedFile | None, File()] = None,
    back: Annotated[UploadedFile | None, File()] = None,
) -> Status[KycOut]:
    member: Member = request.auth  # type: ignore[assignment]
    kyc_services.submit_kyc(
        member=member,
        name=name,
        id_number=id_number,
        front=_read_upload(front),
        back=_read_upload(back),
        actor=Actor.user(member.user),
        accept_sensitive=accept_sensitive or None,
        channel="api",
    )
    return Status(201, _kyc_out(member))


@router.get(
    "/me/kyc",
    auth=MemberSessionAuth(),
    response=KycOut,
    summary="The member's real-name verification status (KYC-3)",
    description="Name and ID number come back masked. `reasons` explains a rejection.",
    openapi_extra={
        "responses": {200: {"content": {"application/json": {"example": _STATUS_EXAMPLE}}}}
    },
)
def get_my_kyc(request: HttpRequest) -> KycOut:
    return _kyc_out(request.auth)  # type: ignore[arg-type]


@router.get(
    "/members/{number}/kyc",
    auth=ApiKeyAuth("members:read"),
    response=PlatformKycOut,
    summary="A member's real-name verification status (status only)",
    openapi_extra={
        "responses": {
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "number": "384019275563",
                            "status": "approved",
                            "verified": True,
                            "verified_at": "2026-11-22T11:00:00+08:00",
                        }
                    }
                }
            }
        }
    },
)
def get_member_kyc(request: HttpRequest, number: str) -> PlatformKycOut:
    member = selectors.member_by_number(number)
    if member is None:
        raise NotFound("No member with this number.", code="member_not_found")
    status = selectors_kyc.kyc_status(member)
    return PlatformKycOut(
        number=member.number,
        status=status.status,
        verified=status.verified,
        verified_at=status.verified_at,
    )


@router.post(
    "/kyc/callback",
    auth=None,
    response=CallbackOut,
    summary="Identity provider result callback (KYC-4)",
    description=(
        "For a third-party identity service, not for platforms: no API key, but a "
        "`Patron-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` header, the HMAC taken "
        'with the shared secret over `"<t>.<raw request body>"`. Timestamps more than '
        "`PATRON_KYC_CALLBACK_TOLERANCE_SECONDS` (default 300) from our clock are refused. "
        "401 `signature_invalid` (missing or wrong) or `signature_expired`; 404 "
        "`kyc_submission_not_found`. The result is stored for the reviewer; it does not "
        "approve or reject by itself. Repeating the same result is harmless."
    ),
    openapi_extra={
        "parameters": [
            {
                "name": "Patron-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "example": "t=1795312800,v1=5f2b...e1",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": CallbackIn.model_json_schema(),
                    "example": {
                        "submission": 42,
                        "result": "match",
                        "score": 96.5,
                        "reference": "face-7f3a9c",
                    },
                }
            },
        },
    },
)
def kyc_callback(request: HttpRequest) -> CallbackOut:
    # The signature covers the raw bytes: verify before parsing anything.
    kyc_services.verify_callback_signature(
        header=request.headers.get("Patron-Signature"), body=request.body
    )
    try:
        payload = CallbackIn.model_validate(json.loads(request.body or b"null"))
    except (ValueError, ValidationError) as exc:
        errors = (
            [
                FieldError(
                    ".".join(str(p) for p in item["loc"]) or "body", item["type"], item["msg"]
                )
                for item in exc.errors()
            ]
            if isinstance(exc, ValidationError)
            else [FieldError("body", "invalid_json", "The body is not JSON.")]
        )
        raise ValidationFailed(errors) from exc
    submission = kyc_services.record_provider_result(
        submission_ref=payload.submission,
        result=payload.result,
        score=payload.score,
        reference=payload.reference,
    )
    return CallbackOut(submission_id=submission.pk, status=submission.status, result=payload.result)
