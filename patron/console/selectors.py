"""Reads for the console pages. Exact lookups by personal data go through the members
selectors (blind indexes); lists show masked values only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import QuerySet

from patron.api.models import ApiKey
from patron.core import masking
from patron.core.models import AuditEvent
from patron.members import selectors as member_selectors
from patron.members.models import ConsentDocument, Member

_NUMBER = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class MaskedMember:
    """What staff see by default: masked personal data, status and verified flags."""

    pk: int
    number: str
    kind: str
    kind_label: str
    status: str
    status_label: str
    name: str
    phone: str
    email: str
    company_name: str
    phone_verified: bool
    email_verified: bool
    kyc_verified: bool
    created_at: object

    @classmethod
    def of(cls, member: Member) -> MaskedMember:
        return cls(
            pk=member.pk,
            number=member.number,
            kind=member.kind,
            kind_label=str(member.get_kind_display()),
            status=member.status,
            status_label=str(member.get_status_display()),
            name=masking.mask_name(member.name or member.contact_name),
            phone=masking.mask_phone(member.phone),
            email=masking.mask_email(member.email),
            company_name=member.company_name,
            phone_verified=member.phone_verified_at is not None,
            email_verified=member.email_verified_at is not None,
            kyc_verified=member.kyc_verified_at is not None,
            created_at=member.created_at,
        )


def search_members(*, q: str = "", status: str = "", kind: str = "") -> QuerySet[Member]:
    """Members newest first; ``q`` is an exact member number, phone or email."""
    members = Member.objects.order_by("-created_at", "-id")
    q = q.strip()
    if q:
        if _NUMBER.match(q):
            found = member_selectors.member_by_number(q)
        elif "@" in q:
            found = member_selectors.member_by_email(q)
        else:
            found = member_selectors.member_by_phone(q)
        members = members.filter(pk=found.pk if found else None)
    if status:
        members = members.filter(status=status)
    if kind:
        members = members.filter(kind=kind)
    return members


def member_detail(number: str) -> Member | None:
    return member_selectors.member_by_number(number)


def documents() -> list[tuple[ConsentDocument, bool]]:
    """Every document version, each with whether it is the current one of its kind."""
    current = {doc.pk for doc in member_selectors.current_documents()}
    return [(doc, doc.pk in current) for doc in ConsentDocument.objects.all()]


def api_keys() -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("created_by").order_by("revoked_at", "-created_at")


def audit_events(
    *, action: str = "", subject_type: str = "", subject_id: str = ""
) -> QuerySet[AuditEvent]:
    """Newest first; filters are exact (action also matches a prefix ending in '.')."""
    events = AuditEvent.objects.order_by("-id")
    if action:
        events = (
            events.filter(action__startswith=action)
            if action.endswith(".")
            else events.filter(action=action)
        )
    if subject_type:
        events = events.filter(subject_type=subject_type)
    if subject_id:
        events = events.filter(subject_id=subject_id)
    return events
