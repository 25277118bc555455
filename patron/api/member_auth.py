"""Authentication for the member-facing API (``/api/v1/me/...``).

Apps sign members in through allauth's headless API (``/api/auth/app/v1/auth/login``) and
then send the session token it returns as ``X-Session-Token``. ``MemberSessionAuth`` turns
that token into the signed-in ``Member`` (``request.auth``) and enforces what every
member endpoint needs: an active account (a frozen or cancelled member's old token is not
honoured) and acceptance of the current required documents (PRIV-9: 403
``consent_required`` until they are accepted, except on the consent endpoints).
"""

from __future__ import annotations

from typing import Any

from allauth.headless.internal.sessionkit import authenticate_by_x_session_token
from django.http import HttpRequest
from ninja.security.base import AuthBase

from patron.core.exceptions import FieldError, Forbidden
from patron.members.models import Member
from patron.members.services import passwords as password_service
from patron.members.services.signin import consent_gap


class ConsentRequired(Forbidden):
    """403 naming each document (kind@version) the member has yet to accept."""

    def __init__(self, documents: list[Any]):
        super().__init__(
            "Please accept the current versions of our terms before continuing.",
            code="consent_required",
        )
        self.errors = [
            FieldError(doc.kind, "consent_required", f"{doc.kind}@{doc.version}")
            for doc in documents
        ]


def _session_user(token: str) -> Any:
    """The user an allauth app session token belongs to, or None. allauth answered a
    ``(user, session)`` tuple before 65.22 and a result object with ``.user`` since."""
    found = authenticate_by_x_session_token(token)
    if not found:
        return None
    return found[0] if isinstance(found, tuple) else found.user


class MemberSessionAuth(AuthBase):
    """``auth=MemberSessionAuth()`` on an operation: a signed-in, active member.

    ``allow_missing_consents=True`` is for the endpoints that let the member read and
    accept the documents: the gate must not lock them out of the way through it.
    """

    openapi_type = "apiKey"
    openapi_in = "header"
    openapi_name = "X-Session-Token"

    def __init__(self, *, allow_missing_consents: bool = False):
        self.allow_missing_consents = allow_missing_consents
        super().__init__()

    def __call__(self, request: HttpRequest) -> Member | None:
        token = request.headers.get("X-Session-Token")
        if not token:
            return None  # ninja answers 401
        user = _session_user(token)
        if user is None or not user.is_active:
            return None
        member = Member.objects.select_related("user").filter(user=user).first()
        if member is None:
            # A staff identity has no member profile: nothing under /me is theirs.
            raise Forbidden("This endpoint is for members.", code="not_a_member")
        if member.status in (Member.Status.FROZEN, Member.Status.CANCELLED):
            raise Forbidden(
                "This account is frozen or cancelled and cannot be used.",
                code="account_inactive",
            )
        if password_service.is_expired(user):
            # Forced rotation (when configured): the app changes it through
            # /api/auth/app/v1/account/password/change, which this gate does not cover.
            raise Forbidden(
                "The password has expired and must be changed.", code="password_expired"
            )
        if not self.allow_missing_consents:
            missing = consent_gap(member)
            if missing:
                raise ConsentRequired(missing)
        # The portal and services expect request.user too (audit actor, permissions).
        request.user = user
        return member
