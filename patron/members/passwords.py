"""Password policy (AUTH-1): NIST SP 800-63B by default, stricter rules when configured.

Defaults follow NIST SP 800-63B §5.1.1.2 and OWASP ASVS V2.1: at least 8 characters (any
characters, spaces and Chinese included, up to 4096), refused when on a list of common
passwords or like the user's own identifiers, no reuse of the last 5
(``services.passwords``). Composition rules (``PATRON_PASSWORD_REQUIRE_CLASSES``) and
forced rotation (``PATRON_PASSWORD_MAX_AGE_DAYS``) are off unless an operator must have
them. See docs/security.md.
"""

from __future__ import annotations

from difflib import SequenceMatcher

from django.conf import settings
from django.contrib.auth import password_validation as django_validation
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

MAX_LENGTH = 4096  # argon2 hashes anything; the cap only stops absurd request bodies


def _policy() -> dict:
    return settings.PATRON_PASSWORD


class MinimumLengthValidator(django_validation.MinimumLengthValidator):
    def __init__(self) -> None:
        super().__init__(min_length=_policy()["MIN_LENGTH"])

    def validate(self, password: str, user=None) -> None:  # type: ignore[no-untyped-def]
        super().validate(password, user)
        if len(password) > MAX_LENGTH:
            raise ValidationError(
                _("The password is too long (at most %(n)d characters).") % {"n": MAX_LENGTH},
                code="password_too_long",
            )


class CommonPasswordValidator(django_validation.CommonPasswordValidator):
    """Django's list of 20,000 common passwords (case-insensitive)."""


def _identifiers(user) -> list[str]:  # type: ignore[no-untyped-def]
    """The user's own identifiers, plain: username, phone and email.

    Registration passes the values being registered as ``_patron_phone``/``_patron_email``
    (no Member row exists yet); for an existing member they are read from the member.
    """
    if user is None:
        return []
    values = [getattr(user, "username", "") or ""]
    phone = getattr(user, "_patron_phone", None)
    email = getattr(user, "_patron_email", None)
    if (phone is None or email is None) and getattr(user, "pk", None):
        from patron.members.models import Member

        member = Member.objects.filter(user_id=user.pk).only("phone", "email").first()
        if member is not None:
            phone = member.phone if phone is None else phone
            email = member.email if email is None else email
    values += [phone or "", email or ""]
    return [v for v in values if v]


def _variants(value: str) -> set[str]:
    value = value.lower().strip()
    variants = {value, value.split("@")[0]}
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) >= 7 and not any(c.isalpha() for c in value):
        # +8613812345678: the national number and its last 8 digits are what people type.
        variants |= {digits, digits[-11:], digits[-8:]}
    return {v for v in variants if len(v) >= 4}


class PersonalInfoSimilarityValidator:
    """Not like the username, phone number or email."""

    max_similarity = 0.7

    def validate(self, password: str, user=None) -> None:  # type: ignore[no-untyped-def]
        lowered = password.lower()
        for value in _identifiers(user):
            for part in _variants(value):
                contained = part in lowered or (len(lowered) >= 4 and lowered in part)
                if contained or SequenceMatcher(a=lowered, b=part).ratio() >= self.max_similarity:
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
