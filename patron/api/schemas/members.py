"""Schemas of the members and consent-documents endpoints.

Inputs are deliberately loose where the registration service checks more precisely (``kind``
is a plain string, for example): the service then reports every field error in one answer,
with the same codes the portal shows. Outputs carry personal data masked only.
"""

from __future__ import annotations

import datetime as dt

from ninja import Schema
from pydantic import ConfigDict, Field, IPvAnyAddress

CLIENT_IP = Field(
    None,
    description=(
        "The end user's IP address as your platform saw it; Patron applies its per-IP daily "
        "cap on verification codes to it."
    ),
    examples=["203.0.113.24"],
)


class MemberCreateIn(Schema):
    """A registration. Individuals give ``name`` and ``birth_date`` and/or ``id_number``;
    enterprises give ``company_name``, ``credit_code`` and ``contact_name``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "individual",
                    "username": "wang_xm",
                    "password": "violet tiger lantern",
                    "phone": "+8613800138000",
                    "email": "wang@example.com",
                    "name": "王小明",
                    "birth_date": "2000-01-01",
                    "id_number": "110105200001011238",
                    "address": "北京市朝阳区建国路 1 号",
                    "accepted": ["terms@1.0", "privacy@1.0"],
                    "marketing_opt_in": False,
                    "language": "zh-hans",
                },
                {
                    "kind": "enterprise",
                    "username": "starlight_cinemas",
                    "password": "amber harbour window",
                    "phone": "13900139000",
                    "company_name": "北京星光影城有限公司",
                    "credit_code": "91110000802100433B",
                    "contact_name": "李华",
                    "accepted": ["terms@1.0", "privacy@1.0"],
                },
            ]
        }
    )

    kind: str = Field(
        ..., json_schema_extra={"enum": ["individual", "enterprise"]}, examples=["individual"]
    )
    username: str = Field(..., description="3-32 letters, digits, `_` or `-`; unique.")
    password: str = Field(..., json_schema_extra={"format": "password"})
    phone: str = Field(..., description="Any usual form; default region CN. Unique.")
    email: str | None = Field(None, description="Optional; unique.")
    name: str = ""
    birth_date: dt.date | None = Field(None, description="Individuals: 18 or older.")
    id_number: str | None = Field(
        None, description="Individuals, optional: resident ID number (GB 11643)."
    )
    address: str = ""
    company_name: str = ""
    credit_code: str | None = Field(
        None, description="Enterprises: unified social credit code (GB 32100)."
    )
    contact_name: str = ""
    referrer: str | None = Field(None, description="The referring member's number.")
    accepted: list[str] = Field(
        default_factory=list,
        description=(
            "`<document>@<version>` for the current version of every required document "
            "(see `GET /consent-documents`)."
        ),
        examples=[["terms@1.0", "privacy@1.0"]],
    )
    marketing_opt_in: bool = False
    language: str = Field("zh-hans", json_schema_extra={"enum": ["zh-hans", "en"]})
    client_ip: IPvAnyAddress | None = CLIENT_IP


class MemberOut(Schema):
    """A member as platforms see it: personal data masked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "483920175546",
                    "kind": "individual",
                    "status": "pending",
                    "username": "wang_xm",
                    "name": "王**",
                    "company_name": "",
                    "contact_name": "",
                    "phone": "+86138****8000",
                    "phone_verified": False,
                    "email": "w***@example.com",
                    "email_verified": False,
                    "id_number": "110***********1238",
                    "credit_code": "",
                    "address": "北京市朝阳区*********",
                    "kyc_verified": False,
                    "marketing_opt_in": False,
                    "language": "zh-hans",
                    "frozen_until": None,
                    "referrer": None,
                    "created_at": "2026-11-22T10:00:00+08:00",
                }
            ]
        }
    )

    number: str
    kind: str
    status: str
    username: str
    name: str
    company_name: str
    contact_name: str
    phone: str
    phone_verified: bool
    email: str
    email_verified: bool
    id_number: str
    credit_code: str
    address: str
    kyc_verified: bool
    marketing_opt_in: bool
    language: str
    frozen_until: dt.datetime | None
    referrer: str | None
    created_at: dt.datetime


