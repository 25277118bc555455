"""Password policy (AUTH-1): NIST SP 800-63B by default, stricter rules when configured."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import password_validation as django_validation
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def _policy() -> dict:
    return settings.PATRON_PASSWORD


class MinimumLengthValidator(django_validation.MinimumLengthValidator):
    def __init__(self) -> None:
        super().__init__(min_length=_policy()["MIN_LENGTH"])


class CommonPasswordValidator(django_validation.CommonPasswordValidator):
    """Django's list of 20,000 common passwords."""


class PersonalInfoSimilarityValidator:
    """Not like the username, phone number or email (checked on the plain values given)."""

    def validate(self, password: str, user=None) -> None:  # type: ignore[no-untyped-def]
        lowered = password.lower()
        candidates = []
        if user is not None:
            candidates.append(getattr(user, "username", "") or "")
            for attr in ("_patron_phone", "_patron_email"):
                candidates.append(getattr(user, attr, "") or "")
        for value in candidates:
            value = value.lower().lstrip("+")
            core = value.split("@")[0]
            for part in {value, core, value[-11:] if value.isdigit() else ""}:
                if len(part) >= 4 and (part in lowered or lowered in part):
                    raise ValidationError(
                        _("The password is too similar to your username, phone or email."),
                        code="password_too_similar",
                    )

    def get_help_text(self) -> str:
        return _("Your password can't be like your username, phone or email.")


class CompositionValidator:
    """Require N of lower/upper/digit/symbol, only when an operator configures it."""

    def validate(self, password: str, user=None) -> None:  # type: ignore[no-untyped-def]
        required = _policy()["REQUIRE_CLASSES"]
        if not required:
            return
        classes = sum(
            [
                any(c.islower() for c in password),
                any(c.isupper() for c in password),
                any(c.isdigit() for c in password),
                any(not c.isalnum() for c in password),
            ]
        )
        if classes < required:
            raise ValidationError(
                _(
                    "The password must mix at least %(n)d of: lower case, upper case, "
                    "digits, symbols."
                )
                % {"n": required},
                code="password_composition",
            )

    def get_help_text(self) -> str:
        required = _policy()["REQUIRE_CLASSES"]
        return _("Mix %(n)d kinds of characters.") % {"n": required} if required else ""
