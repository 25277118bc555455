"""Member tiers between evaluations (TIER-2, TIER-3, TIER-4, TIER-6).

- ``upgrade_if_qualified``: a member who qualifies for a higher tier rises at once (after a
  paid order, an activity, a referral). Only upward: a downgrade waits for the periodic
  evaluation (``patron.loyalty.jobs.evaluate_tiers``).
- ``undo_if_unqualified``: an automatic upgrade made since the last evaluation that no
  longer holds because an order behind it was refunded or cancelled within its return
  window is undone at once, never below the tier the member held before those upgrades.
- ``tier_at``: the tier a member held at a moment (an order earns at the tier of its
  ``paid_at``, also when it arrives late).
- ``tier_status``: the tier, the window's figures, what is missing for the next tier and
  what keeps the current one at the next evaluation (``GET /members/{n}/tier``, the portal).
- ``set_tier``: staff set a tier by hand, with a reason, audited.

Every change is a ``TierChange`` row with the figures behind it; members and platforms are
told by the ``notify_tier_changes`` task (enqueued when the transaction commits), so a batch
that changes many tiers sends one task, not one per member.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict
from patron.loyalty import figures as window
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.figures import Figures
from patron.loyalty.models import Account, Order, TierChange
from patron.loyalty.rules import Rules
from patron.members.services._common import refuse

if TYPE_CHECKING:
    from patron.members.models import Member

REASON_MAX = 64
AUTOMATIC = (TierChange.Kind.UPGRADE, TierChange.Kind.UNDO)

# Inside ``batched_notices()`` tier changes do not enqueue the notice task one by one; the
# batch enqueues it once at the end if anything changed.
_batch: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "tier_notice_batch", default=None
)


def _notify_on_commit() -> None:
    pending = _batch.get()
    if pending is not None:
        pending.append(1)
        return
    from patron.core.tasks import enqueue_on_commit
    from patron.loyalty.tasks import notify_tier_changes

    enqueue_on_commit(notify_tier_changes)


@contextlib.contextmanager
def batched_notices() -> Iterator[None]:
    """Tier changes made inside enqueue the notice task once, when the transaction commits."""
    if _batch.get() is not None:
        yield
        return
    token = _batch.set([])
    try:
        yield
        changed = bool(_batch.get())
    finally:
        _batch.reset(token)
    if changed:
        _notify_on_commit()


def tier_at(member_id: int, moment: dt.datetime, *, current: str | None = None) -> str:
    """The tier the member held at ``moment``: the ``from_tier`` of the first change after it,
    or (no change since) the current tier."""
    later = (
        TierChange.objects.filter(member_id=member_id, changed_at__gt=moment)
        .order_by("changed_at", "id")
        .values_list("from_tier", flat=True)
        .first()
    )
    if later is not None:
        return later
    if current is None:
        current = (
            Account.objects.filter(pk=member_id).values_list("tier", flat=True).first()
            or program.current().tiers[0].code
        )
    return current


def _change(
    account: Account,
    to_tier: str,
    *,
    kind: str,
    reason: str,
    figures: Figures,
    rules: Rules,
    order: Order | None = None,
    key: str | None = None,
) -> TierChange:
    change = change_row(
        account,
        to_tier,
        kind=kind,
        reason=reason,
        figures=figures,
        rules=rules,
        order=order,
        key=key,
        now=clock.now(),
    )
    change.save(force_insert=True)
    account.save(update_fields=["tier", "tier_since", "updated_at"])
    _notify_on_commit()
    return change


def change_row(
    account: Account,
    to_tier: str,
    *,
    kind: str,
    reason: str,
    figures: Figures,
    rules: Rules,
    now: dt.datetime,
    order: Order | None = None,
    key: str | None = None,
) -> TierChange:
    """The unsaved ``TierChange`` moving ``account`` to ``to_tier``; the account (changed
    in memory, not saved) holds the new tier. Batch writers save both set-based and call
    ``tier_changed()`` once."""
    change = TierChange(
        member_id=account.pk,
        from_tier=account.tier,
        to_tier=to_tier,
        kind=kind,
        reason=reason[:REASON_MAX],
        spend=figures.spend,
        orders=figures.orders,
        loyalty=figures.loyalty,
        order=order,
        program_version=rules.version,
        key=key,
        changed_at=now,
    )
    account.tier = to_tier
    account.tier_since = now
    account.updated_at = now
    return change


def tier_changed() -> None:
    """A batch writer saved tier changes itself: have members and platforms told."""
    _notify_on_commit()


def qualified_upgrade(account: Account, figures: Figures, rules: Rules) -> str | None:
    """The higher tier ``figures`` reach, or None when they reach no higher than now."""
    best = rules.qualified_tier(figures.spend, figures.orders, figures.loyalty)
    return best.code if best.rank > rules.rank(account.tier) else None


def upgrade_if_qualified(
    account: Account,
    *,
    rules: Rules,
    at: dt.datetime,
    reason: str,
    order: Order | None = None,
    figures: Figures | None = None,
    key: str | None = None,
) -> TierChange | None:
    """Raise the member at once to the highest tier the window's figures at ``at`` reach
    (TIER-3). Call with the account locked (``ledger.lock_account``). ``figures`` may be
    given when the caller already computed them for ``at``."""
    if rules.rank(account.tier) >= len(rules.tiers) - 1:
        return None  # already at the top: nothing to compute
    figures = figures or window.for_member(account.pk, at, rules)
    best = qualified_upgrade(account, figures, rules)
    if best is None:
        return None
    return _change(
        account,
        best,
        kind=TierChange.Kind.UPGRADE,
        reason=reason,
        figures=figures,
        rules=rules,
        order=order,
        key=key,
    )


def undo_if_unqualified(
    account: Account,
    *,
    rules: Rules,
    at: dt.datetime,
    reason: str,
    order: Order | None = None,
    key: str | None = None,
) -> TierChange | None:
    """Undo automatic upgrades since the last evaluation that no longer hold (TIER-3).

    The caller decides that the refund or cancellation fell within the order's return
    window. Only upgrades made since the last periodic evaluation (and since the last
    change by staff or by the evaluation) are undone, and only when ``order`` was already
    known when one of them was made (it was "behind" it). The member falls to the higher
    of the tier held before those upgrades and the tier the figures still reach.
    """
    since = window.last_evaluation(at, rules)
    floor: str | None = None
    run: list[TierChange] = []
    for change in TierChange.objects.filter(member_id=account.pk, changed_at__gt=since).order_by(
        "changed_at", "id"
    ):
        if change.kind in AUTOMATIC:
            run.append(change)
        else:  # set by staff or by the evaluation: a floor automatic undos never cross
            floor, run = change.to_tier, []
    upgrades = [c for c in run if c.kind == TierChange.Kind.UPGRADE]
    if not upgrades:
        return None
    if order is not None and not any(c.changed_at >= order.created_at for c in upgrades):
        return None  # the order came after the upgrades: it was not behind them
    if floor is None:
        floor = run[0].from_tier
    figures = window.for_member(account.pk, at, rules)
    qualified = rules.qualified_tier(figures.spend, figures.orders, figures.loyalty)
    target = qualified if qualified.rank >= rules.rank(floor) else rules.tier(floor)
    if target.rank >= rules.rank(account.tier):
        return None
    return _change(
        account,
        target.code,
        kind=TierChange.Kind.UNDO,
        reason=reason,
        figures=figures,
        rules=rules,
        order=order,
        key=key,
    )


def _missing(missing: dict[str, Any]) -> dict[str, Any]:
    return {
        "spend": Decimal(missing["spend"]).quantize(Decimal("0.01")),
        "orders": int(missing["orders"]),
        "loyalty": int(missing["loyalty"]),
    }


def tier_status(member: Member) -> dict[str, Any]:
    """What the member has and needs (TIER-6, ``GET /members/{number}/tier``):

    ``{tier, name, name_en, since, window: {spend, orders, loyalty}, next: {tier, name,
    name_en, missing: {spend, orders, loyalty}} | None, retain: {until, missing}}``.

    ``retain`` counts only what stays inside the window at the next evaluation (orders and
    activities already known): what the member must still add before ``until`` to keep the
    tier. The base tier needs nothing to keep.
    """
    rules = program.current()
    now = clock.now()
    account = Account.objects.filter(pk=member.pk).first()
    code = account.tier if account else rules.tiers[0].code
    tier = rules.tier(code)
    since = account.tier_since if account else member.created_at
    figures = window.for_member(member.pk, now, rules)
    upcoming = rules.next_tier(tier.code)
    until = window.next_evaluation(now, rules)
    kept = window.for_member(member.pk, until, rules)
    return {
        "tier": tier.code,
        "name": tier.name,
        "name_en": tier.name_en,
        "since": since,
        "window": {"spend": figures.spend, "orders": figures.orders, "loyalty": figures.loyalty},
        "next": None
        if upcoming is None
        else {
            "tier": upcoming.code,
            "name": upcoming.name,
            "name_en": upcoming.name_en,
            "missing": _missing(upcoming.missing(figures.spend, figures.orders, figures.loyalty)),
        },
        "retain": {
            "until": until,
            "missing": _missing(tier.missing(kept.spend, kept.orders, kept.loyalty)),
        },
    }


def set_tier(member: Member, tier: str, *, reason: str, actor: Actor) -> TierChange:
    """Staff set a member's tier (kind ``manual``), with a reason, audited. It stands until
    the next evaluation; automatic undos never go below it."""
    rules = program.current()
    reason = (reason or "").strip()
    if tier not in {t.code for t in rules.tiers}:
        raise refuse("tier", "unknown_tier", _("No tier has this code."))
    if not reason:
        raise refuse("reason", "required", _("Give a reason."))
    if len(reason) > REASON_MAX:
        raise refuse("reason", "too_long", _("At most %(n)d characters.") % {"n": REASON_MAX})
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        if account.tier == tier:
            raise Conflict(_("The member already has this tier."), code="tier_unchanged")
        previous = account.tier
        figures = window.for_member(member.pk, clock.now(), rules)
        change = _change(
            account,
            tier,
            kind=TierChange.Kind.MANUAL,
            reason=reason,
            figures=figures,
            rules=rules,
        )
        audit.record(
            "loyalty.tier_set",
            actor=actor,
            subject_type="member",
            subject_id=member.pk,
            details={"from": previous, "to": tier, "tier_change": change.pk},
        )
    return change
