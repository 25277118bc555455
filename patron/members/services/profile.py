"""Profile updates (REG-8): members correct their own information.

Plain fields (name, address, contact person, company name, language) change at once. A new
phone or email is not applied: a code goes to the *new* address and the change happens when
it is confirmed (``verification.confirm_code``), with uniqueness checked again then. So an
account can never be moved onto an address nobody proved they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from patron.core import audit
from patron.core.crypto import blind_index
from patron.core.exceptions import Conflict, FieldError
from patron.members import normalize
from patron.members.models import Member
from patron.members.services._common import control_character_errors, failed
from patron.members.services.registration import MAX_LENGTHS
from patron.members.services.verification import send_code

_UNSET = object()
PLAIN_FIELDS = ("name", "address", "contact_name", "company_name", "language")


@dataclass
class ProfileUpdate:
    """What changed, and which new addresses now wait for their code."""

    member: Member
    changed: list[str] = field(default_factory=list)
    pending_verifications: list[str] = field(default_factory=list)


def _check_plain(member: Member, changes: dict, errors: list[FieldError]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in PLAIN_FIELDS:
        if name not in changes or changes[name] is None:
            continue
        value = str(changes[name]).strip()
        if name in ("contact_name", "company_name") and member.kind != Member.Kind.ENTERPRISE:
            errors.append(FieldError(name, "not_allowed", _("Only enterprise members have this.")))
            continue
        if name == "language" and value not in dict(settings.LANGUAGES):
            errors.append(FieldError(name, "invalid_language", _("Unknown language.")))
            continue
        if name in ("name", "contact_name", "company_name") and not value:
            errors.append(FieldError(name, "required", _("This field cannot be empty.")))
            continue
        if len(value) > MAX_LENGTHS.get(name, 300):
            errors.append(
                FieldError(
                    name, "too_long", _("At most %(n)d characters.") % {"n": MAX_LENGTHS[name]}
                )
            )
            continue
        if getattr(member, name) != value:
            values[name] = value
    return values


def update_profile(
    *, member: Member, changes: dict, actor: audit.Actor, ip: str | None = None
) -> ProfileUpdate:
    """Apply plain changes, start re-verification of a new phone or email.

    ``changes`` holds only the fields to change. ``email: ""`` removes the email (no
    verification is needed to stop using an address). Refusals write nothing.
    """
    errors = control_character_errors(changes)
    if errors:
        raise failed(errors)
    if member.status == Member.Status.CANCELLED:
        raise Conflict(
            _("The member is cancelled; cancellation is final."), code="member_cancelled"
        )
    values = _check_plain(member, changes, errors)
    new_phone = new_email = None
    remove_email = False
    if changes.get("phone") is not None:
        new_phone = normalize.phone_or_none(str(changes["phone"]))
        if new_phone is None:
            errors.append(
                FieldError("phone", "invalid_phone", _("This is not a valid phone number."))
            )
        elif new_phone == member.phone:
            new_phone = None
    if changes.get("email") is not None:
        raw = str(changes["email"]).strip()
        if not raw:
            remove_email = bool(member.email)
        else:
            new_email = normalize.email_or_none(raw)
            if new_email is None:
                errors.append(
                    FieldError("email", "invalid_email", _("This is not a valid email address."))
                )
            elif new_email == member.email:
                new_email = None
    if errors:
        raise failed(errors)
    taken: list[FieldError] = []
    others = Member.objects.exclude(pk=member.pk)
    if new_phone and others.filter(phone_index=blind_index(new_phone, "phone")).exists():
        taken.append(
            FieldError("phone", "phone_taken", _("This phone number is already registered."))
        )
    if new_email and others.filter(email_index=blind_index(new_email, "email")).exists():
        taken.append(
            FieldError("email", "email_taken", _("This email address is already registered."))
        )
    if taken:
        raise Conflict(taken[0].message, code=taken[0].code, errors=taken)

    result = ProfileUpdate(member=member)
    with transaction.atomic():
        member = Member.objects.select_for_update().select_related("user").get(pk=member.pk)
        if member.status == Member.Status.CANCELLED:
            raise Conflict(
                _("The member is cancelled; cancellation is final."), code="member_cancelled"
            )
        result.member = member
        fields = list(values)
        for name, value in values.items():
            setattr(member, name, value)
        if remove_email:
            member.email = ""
            member.email_index = None
            member.email_verified_at = None
            fields += ["email", "email_index", "email_verified_at"]
        if fields:
            member.save(update_fields=[*fields, "updated_at"])
            result.changed = sorted({*values, *(["email"] if remove_email else [])})
            audit.record(
                "member.profile_updated",
                actor=actor,
                subject=member,
                details={"fields": result.changed},
            )
        if new_phone:
            send_code(member=member, channel="phone", ip=ip, target=new_phone)
            result.pending_verifications.append("phone")
        if new_email:
            send_code(member=member, channel="email", ip=ip, target=new_email)
            result.pending_verifications.append("email")
    return result
