"""Sign-in by username, phone or email with one password (AUTH-2 lockout lives here)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from patron.members import selectors


class IdentifierBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if not username or password is None:
            return None
        user = selectors.user_by_identifier(username)
        if user is None:
            # Same work as a real check, so timing does not reveal which identifiers exist.
            self.user_can_authenticate(None)  # type: ignore[arg-type]
            from patron.members.models import User

            User().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def user_can_authenticate(self, user: Any) -> bool:
        return user is not None and super().user_can_authenticate(user)
