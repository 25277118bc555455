"""The signed-in member's own account: ``/api/v1/me`` (session token from the headless API).

Phone, email and ID number come back masked even to their owner: a leaked session token
should not hand over the member's full contact details. The portal's profile page, behind
a fresh sign-in, is where the member sees and changes them.
"""

from __future__ import annotations

from datetime import datetime

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.http import HttpRequest
from ninja import Router, Schema

from patron.api.member_auth import MemberSessionAuth
from patron.core import masking
from patron.members.models import Member

router = Router(tags=["me"])


class MeOut(Schema):
    number: str
    kind: str
    status: str
    username: str
    name: str
    company_name: str
    phone: str
    phone_verified: bool
    email: str
    email_verified: bool
    kyc_verified: bool
    two_factor_enabled: bool
    marketing_opt_in: bool
    language: str
    member_since: datetime


class SessionOut(Schema):
    id: int
    current: bool
    ip: str
    user_agent: str
    created_at: datetime
    last_seen_at: datetime | None


def _profile(member: Member) -> MeOut:
    user = member.user
    return MeOut(
        number=member.number,
        kind=member.kind,
        status=member.status,
        username=user.username,
        name=member.name or member.contact_name or "",
        company_name=member.company_name,
        phone=masking.mask_phone(member.phone),
        phone_verified=member.phone_verified_at is not None,
        email=masking.mask_email(member.email),
        email_verified=member.email_verified_at is not None,
        kyc_verified=member.kyc_verified_at is not None,
        two_factor_enabled=Authenticator.objects.filter(
            user=user, type=Authenticator.Type.TOTP
        ).exists(),
        marketing_opt_in=member.marketing_opt_in,
        language=member.language,
        member_since=member.created_at,
    )


@router.get(
    "/me",
    auth=MemberSessionAuth(),
    response=MeOut,
    summary="The signed-in member's profile",
    description=(
        "Send the session token from `/api/auth/app/v1/auth/login` as `X-Session-Token`. "
        "Answers 403 `consent_required` (naming the documents) when a new version of a "
        "required document awaits acceptance, 403 `account_inactive` for a frozen or "
        "cancelled account."
    ),
    openapi_extra={
        "responses": {
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "number": "384019275563",
                            "kind": "individual",
                            "status": "active",
                            "username": "lihua",
                            "name": "李华",
                            "company_name": "",
                            "phone": "+86138****5678",
                            "phone_verified": True,
                            "email": "l***@example.com",
                            "email_verified": False,
                            "kyc_verified": False,
                            "two_factor_enabled": False,
                            "marketing_opt_in": False,
                            "language": "zh-hans",
                            "member_since": "2026-11-22T10:00:00+08:00",
                        }
                    }
                }
            }
        }
    },
)
def get_me(request: HttpRequest) -> MeOut:
    return _profile(request.auth)  # type: ignore[attr-defined]


@router.get(
    "/me/sessions",
    auth=MemberSessionAuth(),
    response=list[SessionOut],
    summary="The member's signed-in sessions (AUTH-5)",
    description="Revoke them through `/api/auth/app/v1/auth/sessions` (DELETE).",
)
def list_sessions(request: HttpRequest) -> list[SessionOut]:
    member: Member = request.auth  # type: ignore[attr-defined]
    token = request.headers.get("X-Session-Token", "")
    sessions = UserSession.objects.purge_and_list(member.user)
    return [
        SessionOut(
            id=s.pk,
            current=s.session_key == token,
            ip=s.ip or "",
            user_agent=(s.user_agent or "")[:200],
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
        )
        for s in sessions
    ]
