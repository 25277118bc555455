"""Canonical forms of phone numbers, emails and codes: what blind indexes are taken over."""

from __future__ import annotations

import phonenumbers
from django.conf import settings


def phone(raw: str) -> str:
    """E.164 form; raises ValueError for anything that is not a valid number."""
    try:
        parsed = phonenumbers.parse(raw, settings.PATRON_DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_or_none(raw: str) -> str | None:
    try:
        return phone(raw)
    except ValueError:
        return None


def email_or_none(raw: str) -> str | None:
    raw = raw.strip()
    if raw.count("@") != 1:
        return None
    local, domain = raw.split("@")
    if not local or "." not in domain:
        return None
    # Lower-case all of it: RFC 5321 allows a case-sensitive local part, but no mail provider
    # members use treats Wang@ and wang@ as two people, and uniqueness must not either.
    return f"{local.lower()}@{domain.lower()}"


def credit_code(raw: str) -> str:
    return raw.strip().upper()


def id_number(raw: str) -> str:
    return raw.strip().upper()
