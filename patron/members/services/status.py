"""Account states (REG-9, REG-11): pending, active, frozen (optionally until a date), cancelled.

Every change has a reason and an actor, leaves a ``MemberStatusChange`` row and an audit
event, and tells the member. Frozen and cancelled members cannot sign in (their user is
made inactive). Cancellation is final: it releases the phone, email and credit-code blind
indexes so the same person or enterprise may register again, while the encrypted values
stay until the retention job (PRIV-6) removes them.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.exceptions import Conflict, FieldError
from patron.members.models import Member, MemberStatusChange
from patron.members.services._common import (
    control_character_errors,
    failed,
    member_channels,
    queue_notice,
)
from patron.notify import webhooks

Status = Member.Status
TARGETS = {Status.ACTIVE, Status.FROZEN, Status.CANCELLED}
REASON_MAX = 200


def transition(
    member: Member,
    to_status: str,
    *,
    reason: str,
    actor: audit.Actor,
    until: dt.datetime | None = None,
) -> MemberStatusChange:
    """Apply a state change already judged valid; the caller holds the transaction and lock.

    Shared by ``change_status`` (staff and platforms), phone verification (pending ->
    active) and the unfreeze job, so every path leaves the same history and audit trail.
    """
    from_status = member.status
    member.status = to_status
    member.status_reason = reason[:REASON_MAX]
    member.frozen_until = until if to_status == Status.FROZEN else None
    fields = ["status", "status_reason", "frozen_until", "updated_at"]
    if to_status == Status.CANCELLED:
        # Free the identifiers for a new registration; the ciphertext stays for retention.
        member.phone_index = None
        member.email_index = None
        member.credit_code_index = None
        fields += ["phone_index", "email_index", "credit_code_index"]
    member.save(update_fields=fields)
    user = member.user
    active = to_status in (Status.ACTIVE, Status.PENDING)
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
    change = MemberStatusChange.objects.create(
        member=member,
        from_status=from_status,
        to_status=to_status,
        reason=reason[:REASON_MAX],
        until=member.frozen_until,
        actor_type=actor.type,
        actor_id=actor.id,
        changed_at=clock.now(),
    )
    audit.record(
        "member.status_changed",
        actor=actor,
        subject=member,
        details={"from": from_status, "to": to_status, "change_id": change.pk},
    )
    webhooks.queue_event(
        "member.status_changed",
        {"member": member.number, "from": from_status, "to": to_status},
        key=f"member.status_changed:{change.pk}",
    )
    return change


def _check(member: Member, status: str, reason: str, until: dt.datetime | None) -> tuple[str, str]:
    errors = control_character_errors({"status": status, "reason": reason})
    if errors:
        raise failed(errors)
    reason = (reason or "").strip()
    if status not in TARGETS:
        errors.append(
            FieldError("status", "invalid_status", _("Status must be active, frozen or cancelled."))
        )
    if not reason:
        errors.append(FieldError("reason", "required", _("A reason is required.")))
    elif len(reason) > REASON_MAX:
        errors.append(
            FieldError("reason", "too_long", _("At most %(n)d characters.") % {"n": REASON_MAX})
        )
    if until is not None:
        if status != Status.FROZEN:
            errors.append(
                FieldError("until", "not_allowed", _("Only a freeze can have an end time."))
            )
        elif until <= clock.now():
            errors.append(FieldError("until", "until_in_past", _("The end time is in the past.")))
    if errors:
        raise failed(errors)
    if member.status == Status.CANCELLED:
        raise Conflict(
            _("The member is cancelled; cancellation is final."), code="member_cancelled"
        )
    if (
        status == Status.ACTIVE
        and member.phone_verified_at is None
        and member.status == Status.PENDING
    ):
        raise Conflict(_("The member has not verified the phone yet."), code="phone_not_verified")
    if status == member.status and not (status == Status.FROZEN and until != member.frozen_until):
        raise Conflict(
            _("The member is already %(status)s.") % {"status": status}, code="status_unchanged"
        )
    return status, reason


def _display_time(moment: dt.datetime | None) -> str:
    return clock.local(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


def change_status(
    member: Member,
    status: str,
    reason: str,
    actor: audit.Actor,
    until: dt.datetime | None = None,
) -> Member:
    """Freeze (optionally until a time), unfreeze or cancel a member, with reason and actor.

    Unfreezing a member who never verified the phone returns them to ``pending``, not
    ``active``: verification is what activates an account (REG-6).
    """
    if until is not None and timezone.is_naive(until):
        until = timezone.make_aware(until)  # a time without an offset is local time
    with transaction.atomic():
        member = Member.objects.select_for_update().select_related("user").get(pk=member.pk)
        status, reason = _check(member, status, reason, until)
        if status == Status.ACTIVE and member.phone_verified_at is None:
            status = Status.PENDING
        transition(member, status, reason=reason, actor=actor, until=until)
        queue_notice(
            template="status_changed",
            member=member,
            channels=member_channels(member),
            context={
                "status": status,
                "reason": reason,
                "until": _display_time(member.frozen_until),
            },
        )
    return member


def unfreeze_expired(*, now: dt.datetime | None = None) -> int:
    """Unfreeze every member whose freeze has ended; returns how many. Safe to run twice.

    The candidates come from one indexed query; each is re-read under a row lock in its own
    transaction, so a member unfrozen (or changed) meanwhile is skipped, not changed twice.
    """
    moment = now or clock.now()
    ids = list(
        Member.objects.filter(status=Status.FROZEN, frozen_until__lte=moment).values_list(
            "pk", flat=True
        )
    )
    done = 0
    for member_id in ids:
        with transaction.atomic():
            member = (
                Member.objects.select_for_update()
                .select_related("user")
                .filter(pk=member_id, status=Status.FROZEN, frozen_until__lte=moment)
                .first()
            )
            if member is None:
                continue
            target = Status.ACTIVE if member.phone_verified_at else Status.PENDING
            reason = "Freeze ended"
            transition(member, target, reason=reason, actor=audit.Actor.system())
            queue_notice(
                template="status_changed",
                member=member,
                channels=member_channels(member),
                context={"status": target, "reason": reason, "until": ""},
            )
            done += 1
    return done
