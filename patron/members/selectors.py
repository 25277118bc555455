"""Reads about members. Lookups by personal data go through blind indexes."""

from __future__ import annotations

from patron.core.crypto import blind_index
from patron.members import normalize
from patron.members.models import Member, User


def member_by_number(number: str) -> Member | None:
    return Member.objects.select_related("user").filter(number=number).first()


def member_by_phone(phone: str) -> Member | None:
    normalized = normalize.phone_or_none(phone)
    if normalized is None:
        return None
    return (
        Member.objects.select_related("user")
        .filter(phone_index=blind_index(normalized, "phone"))
        .first()
    )


def member_by_email(email: str) -> Member | None:
    normalized = normalize.email_or_none(email)
    if normalized is None:
        return None
    return (
        Member.objects.select_related("user")
        .filter(email_index=blind_index(normalized, "email"))
        .first()
    )


def member_by_credit_code(code: str) -> Member | None:
    normalized = normalize.credit_code(code)
    return (
        Member.objects.select_related("user")
        .filter(credit_code_index=blind_index(normalized, "credit_code"))
        .first()
    )


def user_by_identifier(identifier: str) -> User | None:
    """A user by username, phone or email: whichever the identifier is."""
    identifier = identifier.strip()
    user = User.objects.filter(username=identifier).first()
    if user is not None:
        return user
    member = member_by_email(identifier) if "@" in identifier else member_by_phone(identifier)
    return member.user if member is not None else None
