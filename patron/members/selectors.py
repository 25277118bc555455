"""Reads about members. Lookups by personal data go through blind indexes."""

from __future__ import annotations

import re

from stdnum.cn import uscc

from patron.core import clock
from patron.core.crypto import blind_index
from patron.members import normalize
from patron.members.models import Consent, ConsentDocument, Member, User

_NUMBER = re.compile(r"[0-9]{12}")


def _unique(**lookup: str) -> Member | None:
    """The member matching one unique column, or None.

    Sliced rather than ``.first()``: the column is unique, so the ORDER BY that ``first()``
    adds is pure cost (its compilation is a measurable share of an API lookup).
    """
    return next(iter(Member.objects.select_related("user").filter(**lookup)[:1]), None)


def member_by_number(number: str) -> Member | None:
    if not _NUMBER.fullmatch(number or ""):
        return None  # not a member number: no query (and no NUL reaches the database)
    return _unique(number=number)


def phone_index(phone: str) -> str | None:
    """The blind index a typed phone number is stored under, or None for no phone number."""
    normalized = normalize.phone_or_none(phone)
    return None if normalized is None else blind_index(normalized, "phone")


def member_by_phone(phone: str) -> Member | None:
    index = phone_index(phone)
    return None if index is None else member_by_phone_index(index)


def member_by_phone_index(index: str) -> Member | None:
    """By the phone's blind index, for callers that keep only that (the password reset)."""
    return _unique(phone_index=index) if index else None


def member_by_email(email: str) -> Member | None:
    normalized = normalize.email_or_none(email)
    if normalized is None:
        return None
    return _unique(email_index=blind_index(normalized, "email"))


def credit_code_key(code: str) -> str:
    """The form a credit code's blind index is taken over (spaces and dashes dropped)."""
    return uscc.compact(normalize.credit_code(code))


def member_by_credit_code(code: str) -> Member | None:
    return _unique(credit_code_index=blind_index(credit_code_key(code), "credit_code"))


def user_by_identifier(identifier: str) -> User | None:
    """A user by username, phone or email: whichever the identifier is."""
    identifier = identifier.strip()
    # username is unique: a slice, not .first(), spares an ORDER BY (see _unique).
    user = next(iter(User.objects.filter(username=identifier)[:1]), None)
    if user is not None:
        return user
    member = member_by_email(identifier) if "@" in identifier else member_by_phone(identifier)
    return member.user if member is not None else None


# --- Consent documents (REG-5, PRIV-1, PRIV-9) ---------------------------------------------


def current_documents() -> list[ConsentDocument]:
    """The current version of every kind of document: the latest one already published.

    A version published in the future is not current yet, so staff can stage a new policy
    and it takes effect (and starts gating sign-ins) on its publication time.
    """
    latest: dict[str, ConsentDocument] = {}
    for doc in ConsentDocument.objects.filter(published_at__lte=clock.now()).order_by(
        "kind", "-published_at", "-id"
    ):
        latest.setdefault(doc.kind, doc)
    return sorted(latest.values(), key=lambda doc: _KIND_ORDER.get(doc.kind, 99))


_KIND_ORDER = {kind: position for position, kind in enumerate(ConsentDocument.Kind.values)}


def current_document(kind: str) -> ConsentDocument | None:
    return next((doc for doc in current_documents() if doc.kind == kind), None)


def required_documents() -> list[ConsentDocument]:
    """Current documents that every member must have accepted to hold an account."""
    return [doc for doc in current_documents() if doc.required]


def granted_document_ids(member: Member, documents: list[ConsentDocument]) -> set[int]:
    """Which of these documents the member's latest decision grants (history is append-only)."""
    latest: dict[int, bool] = {}
    rows = (
        Consent.objects.filter(member=member, document__in=documents)
        .order_by("-recorded_at", "-id")
        .values_list("document_id", "granted")
    )
    for document_id, granted in rows:
        latest.setdefault(document_id, granted)
    return {document_id for document_id, granted in latest.items() if granted}


def missing_consents(member: Member) -> list[ConsentDocument]:
    """Current required documents the member has not accepted in exactly this version."""
    required = required_documents()
    if not required:
        return []
    granted = granted_document_ids(member, required)
    return [doc for doc in required if doc.pk not in granted]


def consent_history(member: Member) -> list[Consent]:
    """Every grant and withdrawal, newest first."""
    return list(Consent.objects.filter(member=member).select_related("document"))


def has_granted(member: Member, kind: str) -> bool:
    """Whether the member's latest decision on the current document of this kind grants it."""
    doc = current_document(kind)
    return doc is not None and doc.pk in granted_document_ids(member, [doc])
