"""Revealing a member's unmasked personal data to staff (AUTH-6, PRIV-3, PRIV-10).

Staff see masked data by default. Seeing the real name, phone, email or ID number needs
the ``members.reveal_personal_data`` permission *and* a stated reason, and every reveal is
an audit event in the same transaction. The event records who looked at whom, the reason's
category and length, and which fields were shown, never the data itself and never the
reason text (staff sometimes paste personal data into it).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from patron.core import audit
from patron.core.exceptions import FieldError, Forbidden, ValidationFailed
from patron.members.models import Member

PERMISSION = "members.reveal_personal_data"
REASON_MIN_LENGTH = 10
REASON_MAX_LENGTH = 500
# Why staff look: a fixed list so the audit trail can be summarised without reading text.
REASON_CATEGORIES: dict[str, Any] = {
    "member_request": _("The member asked us (call, ticket)"),
    "identity_check": _("Identity check for a service request"),
    "fraud": _("Fraud or risk investigation"),
    "legal": _("Request from a court or authority"),
    "data_subject": _("Data subject access request"),
    "other": _("Other (explain in the reason)"),
}
# The fields a reveal shows; an enterprise's company name is not masked anywhere anyway.
FIELDS = (
    "name",
    "phone",
    "email",
    "birth_date",
    "id_number",
    "address",
    "credit_code",
    "contact_name",
)


def reveal_personal_data(
    *, member: Member, staff_user: Any, reason: str, category: str = "other"
) -> dict[str, str]:
    """Return the member's unmasked personal data once, recording the reveal.

    Refuses (and records nothing) when the user is not active staff with the permission,
    or when the reason is missing, too short or the category is unknown.
    """
    if not (
        getattr(staff_user, "is_active", False)
        and getattr(staff_user, "is_staff", False)
        and staff_user.has_perm(PERMISSION)
    ):
        raise Forbidden(
            _("Revealing personal data needs its own permission."), code="permission_denied"
        )
    reason = (reason or "").strip()
    errors: list[FieldError] = []
    if len(reason) < REASON_MIN_LENGTH:
        errors.append(
            FieldError(
                "reason",
                "reason_required",
                _("Say why you need to see the data (at least %(n)s characters).")
                % {"n": REASON_MIN_LENGTH},
            )
        )
    elif len(reason) > REASON_MAX_LENGTH:
        errors.append(
            FieldError(
                "reason",
                "reason_too_long",
                _("Keep the reason under %(n)s characters.") % {"n": REASON_MAX_LENGTH},
            )
        )
    if category not in REASON_CATEGORIES:
        errors.append(FieldError("category", "unknown_category", _("Choose a reason category.")))
    if errors:
        error = ValidationFailed(errors, message=str(errors[0].message))
        error.code = errors[0].code
        raise error
    data = {field: getattr(member, field) or "" for field in FIELDS}
    data["company_name"] = member.company_name
    with transaction.atomic():
        audit.record(
            "member.personal_data_revealed",
            actor=audit.Actor.user(staff_user),
            subject=member,
            details={
                "member_id": member.pk,
                "staff_user_id": staff_user.pk,
                "category": category,
                "reason_length": len(reason),
                "fields": [field for field in FIELDS if data[field]],
            },
        )
    return data
