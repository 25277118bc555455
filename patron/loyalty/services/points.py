"""Staff changes to a member's points (PTS-2, PTS-5, PTS-7): manual adjustments, expiry
extensions and feedback rewards.

Each is a staff (or staff-scoped API key) action: a reason is required, the change is a
ledger entry with a database-unique key (``adjust:<key>``, ``feedback:<key>``) so a retried
request changes the balance once, and an audit event is written in the same transaction.
Audit details carry ids and figures only; the reason lives on the ledger entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict, FieldError
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit
from patron.loyalty.models import Entry, Lot
from patron.members.services._common import control_character_errors, failed, refuse
from patron.notify import services as notices
from patron.notify import webhooks

if TYPE_CHECKING:
    from patron.members.models import Member

POINTS_MAX = 10_000_000
REASON_MAX = 200
EXTENSION_MONTHS_MAX = 60
ID_MAX = 2**63 - 1


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


def _reason(reason: object, errors: list[FieldError]) -> str:
    if not isinstance(reason, str) or not reason.strip():
        errors.append(FieldError("reason", "required", _("Give a reason.")))
        return ""
    reason = reason.strip()
    if len(reason) > REASON_MAX:
        errors.append(
            FieldError("reason", "too_long", _("At most %(n)s characters.") % {"n": REASON_MAX})
        )
    errors.extend(control_character_errors({"reason": reason}))
    return reason


def _points(points: object, errors: list[FieldError], *, positive: bool) -> int:
    lo = 1 if positive else -POINTS_MAX
    if (
        isinstance(points, bool)
        or not isinstance(points, int)
        or not lo <= points <= POINTS_MAX
        or points == 0
    ):
        errors.append(
            FieldError(
                "points",
                "invalid",
                _("Enter a whole number from %(lo)s to %(hi)s, not zero.")
                % {"lo": lo, "hi": POINTS_MAX},
            )
        )
        return 0
    return points


def _full_key(prefix: str, key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 180:
        raise refuse("key", "invalid", _("An idempotency key has 1 to 180 characters."))
    return f"{prefix}:{key}"


def _replay(entry: Entry, member: Member, points: int) -> Entry:
    if entry.member_id != member.pk or entry.points != points:
        raise Conflict(
            _("This Idempotency-Key was used for another change."), code="idempotency_key_reused"
        )
    return entry


def _refuse_closed(member: Member) -> None:
    if member.status == member.Status.CANCELLED:
        raise Conflict(_("This membership is cancelled."), code="member_not_active")


def _credit(
    member: Member,
    points: int,
    *,
    source: str,
    key: str,
    reason: str,
    actor: Actor,
    action: str,
) -> Entry:
    """A new available lot of ``points`` (repaying any debt first), audited."""
    rules = program.current()
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        first = ledger.existing(key)
        if first is not None:
            return _replay(first, member, points)
        lot = ledger.credit(
            account,
            Credit(
                points=points,
                source=source,
                key=key,
                rule={"version": rules.version, "source": source},
                reason=reason,
            ),
            rules=rules,
            actor=actor,
        )
        entry = Entry.objects.get(key=key)
        audit.record(
            action,
            actor=actor,
            subject=member,
            details={"entry_id": entry.pk, "lot_id": lot.pk, "points": points},
        )
        webhooks.queue_event(
            "points.earned",
            {
                "member": member.number,
                "source": source,
                "points": points,
                "entry_id": entry.pk,
                "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
            },
            key=f"points.earned:{entry.pk}",
        )
        _notify(member, entry, points)
        return entry


def _notify(member: Member, entry: Entry, points: int) -> None:
    notices.queue_notice(
        template="points_adjusted",
        member=member,
        channels=("inapp",),
        context={"points": abs(points), "added": points > 0},
        dedupe_key=f"points_adjusted:{entry.pk}",
    )


def adjust(member: Member, points: int, *, reason: str, key: str, actor: Actor) -> Entry:
    """Add (``points`` > 0: a new adjustment lot, available at once) or remove (< 0: spent
    from the lots nearest to expiry, never beyond the available balance: 409
    ``insufficient_points``) points, with a reason. A repeat with the same key returns the
    first entry."""
    errors: list[FieldError] = []
    points = _points(points, errors, positive=False)
    reason = _reason(reason, errors)
    if errors:
        raise failed(errors)
    full_key = _full_key("adjust", key)
    first = ledger.existing(full_key)
    if first is not None:
        return _replay(first, member, points)
    _refuse_closed(member)
    try:
        if points > 0:
            return _credit(
                member,
                points,
                source=Lot.Source.ADJUSTMENT,
                key=full_key,
                reason=reason,
                actor=actor,
                action="points.adjusted",
            )
        with transaction.atomic():
            account = ledger.lock_account(member.pk)
            first = ledger.existing(full_key)
            if first is not None:
                return _replay(first, member, points)
            entry = ledger.spend(
                account, -points, key=full_key, actor=actor, kind=Entry.Kind.ADJUST, reason=reason
            )
            audit.record(
                "points.adjusted",
                actor=actor,
                subject=member,
                details={"entry_id": entry.pk, "points": points},
            )
            _notify(member, entry, points)
            return entry
    except IntegrityError:
        first = ledger.existing(full_key)
        if first is None:
            raise
        return _replay(first, member, points)


def credit_feedback(member: Member, points: int, *, reason: str, key: str, actor: Actor) -> Entry:
    """Reward valuable feedback with points (PTS-2): a ``feedback`` lot, available at once."""
    errors: list[FieldError] = []
    points = _points(points, errors, positive=True)
    reason = _reason(reason, errors)
    if errors:
        raise failed(errors)
    full_key = _full_key("feedback", key)
    first = ledger.existing(full_key)
    if first is not None:
        return _replay(first, member, points)
    _refuse_closed(member)
    try:
        return _credit(
            member,
            points,
            source=Lot.Source.FEEDBACK,
            key=full_key,
            reason=reason,
            actor=actor,
            action="points.feedback_credited",
        )
    except IntegrityError:
        first = ledger.existing(full_key)
        if first is None:
            raise
        return _replay(first, member, points)


def extend_expiry(
    member: Member,
    *,
    months: int,
    reason: str,
    actor: Actor,
    lot_ids: list[int] | None = None,
) -> int:
    """Move the expiry of the member's available lots (all of them, or ``lot_ids``) by
    ``months``; returns how many lots moved. Lots that are not the member's, or not
    available with points left, are refused (409 ``lot_not_available``) and nothing moves."""
    errors: list[FieldError] = []
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 60:
        errors.append(
            FieldError(
                "months",
                "invalid",
                _("Enter a whole number of months from 1 to %(n)s.") % {"n": EXTENSION_MONTHS_MAX},
            )
        )
    reason = _reason(reason, errors)
    if lot_ids is not None and (
        not isinstance(lot_ids, list) or not lot_ids or not all(_is_id(i) for i in lot_ids)
    ):
        errors.append(FieldError("lot_ids", "invalid", _("Give the ids of the lots to extend.")))
    if errors:
        raise failed(errors)
    rules = program.current()
    with transaction.atomic():
        ledger.lock_account(member.pk)
        lots = Lot.objects.select_for_update().filter(
            member_id=member.pk,
            status=Lot.Status.AVAILABLE,
            remaining__gt=0,
            expires_at__gt=clock.now(),
        )
        if lot_ids is not None:
            lots = lots.filter(pk__in=set(lot_ids))
        chosen = list(lots.order_by("expires_at", "id"))
        if lot_ids is not None and len(chosen) != len(set(lot_ids)):
            raise Conflict(
                _("Only this member's available points can be extended."),
                code="lot_not_available",
            )
        for lot in chosen:
            ledger.extend(lot, months, rules=rules)
        if chosen:
            audit.record(
                "points.expiry_extended",
                actor=actor,
                subject=member,
                # No row but this event holds an extension's reason (lots keep no text).
                details={"lots": [lot.pk for lot in chosen], "months": months, "reason": reason},
            )
    return len(chosen)