class MemberUpdateIn(Schema):
    """Only the fields sent change. A new ``phone`` or ``email`` is applied once its code
    is confirmed; ``email: ""`` removes the email."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"address": "上海市浦东新区世纪大道 100 号", "phone": "+8613900139001"}]
        }
    )

    name: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str | None = Field(None, json_schema_extra={"enum": ["zh-hans", "en"]})
    contact_name: str | None = None
    company_name: str | None = None
    client_ip: IPvAnyAddress | None = CLIENT_IP


class MemberUpdateOut(MemberOut):
    """The member after the update, and the new addresses waiting for their code."""

    changed: list[str]
    pending_verifications: list[str] = Field(..., examples=[["phone"]])


class VerificationSendIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"client_ip": "203.0.113.24"}]})

    client_ip: IPvAnyAddress | None = CLIENT_IP


class VerificationSentOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "channel": "phone",
                    "sent_to": "+86138****8000",
                    "expires_at": "2026-11-22T10:10:00+08:00",
                    "resend_after": 60,
                }
            ]
        }
    )

    channel: str
    sent_to: str
    expires_at: dt.datetime
    resend_after: int = Field(..., description="Seconds before another code may be asked for.")


class VerificationConfirmIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "042917"}]})

    code: str = Field(..., description="The 6-digit code the member received.")


class StatusIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "frozen",
                    "reason": "Suspected false identity information",
                    "until": "2026-12-22T00:00:00+08:00",
                },
                {"status": "active", "reason": "Review completed"},
            ]
        }
    )

    status: str = Field(..., json_schema_extra={"enum": ["active", "frozen", "cancelled"]})
    reason: str = Field(..., description="Required; kept with the change (REG-11).")
    until: dt.datetime | None = Field(None, description="Freeze only: when it ends.")


class PaymentMethodIn(Schema):
    """A payment provider's token. Card numbers are refused (`card_number_refused`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "provider": "alipay",
                    "token": "tok_2c9f8e7a41b6",
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2029,
                }
            ]
        }
    )

    provider: str
    token: str
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None


class PaymentMethodOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "provider": "alipay",
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2029,
                    "created_at": "2026-11-22T10:00:00+08:00",
                }
            ]
        }
    )

    id: int
    provider: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    created_at: dt.datetime


class DocumentText(Schema):
    title: str
    body: str


class ConsentDocumentOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "terms",
                    "version": "1.0",
                    "required": True,
                    "published_at": "2026-11-01T00:00:00+08:00",
                    "accept_as": "terms@1.0",
                    "texts": {
                        "zh-hans": {"title": "会员服务协议", "body": "..."},
                        "en": {"title": "Membership agreement", "body": "..."},
                    },
                }
            ]
        }
    )

    kind: str
    version: str
    required: bool
    published_at: dt.datetime
    accept_as: str = Field(..., description="What to put in `accepted` when registering.")
    texts: dict[str, DocumentText]


class ConsentIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"document": "marketing", "version": "1.0", "granted": True}]
        }
    )

    document: str = Field(
        ..., json_schema_extra={"enum": ["terms", "privacy", "sensitive", "marketing"]}
    )
    version: str
    granted: bool


class ConsentOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "document": "marketing",
                    "version": "1.0",
                    "granted": True,
                    "channel": "api",
                    "recorded_at": "2026-11-22T10:00:00+08:00",
                }
            ]
        }
    )

    id: int
    document: str
    version: str
    granted: bool
    channel: str
    recorded_at: dt.datetime


class ConsentHistoryOut(Schema):
    missing: list[str] = Field(
        ..., description="Current required documents not accepted.", examples=[["privacy@2.0"]]
    )
    history: list[ConsentOut]


class PasswordResetIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"phone": "+8613800138000", "client_ip": "203.0.113.24"}]}
    )

    phone: str = Field(..., description="The phone number the member typed.")
    client_ip: IPvAnyAddress | None = CLIENT_IP


class PasswordResetRequestedOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"expires_in": 600, "resend_after": 60}]}
    )

    expires_in: int = Field(..., description="Seconds a code sent now stays valid.")
    resend_after: int = Field(..., description="Seconds before another code may be sent.")


class PasswordResetConfirmIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "phone": "+8613800138000",
                    "code": "042917",
                    "password": "a-new-long-passphrase-7",
                }
            ]
        }
    )

    phone: str = Field(..., description="The same phone number as in the request.")
    code: str = Field(..., description="The 6-digit code sent to that phone.")
    password: str = Field(..., description="The new password; the password policy applies.")
