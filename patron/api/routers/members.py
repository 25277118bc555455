"""Members: registration, lookup, profile, verification, status, payment methods, consents.

Each operation checks its scope, calls one service and shapes the answer; refusals are the
services' exceptions, turned into problem+json by ``patron.api.api``. Personal data leaves
only masked (``core.masking``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema, Status
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import ValidationError as PydanticValidationError

from patron.api.auth import ApiKeyAuth
from patron.api.schemas.common import problems
from patron.api.schemas.members import (
    ConsentHistoryOut,
    ConsentIn,
    ConsentOut,
    MemberCreateIn,
    MemberOut,
    MemberUpdateIn,
    MemberUpdateOut,
    PasswordResetConfirmIn,
    PasswordResetIn,
    PasswordResetRequestedOut,
    PaymentMethodIn,
    PaymentMethodOut,
    StatusIn,
    VerificationConfirmIn,
    VerificationSendIn,
    VerificationSentOut,
)
from patron.core import masking
from patron.core.audit import Actor
from patron.core.exceptions import NotFound
from patron.members import selectors
from patron.members.models import Consent, Member, PaymentMethod
from patron.members.services import consents as consent_services
from patron.members.services import password_reset as reset_service
from patron.members.services import payment_methods, profile, registration, status, verification
from patron.members.services._common import refuse

router = Router(tags=["members"])

READ = ApiKeyAuth("members:read")
WRITE = ApiKeyAuth("members:write")
STATUS = ApiKeyAuth("members:status")
PAYMENT = ApiKeyAuth("members:payment")
CHANNEL = "api"
NUMBER_DOC = "The 12-digit member number."


def _actor(request: HttpRequest) -> Actor:
    return Actor.api_key(request.auth.pk)  # type: ignore[attr-defined]


def _member(number: str) -> Member:
    member = selectors.member_by_number(number)
    if member is None:
        raise NotFound(_("No member has this number."))
    return member


def _ip(value: object) -> str | None:
    return str(value) if value else None


def _optional_body(request: HttpRequest, schema: type[Schema]) -> Any:
    if not request.body.strip():
        return schema()
    try:
        return schema.model_validate_json(request.body)
    except PydanticValidationError as exc:
        raise NinjaValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


def member_out(member: Member) -> dict:
    """The masked view of a member every operation answers with."""
    return {
        "number": member.number,
        "kind": member.kind,
        "status": member.status,
        "username": member.user.username,
        "name": masking.mask_name(member.name),
        "company_name": member.company_name,
        "contact_name": masking.mask_name(member.contact_name),
        "phone": masking.mask_phone(member.phone),
        "phone_verified": member.phone_verified_at is not None,
        "email": masking.mask_email(member.email),
        "email_verified": member.email_verified_at is not None,
        "id_number": masking.mask_id_number(member.id_number),
        "credit_code": masking.mask_middle(member.credit_code, 4, 4),
        "address": masking.mask_middle(member.address, 6, 0),
        "kyc_verified": member.kyc_verified_at is not None,
        "marketing_opt_in": member.marketing_opt_in,
        "language": member.language,
        "frozen_until": member.frozen_until,
        "referrer": member.referrer.number if member.referrer_id else None,
        "created_at": member.created_at,
    }


def _consent_out(consent: Consent) -> dict:
    return {
        "id": consent.pk,
        "document": consent.document.kind,
        "version": consent.document.version,
        "granted": consent.granted,
        "channel": consent.channel,
        "recorded_at": consent.recorded_at,
    }


def _payment_out(method: PaymentMethod) -> dict:
    return {
        "id": method.pk,
        "provider": method.provider,
        "brand": method.brand,
        "last4": method.last4,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "created_at": method.created_at,
    }


@router.post(
    "/members",
    auth=WRITE,
    response={201: MemberOut, **problems(401, 403, 409, 422, 429)},
    summary="Register a member",
    description=(
        "Creates a `pending` member and sends a 6-digit code to the phone; confirm it with "
        "`POST /members/{number}/verifications/phone/confirm` to activate the account. "
        "Every field error is reported at once (422, `validation_failed`, or the single "
        "error's code such as `minor`, `consent_required`, `consent_version_mismatch`); a "
        "taken username, phone, email or credit code is a 409 (`username_taken`, "
        "`phone_taken`, `email_taken`, `credit_code_taken`). Scope `members:write`."
    ),
    operation_id="register_member",
)
def register(request: HttpRequest, payload: MemberCreateIn):
    data = payload.dict(exclude={"client_ip"})
    member = registration.register_member(
        data=registration.RegistrationInput(**data),
        channel=CHANNEL,
        actor=_actor(request),
        ip=_ip(payload.client_ip),
    )
    return Status(201, member_out(member))


class LookupQuery(Schema):
    phone: str | None = None
    email: str | None = None
    credit_code: str | None = None


@router.get(
    "/members",
    auth=READ,
    response={200: MemberOut, **problems(401, 403, 404, 422)},
    summary="Find a member by phone, email or credit code",
    description=(
        "Exact lookup by exactly one of `phone`, `email`, `credit_code` (through blind "
        "indexes: the values are never stored in plain text). 404 when nobody matches; 422 "
        "`lookup_needs_one_field` when none or several are given. Scope `members:read`."
    ),
    operation_id="lookup_member",
)
def lookup(request: HttpRequest, query: Query[LookupQuery]):
    given = {k: v for k, v in query.dict().items() if v not in (None, "")}
    if len(given) != 1:
        raise refuse(
            "query",
            "lookup_needs_one_field",
            _("Give exactly one of phone, email or credit_code."),
        )
    ((field, value),) = given.items()
    if field == "phone":
        member = selectors.member_by_phone(value)
    elif field == "email":
        member = selectors.member_by_email(value)
    else:
        member = selectors.member_by_credit_code(value)
    if member is None:
        raise NotFound(_("No member matches."))
    return member_out(member)


@router.get(
    "/members/{number}",
    auth=READ,
    response={200: MemberOut, **problems(401, 403, 404)},
    summary="A member (masked)",
    description=f"{NUMBER_DOC} Scope `members:read`.",
    operation_id="get_member",
)
def get_member(request: HttpRequest, number: str):
    return member_out(_member(number))


@router.patch(
    "/members/{number}",
    auth=WRITE,
    response={200: MemberUpdateOut, **problems(401, 403, 404, 409, 422, 429)},
    summary="Update a member's profile",
    description=(
        "Only the fields sent change. A new phone or email gets a code and is applied when "
        "the code is confirmed (`pending_verifications`). Scope `members:write`."
    ),
    operation_id="update_member",
)
def update_member(request: HttpRequest, number: str, payload: MemberUpdateIn):
    member = _member(number)
    changes = payload.dict(exclude_unset=True, exclude={"client_ip"})
    result = profile.update_profile(
        member=member, changes=changes, actor=_actor(request), ip=_ip(payload.client_ip)
    )
    return {
        **member_out(result.member),
        "changed": result.changed,
        "pending_verifications": result.pending_verifications,
    }


@router.post(
    "/members/{number}/verifications/{channel}",
    auth=WRITE,
    response={202: VerificationSentOut, **problems(401, 403, 404, 409, 422, 429)},
    summary="Send a verification code",
    description=(
        "`channel` is `phone` or `email`. Resends wait 60 s; each phone/email and each "
        "client IP has a daily cap. Throttled requests get 429 `rate_limited` with "
        "`Retry-After`. Scope `members:write`."
    ),
    operation_id="send_verification_code",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": VerificationSendIn.model_json_schema()}},
        }
    },
)
def send_verification(request: HttpRequest, number: str, channel: str):
    # The body is optional (many clients POST nothing), so it is parsed here rather than by
    # ninja, which refuses an empty body; the schema is still published in OpenAPI.
    payload = _optional_body(request, VerificationSendIn)
    member = _member(number)
    code = verification.send_code(member=member, channel=channel, ip=_ip(payload.client_ip))
    mask = masking.mask_phone if channel == "phone" else masking.mask_email
    return Status(
        202,
        {
            "channel": code.channel,
            "sent_to": mask(code.target),
            "expires_at": code.expires_at,
            "resend_after": settings.PATRON_VERIFICATION["RESEND_COOLDOWN_SECONDS"],
        },
    )


@router.post(
    "/members/{number}/verifications/{channel}/confirm",
    auth=WRITE,
    response={200: MemberOut, **problems(401, 403, 404, 409, 422)},
    summary="Confirm a verification code",
    description=(
        "Confirming the phone activates a pending member (and sends the welcome notice). "
        "Refusals: `code_invalid` (the try is counted), `code_expired`, `code_used`, "
        "`code_locked` (5 wrong tries: ask for a new code). Scope `members:write`."
    ),
    operation_id="confirm_verification_code",
)
def confirm_verification(
    request: HttpRequest, number: str, channel: str, payload: VerificationConfirmIn
):
    member = _member(number)
    member = verification.confirm_code(
        member=member, channel=channel, code=payload.code, actor=_actor(request)
    )
    return member_out(member)


@router.post(
    "/members/{number}/status",
    auth=STATUS,
    response={200: MemberOut, **problems(401, 403, 404, 409, 422)},
    summary="Freeze, unfreeze or cancel a member",
    description=(
        "A reason is required. `until` (freeze only) ends the freeze automatically. Frozen "
        "and cancelled members cannot sign in; cancellation is final (409 "
        "`member_cancelled` afterwards) and frees the phone, email and credit code for a new "
        "registration. Scope `members:status`."
    ),
    operation_id="change_member_status",
)
def change_member_status(request: HttpRequest, number: str, payload: StatusIn):
    member = status.change_status(
        _member(number), payload.status, payload.reason, _actor(request), until=payload.until
    )
    return member_out(member)


@router.post(
    "/members/{number}/payment-methods",
    auth=PAYMENT,
    response={201: PaymentMethodOut, **problems(401, 403, 404, 409, 422)},
    summary="Bind a payment method (provider token only)",
    description=(
        "Send the payment provider's token and display facts. Anything that looks like a "
        "card number, in any field, is refused with 422 `card_number_refused` and is never "
        "stored or echoed. Scope `members:payment`."
    ),
    operation_id="add_payment_method",
)
def add_payment_method(request: HttpRequest, number: str, payload: PaymentMethodIn):
    method = payment_methods.add_payment_method(
        member=_member(number),
        data=payment_methods.PaymentMethodInput(**payload.dict()),
        actor=_actor(request),
    )
    return Status(201, _payment_out(method))


@router.get(
    "/members/{number}/payment-methods",
    auth=PAYMENT,
    response={200: list[PaymentMethodOut], **problems(401, 403, 404)},
    summary="A member's bound payment methods",
    description="Tokens are never returned. Scope `members:payment`.",
    operation_id="list_payment_methods",
)
def list_payment_methods(request: HttpRequest, number: str):
    member = _member(number)
    methods = member.payment_methods.filter(removed_at__isnull=True).order_by("id")
    return [_payment_out(method) for method in methods]


@router.delete(
    "/members/{number}/payment-methods/{method_id}",
    auth=PAYMENT,
    response={204: None, **problems(401, 403, 404)},
    summary="Unbind a payment method",
    description="Scope `members:payment`.",
    operation_id="remove_payment_method",
)
def remove_payment_method(request: HttpRequest, number: str, method_id: int):
    payment_methods.remove_payment_method(
        member=_member(number), method_id=method_id, actor=_actor(request)
    )
    return Status(204, None)


@router.post(
    "/members/{number}/consents",
    auth=WRITE,
    response={201: ConsentOut, **problems(401, 403, 404, 409, 422)},
    summary="Record a consent decision",
    description=(
        "Grant or withdraw the current version of a document (append-only history). "
        "Refusals: `unknown_document`, `consent_version_mismatch`. Scope `members:write`."
    ),
    operation_id="record_consent",
)
def record_consent(request: HttpRequest, number: str, payload: ConsentIn):
    consent = consent_services.record_consent(
        member=_member(number),
        document=payload.document,
        version=payload.version,
        granted=payload.granted,
        channel=CHANNEL,
        actor=_actor(request),
    )
    return Status(201, _consent_out(consent))


@router.get(
    "/members/{number}/consents",
    auth=READ,
    response={200: ConsentHistoryOut, **problems(401, 403, 404)},
    summary="A member's consent history",
    description="Newest first, and what is missing. Scope `members:read`.",
    operation_id="list_consents",
)
def list_consents(request: HttpRequest, number: str):
    member = _member(number)
    return {
        "missing": [f"{doc.kind}@{doc.version}" for doc in selectors.missing_consents(member)],
        "history": [_consent_out(c) for c in selectors.consent_history(member)],
    }


# --- Forgotten password (AUTH-1): for a platform's own sign-in screens ----------------------


@router.post(
    "/password-resets",
    auth=WRITE,
    response={202: PasswordResetRequestedOut, **problems(401, 403, 422)},
    summary="Send a password-reset code to a member's phone",
    description=(
        "When `phone` is an active or frozen member's verified phone, a 6-digit code is sent "
        "to it. The answer is the same 202 whether the phone is a member's or not, and "
        "whether a throttle (60 s between codes, daily caps per phone and per `client_ip`) "
        "held the code back: it tells nobody which phones are registered. Only a phone "
        "that is no phone number is refused (422 `invalid_phone`). Scope `members:write`."
    ),
    operation_id="request_password_reset",
)
def request_password_reset(request: HttpRequest, payload: PasswordResetIn):
    key = reset_service.phone_key(payload.phone)
    reset_service.request_reset(key=key, ip=_ip(payload.client_ip))
    policy = settings.PATRON_VERIFICATION
    return Status(
        202,
        {
            "expires_in": policy["CODE_TTL_SECONDS"],
            "resend_after": policy["RESEND_COOLDOWN_SECONDS"],
        },
    )


@router.post(
    "/password-resets/confirm",
    auth=WRITE,
    response={204: None, **problems(401, 403, 422)},
    summary="Set a new password with a reset code",
    description=(
        "Sets the new password and ends every session of the member (they sign in again). "
        "Refusals, field by field: `code` `code_invalid` (also for a phone that is no "
        "member's; a wrong code's try is counted), `code_expired`, `code_used`, "
        "`code_locked`; `password` with the policy's codes (the code stays usable). "
        "The member is told by SMS and email that the password changed. Scope `members:write`."
    ),
    operation_id="confirm_password_reset",
)
def confirm_password_reset(request: HttpRequest, payload: PasswordResetConfirmIn):
    reset_service.reset_password(
        key=reset_service.phone_key(payload.phone), code=payload.code, password=payload.password
    )
    return Status(204, None)
