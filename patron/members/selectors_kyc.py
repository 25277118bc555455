"""Reads about real-name verification (KYC-1..5).

Lists never load the photos: they are the largest encrypted values we hold, and decrypting
them for a queue page would cost time and widen what sits in memory for no reason. Only
``submission_for_review`` (the permission-checked image view) loads them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import QuerySet

from patron.core.masking import mask_id_number, mask_name
from patron.members import selectors
from patron.members.models import ConsentDocument, KycSubmission, Member

Status = KycSubmission.Status
OPEN_STATUSES = (Status.PENDING_REVIEW, Status.APPROVED)
_IMAGES = ("front_image", "back_image")


def current_sensitive_document() -> ConsentDocument | None:
    """The sensitive-information notice a submission must be consented to (KYC-5)."""
    return selectors.current_document(ConsentDocument.Kind.SENSITIVE)


def has_sensitive_consent(member: Member, document: ConsentDocument | None = None) -> bool:
    """Whether the member's latest decision on the current notice (or ``document``) grants it."""
    document = document or current_sensitive_document()
    if document is None:
        return False
    return document.pk in selectors.granted_document_ids(member, [document])


def _without_images() -> QuerySet[KycSubmission]:
    return KycSubmission.objects.defer(*_IMAGES)


def open_submission(member: Member) -> KycSubmission | None:
    """A pending or approved submission: while one exists the member may not submit again."""
    return (
        _without_images()
        .filter(member=member, status__in=OPEN_STATUSES)
        .order_by("-submitted_at", "-id")
        .first()
    )


def latest_submission(member: Member) -> KycSubmission | None:
    return _without_images().filter(member=member).order_by("-submitted_at", "-id").first()


def member_submissions(member: Member) -> list[KycSubmission]:
    """The member's whole KYC history, newest first (console history page)."""
    return list(
        _without_images()
        .filter(member=member)
        .select_related("reviewed_by")
        .order_by("-submitted_at", "-id")
    )


def review_queue() -> QuerySet[KycSubmission]:
    """Submissions waiting for a reviewer, oldest first: first come, first served (KYC-3)."""
    return (
        _without_images()
        .filter(status=Status.PENDING_REVIEW)
        .select_related("member")
        .order_by("submitted_at", "id")
    )


def submission_summary(pk: int) -> KycSubmission | None:
    """One submission with its member and reviewer, without the photos."""
    return _without_images().select_related("member", "reviewed_by").filter(pk=pk).first()


def submission_for_review(pk: int) -> KycSubmission | None:
    """One submission with its photos decrypted: only for the permission-checked views."""
    return KycSubmission.objects.select_related("member").filter(pk=pk).first()


def submission_by_reference(reference: str | int) -> KycSubmission | None:
    """A provider's callback names the submission by our id or by its own reference."""
    text = str(reference).strip()
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) <= 18:  # fits a bigint primary key
        found = _without_images().filter(pk=int(text)).first()
        if found is not None:
            return found
    if len(text) > 64:  # longer than any reference we store
        return None
    return _without_images().filter(provider_reference=text).order_by("-id").first()


def other_members_with_same_id_number(submission: KycSubmission) -> int:
    """How many other members submitted the same ID number (pending or approved).

    Shown to reviewers as a risk signal (one person, several accounts: RISK-2) rather than
    refused outright: a person may legitimately hold more than one account, and the
    reviewer decides.
    """
    return (
        KycSubmission.objects.filter(
            id_number_index=submission.id_number_index, status__in=OPEN_STATUSES
        )
        .exclude(member_id=submission.member_id)
        .values("member_id")
        .distinct()
        .count()
    )


@dataclass(frozen=True)
class KycStatus:
    """What a member (or a platform) may see about the member's verification."""

    status: str  # "none" or a KycSubmission.Status value
    verified: bool
    verified_at: dt.datetime | None = None
    submission_id: int | None = None
    submitted_at: dt.datetime | None = None
    reviewed_at: dt.datetime | None = None
    rejection_reason: str = ""
    masked_name: str = ""
    masked_id_number: str = ""
    reasons: list[dict[str, str]] = field(default_factory=list)


def kyc_status(member: Member) -> KycStatus:
    """The member's verification state, from the latest submission, personal data masked."""
    latest = latest_submission(member)
    verified = member.kyc_verified_at is not None
    if latest is None:
        return KycStatus(
            status=Status.APPROVED if verified else "none",
            verified=verified,
            verified_at=member.kyc_verified_at,
        )
    return KycStatus(
        status=latest.status,
        verified=verified,
        verified_at=member.kyc_verified_at,
        submission_id=latest.pk,
        submitted_at=latest.submitted_at,
        reviewed_at=latest.reviewed_at,
        rejection_reason=latest.review_note if latest.status == Status.REJECTED else "",
        masked_name=mask_name(latest.name),
        masked_id_number=mask_id_number(latest.id_number),
        reasons=list(latest.reasons or []),
    )
