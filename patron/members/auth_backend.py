"""Sign-in by username, phone or email with one password (AUTH-2 lockout included).

The only authentication backend: allauth's own backend is deliberately not installed,
because it would check the password a second time by username and so bypass the lockout
and the frozen/cancelled checks in ``services.signin.verify_password``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from patron.members.services.signin import SignInRefused, verify_password

BACKEND_PATH = "patron.members.auth_backend.IdentifierBackend"


class IdentifierBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        identifier = username or kwargs.get("email") or kwargs.get("phone")
        if not identifier or password is None:
            return None
        try:
            return verify_password(identifier, password)
        except SignInRefused as refusal:
            if request is not None:
                # Callers that can show a clear reason (allauth's adapter) read it here.
                request._patron_signin_refusal = refusal  # type: ignore[attr-defined]
            return None

    def user_can_authenticate(self, user: Any) -> bool:
        return user is not None and super().user_can_authenticate(user)
