"""Real-name verification (KYC-1..5): submission, automatic pre-check, review, provider results.

The flow:

1. ``submit_kyc``: the member sends name, resident ID number and photos of both sides of the
   card. Without a granted consent to the current ``sensitive`` document nothing is looked
   at (KYC-5). The automatic pre-check (KYC-2) then runs in full and, when anything fails,
   refuses with every reason field by field and stores nothing: there is no half-made
   submission to clean up, and the member simply corrects and sends again. A passing
   submission is stored encrypted as ``pending_review``.
2. ``approve_kyc`` / ``reject_kyc``: a reviewer with ``members.review_kyc`` decides (KYC-3).
   Approval sets ``Member.kyc_verified_at`` (the verified badge); rejection needs a reason,
   tells the member, and lets them submit again. The submission row is locked, so of two
   reviewers deciding at once exactly one wins and the other gets 409.
3. ``record_provider_result``: a third-party identity service reports a match result
   through the signed callback (KYC-4). The result is stored for the reviewer to see; it
   never decides on its own (see docs/kyc.md for why).

Audit details carry ids only; names, ID numbers and photos never leave their encrypted
columns except through the permission-checked, audited console views.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

# Plain gettext: messages are made while serving a request, in its language.
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.crypto import blind_index
from patron.core.exceptions import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PatronError,
    Unauthorized,
    ValidationFailed,
)
from patron.members import selectors_kyc
from patron.members.kyc_images import CheckedImage, ImageRefused, check_image
from patron.members.models import ConsentDocument, KycSubmission, Member, User
from patron.members.services._common import failed, member_channels, queue_notice
from patron.members.services.consents import record_consent
from patron.members.validators import check_adult, check_id_number

Status = KycSubmission.Status
REVIEW_PERMISSION = "members.review_kyc"
NAME_MAX = 64
REASON_MAX = 500  # KycSubmission.review_note
PROVIDER_ACTOR = audit.Actor("kyc_provider")
PROVIDER_RESULTS = ("match", "no_match")
# The blind-index purpose of resident ID numbers, shared with Member.id_number_index so a
# lookup by ID number finds members and submissions alike.
ID_NUMBER_PURPOSE = "id_number"
# What a reviewer can look at, and the submission fields each shows (for the audit event).
REVEAL_PARTS = {
    "front": ["front_image"],
    "back": ["back_image"],
    "data": ["name", "id_number"],
}


# --- Consent to sensitive personal information (KYC-5) ---------------------------------


class SensitiveConsentRequired(PatronError):
    """422 ``sensitive_consent_required``: no granted consent to the current notice."""

    def __init__(self, field_code: str, message: Any):
        super().__init__(
            message=str(message),
            code="sensitive_consent_required",
            status=422,
            errors=[FieldError("accept_sensitive", field_code, message)],
        )


def _sensitive_consent(
    member: Member, accept_sensitive: str | None
) -> tuple[ConsentDocument, bool]:
    """The current notice and whether a grant must be recorded now; raises when neither holds.

    ``accept_sensitive`` is ``"sensitive@<version>"``: naming the exact version proves the
    member saw the text that is current, not an older one cached by an app.
    """
    document = selectors_kyc.current_sensitive_document()
    if document is None:
        raise SensitiveConsentRequired(
            "no_sensitive_document",
            _(
                "Real-name verification is not available: no sensitive-information notice "
                "is published."
            ),
        )
    given = (accept_sensitive or "").strip()
    if given:
        if given != f"{document.kind}@{document.version}":
            raise SensitiveConsentRequired(
                "consent_document_not_current",
                _("Please accept the current sensitive-information notice (%(doc)s).")
                % {"doc": f"{document.kind}@{document.version}"},
            )
        return document, not selectors_kyc.has_sensitive_consent(member, document)
    if selectors_kyc.has_sensitive_consent(member, document):
        return document, False
    raise SensitiveConsentRequired(
        "sensitive_consent_required",
        _(
            "Your ID number and photos are sensitive personal information: please consent "
            "to their processing (%(doc)s)."
        )
        % {"doc": f"{document.kind}@{document.version}"},
    )


# --- Automatic pre-check (KYC-2) ---------------------------------------------------------

# Interpuncts used between the parts of transliterated names (e.g. 阿依古丽·买买提),
# typed in several look-alike forms; they compare as one.
_INTERPUNCTS = str.maketrans(dict.fromkeys("•・‧∙⋅．.", "·"))


def name_key(name: str) -> str:
    """The form two names are compared in: width-folded, no spaces, one interpunct, casefolded."""
    folded = unicodedata.normalize("NFKC", name).translate(_INTERPUNCTS)
    return re.sub(r"\s+", "", folded).casefold()


@dataclass(frozen=True)
class PrecheckedKyc:
    name: str
    id_number: str
    birth_date: dt.date
    front: CheckedImage
    back: CheckedImage


def _name_on_file(member: Member) -> str:
    if member.kind == Member.Kind.ENTERPRISE:
        return member.contact_name or ""
    return member.name or ""


def _birth_date_on_file(member: Member) -> dt.date | None:
    if member.kind != Member.Kind.INDIVIDUAL or not member.birth_date:
        return None
    try:
        return dt.date.fromisoformat(member.birth_date)
    except ValueError:
        return None


def precheck(
    *, member: Member, name: str, id_number: str, front: bytes | None, back: bytes | None
) -> PrecheckedKyc:
    """Run every automatic check and raise once with all the reasons (KYC-2).

    The member's own records are the yardstick where they exist: the name must be the one
    on file (the contact person's for an enterprise), and the birth date and ID number on
    file must agree with the card. A mismatch is refused here, not left to a reviewer: it is
    either a typo the member can fix at once or someone else's card.
    """
    errors: list[FieldError] = []
    clean_name = " ".join((name or "").split())
    if not clean_name:
        errors.append(
            FieldError("name", "name_required", _("Enter the name shown on the ID card."))
        )
    elif len(clean_name) > NAME_MAX:
        errors.append(
            FieldError("name", "name_too_long", _("At most %(n)s characters.") % {"n": NAME_MAX})
        )
    else:
        on_file = _name_on_file(member)
        if on_file and name_key(on_file) != name_key(clean_name):
            errors.append(
                FieldError(
                    "name",
                    "name_mismatch",
                    _("The name does not match the name on your account."),
                )
            )

    number = ""
    birth: dt.date | None = None
    if not (id_number or "").strip():
        errors.append(
            FieldError("id_number", "id_number_required", _("Enter the resident ID number."))
        )
    else:
        try:
            number, birth = check_id_number(id_number)
            check_adult(birth, clock.today(), field="id_number")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
        else:
            if member.id_number and member.id_number.replace(" ", "").upper() != number:
                errors.append(
                    FieldError(
                        "id_number",
                        "id_number_mismatch",
                        _("The ID number does not match the one on your account."),
                    )
                )
            on_file_birth = _birth_date_on_file(member)
            if on_file_birth is not None and on_file_birth != birth:
                errors.append(
                    FieldError(
                        "id_number",
                        "birth_date_mismatch",
                        _("The birth date in the ID number does not match your account."),
                    )
                )

    images: dict[str, CheckedImage] = {}
    for field_name, data in (("front", front), ("back", back)):
        try:
            images[field_name] = check_image(data, field=field_name)
        except ImageRefused as exc:
            errors.append(exc.error)

    if errors:
        raise failed(errors)
    assert birth is not None  # set whenever no error was recorded
    return PrecheckedKyc(
        name=clean_name,
        id_number=number,
        birth_date=birth,
        front=images["front"],
        back=images["back"],
    )


# --- Submission (KYC-1) --------------------------------------------------------------------


def _refuse_if_open(member: Member) -> None:
    if member.kyc_verified_at is not None:
        raise Conflict(_("Your real name is already verified."), code="kyc_already_verified")
    existing = selectors_kyc.open_submission(member)
    if existing is None:
        return
    if existing.status == Status.APPROVED:
        raise Conflict(_("Your real name is already verified."), code="kyc_already_verified")
    raise Conflict(_("Your previous submission is still waiting for review."), code="kyc_pending")


def submit_kyc(
    *,
    member: Member,
    name: str,
    id_number: str,
    front: bytes | None,
    back: bytes | None,
    actor: audit.Actor,
    accept_sensitive: str | None = None,
    channel: str = "api",
) -> KycSubmission:
    """Check and store a real-name verification request for review.

    Refusals, in order: 409 ``member_not_active`` / ``kyc_already_verified`` /
    ``kyc_pending``; 422 ``sensitive_consent_required``; 422 pre-check failure with every
    field's reason. A refusal stores nothing (no submission, no consent, no audit event).
    On success the consent given in ``accept_sensitive`` (if any) and the submission are
    written in one transaction with their audit events.
    """
    if member.status != Member.Status.ACTIVE:
        raise Conflict(
            _("Only an active account can be verified; verify your phone first."),
            code="member_not_active",
        )
    # Cheap refusals first, before the photos are decoded; repeated under the lock below.
    _refuse_if_open(member)
    document, record_grant = _sensitive_consent(member, accept_sensitive)
    checked = precheck(member=member, name=name, id_number=id_number, front=front, back=back)

    with transaction.atomic():
        # The member row lock serialises two submissions racing from two devices.
        locked = Member.objects.select_for_update().get(pk=member.pk)
        _refuse_if_open(locked)
        if record_grant and not selectors_kyc.has_sensitive_consent(locked, document):
            # The same consent service as every other document: one history, one audit shape.
            record_consent(
                member=locked,
                document=document.kind,
                version=document.version,
                granted=True,
                channel=channel,
                actor=actor,
            )
        submission = KycSubmission.objects.create(
            member=locked,
            name=checked.name,
            id_number=checked.id_number,
            id_number_index=blind_index(checked.id_number, ID_NUMBER_PURPOSE),
            front_image=checked.front.data,  # type: ignore[misc]  # EncryptedBinaryField
            front_content_type=checked.front.content_type,
            back_image=checked.back.data,  # type: ignore[misc]
            back_content_type=checked.back.content_type,
            status=Status.PENDING_REVIEW,
            submitted_at=clock.now(),
        )
        audit.record(
            "kyc.submitted",
            actor=actor,
            subject=submission,
            details={"member": locked.pk, "consent_document": document.pk},
        )
    return submission


# --- Review (KYC-3) ------------------------------------------------------------------------


def _check_reviewer(reviewer: User, submission: KycSubmission) -> None:
    if not (reviewer.is_active and reviewer.is_staff and reviewer.has_perm(REVIEW_PERMISSION)):
        raise Forbidden(
            _("Reviewing real-name verification needs the KYC review permission."),
            code="permission_denied",
        )
    if submission.member.user_id == reviewer.pk:
        raise Forbidden(_("Nobody reviews their own submission."), code="own_submission")


def _lock_pending(submission: KycSubmission) -> KycSubmission:
    locked = (
        KycSubmission.objects.select_for_update()
        .defer("front_image", "back_image")
        .get(pk=submission.pk)
    )
    if locked.status != Status.PENDING_REVIEW:
        raise Conflict(_("This submission has already been decided."), code="kyc_already_decided")
    return locked


def approve_kyc(*, submission: KycSubmission, reviewer: User, reason: str = "") -> KycSubmission:
    """Approve: the member gets the verified badge and a notice.

    Blank name, ID number and birth date on an individual's account are filled from the
    approved card (the verified values are then the account's); existing ones already
    matched in the pre-check, so nothing is overwritten.
    """
    note = (reason or "").strip()
    if len(note) > REASON_MAX:
        raise failed(
            [FieldError("reason", "too_long", _("At most %(n)s characters.") % {"n": REASON_MAX})]
        )
    _check_reviewer(reviewer, submission)
    now = clock.now()
    with transaction.atomic():
        locked = _lock_pending(submission)
        locked.status = Status.APPROVED
        locked.reviewed_by = reviewer
        locked.reviewed_at = now
        locked.review_note = note
        locked.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])

        member = Member.objects.select_for_update().get(pk=locked.member_id)
        member.kyc_verified_at = now
        fields = ["kyc_verified_at", "updated_at"]
        if member.kind == Member.Kind.INDIVIDUAL:
            if not member.name:
                member.name = locked.name
                fields.append("name")
            if not member.id_number:
                member.id_number = locked.id_number
                member.id_number_index = locked.id_number_index
                fields += ["id_number", "id_number_index"]
            if not member.birth_date:
                _number, birth = check_id_number(locked.id_number)
                member.birth_date = birth.isoformat()
                fields.append("birth_date")
        member.save(update_fields=fields)

        audit.record(
            "kyc.approved",
            actor=audit.Actor.user(reviewer),
            subject=locked,
            details={"member": member.pk},
        )
        queue_notice(
            template="kyc_approved",
            member=member,
            channels=(*member_channels(member), "inapp"),
            dedupe_key=f"kyc_approved:{locked.pk}",
        )
    return locked


def reject_kyc(*, submission: KycSubmission, reviewer: User, reason: str) -> KycSubmission:
    """Reject with a reason the member is told; the member may then submit again."""
    note = (reason or "").strip()
    if not note:
        raise failed([FieldError("reason", "required", _("Give the member a reason."))])
    if len(note) > REASON_MAX:
        raise failed(
            [FieldError("reason", "too_long", _("At most %(n)s characters.") % {"n": REASON_MAX})]
        )
    _check_reviewer(reviewer, submission)
    with transaction.atomic():
        locked = _lock_pending(submission)
        locked.status = Status.REJECTED
        locked.reviewed_by = reviewer
        locked.reviewed_at = clock.now()
        locked.review_note = note
        locked.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        member = Member.objects.get(pk=locked.member_id)
        # The reason is staff's free text: it goes only into the encrypted notice body,
        # never into the audit details.
        audit.record(
            "kyc.rejected",
            actor=audit.Actor.user(reviewer),
            subject=locked,
            details={"member": member.pk},
        )
        queue_notice(
            template="kyc_rejected",
            member=member,
            channels=(*member_channels(member), "inapp"),
            context={"reason": note},
            dedupe_key=f"kyc_rejected:{locked.pk}",
        )
    return locked


def record_reveal(*, submission: KycSubmission, viewer: User, part: str) -> None:
    """Audit a reviewer looking at a photo or the unmasked submitted data (PRIV-3).

    Recorded as the same ``member.personal_data_revealed`` event as any other reveal, so
    one query finds every look at a member's data; the purpose is the KYC review itself,
    which the ``members.review_kyc`` permission stands for (no free-text reason asked).
    Called by the console before it sends the data; the permission is checked here too so
    no caller can reveal without it.
    """
    fields = REVEAL_PARTS.get(part)
    if fields is None:
        raise ValueError(f"unknown part {part!r}")
    if not (viewer.is_active and viewer.is_staff and viewer.has_perm(REVIEW_PERMISSION)):
        raise Forbidden(
            _("Viewing ID photos needs the KYC review permission."), code="permission_denied"
        )
    with transaction.atomic():
        audit.record(
            "member.personal_data_revealed",
            actor=audit.Actor.user(viewer),
            subject_type="member",
            subject_id=submission.member_id,
            details={
                "member_id": submission.member_id,
                "staff_user_id": viewer.pk,
                "category": "kyc_review",
                "kyc_submission_id": submission.pk,
                "fields": fields,
            },
        )


# --- Third-party identity callback (KYC-4) ----------------------------------------------


def _signature_invalid() -> Unauthorized:
    return Unauthorized(_("The callback signature is missing or wrong."), code="signature_invalid")


def verify_callback_signature(
    *, header: str | None, body: bytes, now: dt.datetime | None = None
) -> int:
    """Check ``Patron-Signature: t=<unix>,v1=<hex>`` over ``"<t>.<raw body>"``; return ``t``.

    HMAC-SHA256 with ``PATRON_KYC_CALLBACK_SECRET``, compared in constant time; several
    ``v1`` entries are allowed (a provider rotating secrets signs with both). The timestamp
    is judged only after the signature holds, so ``signature_expired`` is only ever said
    about a genuine message, and a replay outside the tolerance window is refused.
    """
    secret = settings.PATRON_KYC_CALLBACK_SECRET or ""
    if not header or not secret:
        raise _signature_invalid()
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.strip().lower().encode("ascii", "replace"))
    if timestamp is None or not candidates:
        raise _signature_invalid()
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
    # Compare against every candidate (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise _signature_invalid()
    moment = (now or clock.now()).timestamp()
    if abs(moment - timestamp) > settings.PATRON_KYC_CALLBACK_TOLERANCE_SECONDS:
        raise Unauthorized(
            _("The callback timestamp is outside the allowed window."), code="signature_expired"
        )
    return timestamp


def sign_callback(body: bytes, timestamp: int, secret: str | None = None) -> str:
    """The ``Patron-Signature`` value for ``body``: for providers' test kits and our tests."""
    key = (secret if secret is not None else settings.PATRON_KYC_CALLBACK_SECRET or "").encode()
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def record_provider_result(
    *, submission_ref: str | int, result: str, reference: str, score: float | None = None
) -> KycSubmission:
    """Store a provider's identity result on the submission it names; audited.

    Informational only: the reviewer sees it beside the photos and still decides. A
    provider retrying the same result changes nothing and writes no second audit event.
    The result is kept even after a decision, so the record shows what the provider said.
    """
    if result not in PROVIDER_RESULTS:
        raise ValidationFailed.single(
            "result", "invalid_result", _("Result must be match or no_match.")
        )
    reference = (reference or "").strip()
    if not reference or len(reference) > 64:
        raise ValidationFailed.single(
            "reference", "invalid_reference", _("A reference of 1 to 64 characters is required.")
        )
    found = selectors_kyc.submission_by_reference(submission_ref)
    if found is None:
        raise NotFound(_("No such KYC submission."), code="kyc_submission_not_found")
    outcome = {"result": result, "score": score, "reference": reference}
    with transaction.atomic():
        locked = (
            KycSubmission.objects.select_for_update()
            .defer("front_image", "back_image")
            .get(pk=found.pk)
        )
        previous = {k: locked.provider_result.get(k) for k in outcome}
        if previous == outcome:
            return locked
        locked.provider_result = {**outcome, "received_at": clock.now().isoformat()}
        locked.provider_reference = reference
        locked.save(update_fields=["provider_result", "provider_reference"])
        audit.record(
            "kyc.provider_result",
            actor=PROVIDER_ACTOR,
            subject=locked,
            details={"member": locked.member_id, "result": result},
        )
    return locked
