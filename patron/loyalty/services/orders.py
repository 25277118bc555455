"""Order events: earning, delivery, refunds and cancellations (PTS-1, PTS-3, TIER-3).

A platform sends an order's *current state* (``PUT /orders/{order_id}``); Patron works out
what changed since the last state it recorded and applies exactly that, once:

- **paid**: the order earns ``floor(amount x tier rate x category multiplier)`` purchase
  points at the tier the member held when the order was paid (``tiers.tier_at``), plus the
  tier's cash-back rebate ``floor(amount x rebate rate x points per CNY)``, each a pending
  lot (``Lot.rule`` keeps the rule). The member is upgraded at once if the order makes them
  qualify (``tiers.upgrade_if_qualified``).
- **delivered**: the return window closes ``return_window_days`` after delivery
  (``Order.final_at``); the pending lots are released then (by the release job, or at once
  when the window has already closed: late events, imports).
- **refunded** (``refunded_amount`` grows) / **cancelled** (only from paid): each lot is
  brought down to ``floor(net x its own rule's factor)``: pending points are voided,
  available points clawed back, points already spent become debt (``ledger.take_back``).
  Within the return window an upgrade the order was behind is undone if it no longer holds
  (``tiers.undo_if_unqualified``).

States are ordered paid < delivered < refunded (growing amount) < cancelled; the same state
again changes nothing and answers the same; an older state is 409 ``stale_order_state``; an
order seen for the first time may arrive in any state and its whole history is applied at
once. ``member``, ``amount``, ``currency``, ``category``, ``paid_at`` (and ``delivered_at``
once known) never change: another value is 409 ``order_conflict``.

Every write runs in one transaction that locks the member's account first, then the order
row. Ledger entries carry keys ``order:<order_id>:<status>:<refunded>:<lot kind>``, unique
in the database.

``apply_orders`` applies up to ``BATCH_MAX`` orders and answers item by item. Orders it has
not seen before are written set-based (a few statements for the whole batch, with exactly
the rows the one-by-one path writes); changes to known orders go one by one, each in its own
savepoint. Should a set-based write fail, the items are retried one by one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Q, Sum
from django.utils.translation import gettext as _

from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import (
    Conflict,
    FieldError,
    NotFound,
    PatronError,
    ValidationFailed,
)
from patron.loyalty import earning, ledger, tiers
from patron.loyalty import figures as window
from patron.loyalty import rules as program
from patron.loyalty.figures import Figures
from patron.loyalty.ledger import Credit
from patron.loyalty.models import (
    Account,
    Allocation,
    Entry,
    Lot,
    LoyaltyEvent,
    Order,
    OrderState,
    TierChange,
)
from patron.loyalty.rules import Rules
from patron.loyalty.services import paid_order
from patron.members.models import Member
from patron.members.services._common import failed, refuse
from patron.notify import webhooks

PAID = Order.Status.PAID
DELIVERED = Order.Status.DELIVERED
REFUNDED = Order.Status.REFUNDED
CANCELLED = Order.Status.CANCELLED
STATUSES = (PAID, DELIVERED, REFUNDED, CANCELLED)
RANK = {PAID: 0, DELIVERED: 1, REFUNDED: 2, CANCELLED: 3}

BATCH_MAX = 1000
AMOUNT_MAX = Decimal("10000000.00")  # ten million CNY: above it, a typo rather than an order
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
CLOCK_SKEW = dt.timedelta(minutes=5)  # how far in the future a platform's clock may be
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
STORE_MAX = 64
CURRENCIES = ("CNY",)
KINDS = (Lot.Source.PURCHASE, Lot.Source.REBATE)


# --- Input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderInput:
    """One order state, checked field by field (``parse``)."""

    order_id: str
    member: str
    amount: Decimal
    currency: str
    category: str
    status: str
    paid_at: dt.datetime
    delivered_at: dt.datetime | None
    refunded_amount: Decimal
    store: str

    @property
    def position(self) -> tuple[int, Decimal]:
        return _position(self.status, self.refunded_amount)


def _position(status: str, refunded: Decimal) -> tuple[int, Decimal]:
    return RANK[status], (refunded if status == REFUNDED else ZERO)


def _money(value: Any, name: str, errors: list[FieldError]) -> Decimal | None:
    if isinstance(value, bool):
        value = "x"
    try:
        number = Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value).strip())
        if not number.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError, TypeError):
        errors.append(FieldError(name, "invalid", _("Enter an amount such as 99.50.")))
        return None
    if abs(number) > AMOUNT_MAX:
        errors.append(
            FieldError(name, "too_large", _("At most %(max)s CNY per order.") % {"max": AMOUNT_MAX})
        )
        return None
    if number != number.quantize(CENT):
        errors.append(FieldError(name, "invalid", _("Use at most two decimal places.")))
        return None
    return number.quantize(CENT)


def _moment(value: Any, name: str, rules: Rules, errors: list[FieldError]) -> dt.datetime | None:
    """An aware datetime from a datetime or ISO 8601 text; without an offset it is read in
    the program's time zone."""
    moment: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and 10 <= len(value.strip()) <= 40:
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        errors.append(
            FieldError(name, "invalid", _("Enter a time such as 2026-11-22T10:00:00+08:00."))
        )
        return None
    try:
        if moment.tzinfo is None or moment.utcoffset() is None:
            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(rules.time_zone))
        moment.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        errors.append(FieldError(name, "invalid", _("This time is out of range.")))
        return None
    return moment


def _text(data: dict, name: str) -> Any:
    value = data.get(name)
    return value.strip() if isinstance(value, str) else value


def parse(data: Any, rules: Rules, now: dt.datetime) -> OrderInput:
    """The order state in ``data``, or ``ValidationFailed`` naming every bad field (422)."""
    if not isinstance(data, dict):
        raise refuse("body", "invalid", _("An order is a JSON object."))
    errors: list[FieldError] = []

    def required(name: str) -> Any:
        value = _text(data, name)
        if value is None or value == "":
            errors.append(FieldError(name, "required", _("This field is required.")))
            return None
        return value

    order_id = required("order_id")
    if order_id is not None and not (isinstance(order_id, str) and ORDER_ID.fullmatch(order_id)):
        errors.append(
            FieldError(
                "order_id",
                "invalid",
                _("1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit."),
            )
        )
        order_id = None
    member = required("member")
    if member is not None and not isinstance(member, str | int):
        errors.append(FieldError("member", "invalid", _("Give the member number.")))
        member = None
    amount = required("amount")
    if amount is not None:
        amount = _money(amount, "amount", errors)
        if amount is not None and amount <= 0:
            errors.append(FieldError("amount", "must_be_positive", _("Enter an amount above 0.")))
            amount = None
    currency = required("currency")
    if currency is not None and (not isinstance(currency, str) or currency not in CURRENCIES):
        errors.append(
            FieldError("currency", "unsupported_currency", _("Only CNY is supported for now."))
        )
        currency = None
    category = required("category")
    if category is not None and (not isinstance(category, str) or category not in rules.categories):
        errors.append(
            FieldError(
                "category",
                "unknown_category",
                _("Unknown category; the program knows: %(names)s.")
                % {"names": ", ".join(sorted(rules.categories))},
            )
        )
        category = None
    status = required("status")
    if status is not None and status not in STATUSES:
        errors.append(
            FieldError("status", "invalid_status", _("Use paid, delivered, refunded or cancelled."))
        )
        status = None

    refunded = _text(data, "refunded_amount")
    if refunded is None or refunded == "":
        refunded = ZERO
    else:
        refunded = _money(refunded, "refunded_amount", errors)
        if refunded is not None and refunded < 0:
            errors.append(FieldError("refunded_amount", "invalid", _("Enter zero or more.")))
            refunded = None
    if refunded is not None and amount is not None and refunded > amount:
        errors.append(
            FieldError(
                "refunded_amount",
                "refund_exceeds_amount",
                _("The refunded amount cannot exceed the amount."),
            )
        )
        refunded = None
    if refunded is not None and status == REFUNDED and refunded == 0:
        errors.append(
            FieldError(
                "refunded_amount",
                "refund_required",
                _("A refunded order needs the refunded amount (above 0)."),
            )
        )
    if refunded is not None and status in (PAID, DELIVERED) and refunded > 0:
        errors.append(
            FieldError(
                "refunded_amount",
                "refund_needs_refunded_status",
                _("Send status refunded with a refunded amount."),
            )
        )

    latest = now + CLOCK_SKEW
    paid_at = required("paid_at")
    if paid_at is not None:
        paid_at = _moment(paid_at, "paid_at", rules, errors)
    if paid_at is not None and not EARLIEST <= paid_at <= latest:
        errors.append(FieldError("paid_at", "out_of_range", _("This time is in the future.")))
        paid_at = None
    delivered_at = _text(data, "delivered_at")
    if delivered_at in (None, ""):
        delivered_at = None
        if status == DELIVERED:
            errors.append(
                FieldError(
                    "delivered_at", "required", _("A delivered order needs its delivery time.")
                )
            )
    else:
        delivered_at = _moment(delivered_at, "delivered_at", rules, errors)
        if delivered_at is not None and delivered_at > latest:
            errors.append(
                FieldError("delivered_at", "out_of_range", _("This time is in the future."))
            )
        elif delivered_at is not None and paid_at is not None and delivered_at < paid_at:
            errors.append(
                FieldError("delivered_at", "before_paid", _("Delivery cannot come before payment."))
            )
        elif delivered_at is not None and status == PAID:
            errors.append(
                FieldError(
                    "delivered_at",
                    "invalid_for_status",
                    _("A paid order has no delivery time yet; send status delivered."),
                )
            )
    store = _text(data, "store")
    if store is None:
        store = ""
    elif not isinstance(store, str) or len(store) > STORE_MAX:
        errors.append(
            FieldError("store", "invalid", _("At most %(n)d characters.") % {"n": STORE_MAX})
        )
    elif any(ord(c) < 32 or ord(c) == 127 for c in store):
        errors.append(
            FieldError("store", "invalid_characters", _("This field contains invalid characters."))
        )
    if errors:
        raise failed(errors)
    if status == CANCELLED:
        refunded = amount  # a cancelled order returns the whole payment
    return OrderInput(
        order_id=order_id,
        member=str(member),
        amount=amount,
        currency=currency,
        category=category,
        status=status,
        paid_at=paid_at,
        delivered_at=delivered_at,
        refunded_amount=refunded,
        store=store,
    )


# --- Result -----------------------------------------------------------------------------


@dataclass
class OrderResult:
    """What an order state did, and where the order and the member stand now.

    ``points``: ``earned`` (all the order's lots), ``pending`` (not yet available),
    ``available`` (made available and not taken back; some may since have been spent or
    have expired), ``clawed_back`` (voided while pending or clawed back after)."""

    order_id: str
    member: str
    status: str
    refunded_amount: Decimal
    points: dict[str, int]
    tier: str
    changed: bool
    tier_change: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "member": self.member,
            "status": self.status,
            "refunded_amount": self.refunded_amount,
            "points": dict(self.points),
            "tier": self.tier,
            "changed": self.changed,
            "tier_change": self.tier_change,
        }


def _points(lots: Iterable[Lot]) -> dict[str, int]:
    return _tally((lot.amount, lot.clawed, lot.status) for lot in lots)


def _tally(lots: Iterable[tuple[int, int, str]]) -> dict[str, int]:
    """An order's points from its lots' ``(amount, clawed, status)``: the model instances
    of the one-by-one path and the planned rows of a batch alike."""
    points = {"earned": 0, "pending": 0, "available": 0, "clawed_back": 0}
    for amount, clawed, status in lots:
        points["earned"] += amount
        points["clawed_back"] += clawed
        if status == Lot.Status.PENDING:
            points["pending"] += amount - clawed
        elif status in (Lot.Status.AVAILABLE, Lot.Status.EXPIRED):
            points["available"] += amount - clawed
    return points


def _change_out(change: TierChange | None) -> dict[str, str] | None:
    if change is None:
        return None
    return {
        "from_tier": change.from_tier,
        "to_tier": change.to_tier,
        "kind": change.kind,
        "reason": change.reason,
    }


# --- The one-by-one path ----------------------------------------------------------------


@dataclass
class _Context:
    rules: Rules
    now: dt.datetime
    actor: Actor
    number: str
    member_status: str
    tier_change: TierChange | None = None


def _key(order_id: str, status: str, refunded: Decimal, kind: str) -> str:
    return f"order:{order_id}:{status}:{refunded:.2f}:{kind}"


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def target_points(lot: Lot, order_amount: Decimal, net: Decimal) -> int:
    """What the lot is worth to its order at ``net`` paid: ``floor(net x the factor of the
    rule that earned it)``, never above what it earned."""
    if net <= 0:
        return 0
    rule = lot.rule or {}
    try:
        if lot.source == Lot.Source.REBATE:
            factor = Decimal(str(rule["rebate_rate"])) * Decimal(str(rule["points_per_cny"]))
        else:
            factor = Decimal(str(rule["rate"])) * Decimal(str(rule["multiplier"]))
        value = _floor(net * factor)
    except (KeyError, InvalidOperation, TypeError):
        value = _floor(Decimal(lot.amount) * net / order_amount)  # pro rata (no rule kept)
    return max(0, min(value, lot.amount))


def _member(number: str) -> tuple[int, str]:
    row = Member.objects.filter(number=number).values_list("id", "status").first()
    if row is None:
        raise NotFound(_("No member has this number."), code="member_not_found")
    return row


def _member_cancelled() -> Conflict:
    return Conflict(
        _("This membership is cancelled; it earns no more points."), code="member_cancelled"
    )


def apply_order(data: dict, *, actor: Actor) -> OrderResult:
    """Apply one order state (``PUT /orders/{order_id}``); see the module docstring."""
    rules = program.current()
    item = parse(data, rules, clock.now())
    with transaction.atomic():
        account, member_status = _lock_member(item.member)
        ctx = _Context(rules, clock.now(), actor, item.member, member_status)
        return _apply_locked(ctx, account, item)


def _lock_member(number: str) -> tuple[Account, str]:
    """The member's account, locked, and the member's status: one statement when the
    account exists (the order path's first and only lock), else ``ledger.lock_account``."""
    found = paid_order.lock_account(number)
    if found is not None:
        return found
    member_id, status = _member(number)
    return ledger.lock_account(member_id), status


def _apply_locked(ctx: _Context, account: Account, item: OrderInput) -> OrderResult:
    """Apply ``item`` with the member's account locked. A new order is inserted straight
    away (``ON CONFLICT DO NOTHING``: no lookup first, the common case); when the id is
    taken the recorded order is locked and the state compared with it."""
    if item.status == CANCELLED and item.delivered_at is not None:
        raise _cannot_cancel()
    if ctx.member_status != Member.Status.CANCELLED:
        order = _new_order(ctx, account, item)
        if paid_order.applies(item.status):
            written = paid_order.write(
                account,
                order,
                rules=ctx.rules,
                actor=ctx.actor,
                at=max(ctx.now, item.paid_at),
                entry_key=lambda kind: _key(item.order_id, PAID, ZERO, kind),
            )
            if written is not None:
                return _paid_in_one(ctx, account, written)
        elif _insert_rows(Order, [order], unique="order_id"):
            return _first_sight(ctx, account, item, order)
    order = Order.objects.select_for_update().filter(order_id=item.order_id).first()
    if order is None:
        if ctx.member_status == Member.Status.CANCELLED:
            raise _member_cancelled()
        raise _retry()
    return _next_state(ctx, account, item, order)


def _new_order(ctx: _Context, account: Account, item: OrderInput) -> Order:
    """The new order's row, unsaved, with the tier the member held when it was paid."""
    if item.paid_at >= account.tier_since:
        tier = account.tier  # no tier change since it was paid (each one sets tier_since)
    else:
        tier = tiers.tier_at(account.pk, item.paid_at, current=account.tier)
    return Order(
        order_id=item.order_id,
        member_id=account.pk,
        amount=item.amount,
        currency=item.currency,
        category=item.category,
        store=item.store,
        status=item.status,
        refunded_amount=item.refunded_amount,
        paid_at=item.paid_at,
        delivered_at=item.delivered_at,
        final_at=_final_at(item.delivered_at, ctx.rules),
        tier_at_paid=tier,
        created_at=ctx.now,
        updated_at=ctx.now,
    )


def _conflict(fields: Sequence[str]) -> Conflict:
    return Conflict(
        _("This order was first sent with other values; they cannot change."),
        code="order_conflict",
        errors=[
            FieldError(name, "immutable", _("Differs from the value first sent."))
            for name in fields
        ],
    )


def _result(ctx: _Context, account: Account, order: Order, lots, changed: bool) -> OrderResult:
    return OrderResult(
        order_id=order.order_id,
        member=ctx.number,
        status=order.status,
        refunded_amount=order.refunded_amount,
        points=_points(lots),
        tier=account.tier,
        changed=changed,
        tier_change=_change_out(ctx.tier_change),
    )


def _first_sight(ctx: _Context, account: Account, item: OrderInput, order: Order) -> OrderResult:
    """An order seen for the first time (just inserted), in any state: its whole history
    at once."""
    OrderState.objects.create(
        order=order, status=item.status, refunded_amount=item.refunded_amount, received_at=ctx.now
    )
    lots = _earn(ctx, account, order, order.tier_at_paid)
    if order.final_at is not None and order.final_at <= ctx.now:
        _release(ctx, account, order, lots)
    if item.status in (REFUNDED, CANCELLED):
        _refund(ctx, account, order, item, lots)
    if item.status != CANCELLED and item.refunded_amount < item.amount:
        figures = _figures_if_rising(account, max(ctx.now, item.paid_at), ctx.rules)
        if figures is not None:
            _upgrade_at_once(ctx, account, order, figures)
    return _result(ctx, account, order, lots, changed=True)


def _paid_in_one(ctx: _Context, account: Account, written: paid_order.Written) -> OrderResult:
    """A new paid order written in one statement (``paid_order``): what ``_first_sight``
    does after its writes."""
    order = written.order
    for lot in written.lots:
        _earned_event(
            ctx.number,
            order.order_id,
            lot.amount,
            lot.source,
            _key(order.order_id, PAID, ZERO, lot.source),
        )
    _upgrade_at_once(ctx, account, order, written.figures)
    return _result(ctx, account, order, written.lots, changed=True)


def _upgrade_at_once(ctx: _Context, account: Account, order: Order, figures: Figures) -> None:
    """TIER-3: the figures with ``order`` in lift the member at once (or change nothing)."""
    ctx.tier_change = tiers.upgrade_if_qualified(
        account,
        rules=ctx.rules,
        at=max(ctx.now, order.paid_at),
        reason="order_paid",
        order=order,
        figures=figures,
        key=f"upgrade:{order.order_id}",
    )


def _figures_if_rising(account: Account, at: dt.datetime, rules: Rules) -> Figures | None:
    """The window's figures when they may lift the member above the current tier, else
    None; the loyalty score is counted only when it can make the difference."""
    return figures_for([account.pk], at, rules, tiers_now={account.pk: account.tier}).get(
        account.pk
    )


def _final_at(delivered_at: dt.datetime | None, rules: Rules) -> dt.datetime | None:
    """When the return window closes: ``return_window_days`` after delivery."""
    if delivered_at is None:
        return None
    return delivered_at + dt.timedelta(days=rules.return_window_days)


def _cannot_cancel() -> Conflict:
    return Conflict(
        _("Only a paid order that was not delivered can be cancelled; send a refund."),
        code="invalid_transition",
    )


def _next_state(ctx: _Context, account: Account, item: OrderInput, order: Order) -> OrderResult:
    """A known order: apply what changed since the state recorded."""
    differs = [
        name
        for name, theirs, ours in (
            ("member", account.pk, order.member_id),
            ("amount", item.amount, order.amount),
            ("currency", item.currency, order.currency),
            ("category", item.category, order.category),
            ("paid_at", item.paid_at, order.paid_at),
        )
        if theirs != ours
    ]
    if (
        item.delivered_at is not None
        and order.delivered_at is not None
        and item.delivered_at != order.delivered_at
    ):
        differs.append("delivered_at")
    if differs:
        raise _conflict(differs)
    lots = list(Lot.objects.filter(order=order).order_by("id"))
    current = _position(order.status, order.refunded_amount)
    newly_delivered = item.delivered_at is not None and order.delivered_at is None
    if item.position == current and not newly_delivered:
        return _result(ctx, account, order, lots, changed=False)
    if item.status == CANCELLED and order.status != CANCELLED:
        if order.status != PAID or order.delivered_at is not None or newly_delivered:
            raise _cannot_cancel()
    elif item.position < current:
        raise Conflict(
            _("This order is already in a later state (%(status)s).") % {"status": order.status},
            code="stale_order_state",
        )
    if newly_delivered:
        _deliver(ctx, account, order, item.delivered_at, lots)
    refund = item.position != current and item.status in (REFUNDED, CANCELLED)
    # Judged before anything moves: did the refund come within the return window?
    within_window = order.final_at is None or ctx.now < order.final_at
    if refund:
        _refund(ctx, account, order, item, lots)
    order.status = item.status
    order.refunded_amount = item.refunded_amount
    order.updated_at = ctx.now
    order.save(
        update_fields=["status", "refunded_amount", "delivered_at", "final_at", "updated_at"]
    )
    if item.position != current:
        OrderState.objects.create(
            order=order,
            status=item.status,
            refunded_amount=item.refunded_amount,
            received_at=ctx.now,
        )
    if refund and within_window:
        ctx.tier_change = tiers.undo_if_unqualified(
            account,
            rules=ctx.rules,
            at=ctx.now,
            reason=_reason(item.status),
            order=order,
            key=f"undo:{order.order_id}:{item.status}:{item.refunded_amount:.2f}",
        )
    return _result(ctx, account, order, lots, changed=True)


def _reason(status: str) -> str:
    return "order_cancelled" if status == CANCELLED else "order_refunded"


def _earn(ctx: _Context, account: Account, order: Order, tier: str) -> list[Lot]:
    rules = ctx.rules
    purchase, rebate = earning.points_for(order.amount, tier, order.category, rules)
    rule = earning.rule_for(tier, order.category, rules)
    lots: list[Lot] = []
    for kind, points in ((Lot.Source.PURCHASE, purchase), (Lot.Source.REBATE, rebate)):
        if points <= 0:
            continue
        key = _key(order.order_id, PAID, ZERO, kind)
        lot = ledger.credit(
            account,
            Credit(
                points=points,
                source=kind,
                key=key,
                pending=True,
                release_at=order.final_at,
                order_id=order.pk,
                rule={**rule, "kind": str(kind)},
            ),
            rules=rules,
            actor=ctx.actor,
        )
        lots.append(lot)
        _earned_event(ctx.number, order.order_id, points, kind, key)
    return lots


def _earned_event(number: str, order_id: str, points: int, kind: str, key: str) -> None:
    webhooks.queue_event(
        "points.earned",
        {
            "member": number,
            "order_id": order_id,
            "points": points,
            "source": str(kind),
            "status": "pending",
        },
        key=key,
    )


def _deliver(
    ctx: _Context, account: Account, order: Order, delivered_at: dt.datetime, lots: list[Lot]
) -> None:
    order.delivered_at = delivered_at
    order.final_at = _final_at(delivered_at, ctx.rules)
    pending = [lot for lot in lots if lot.status == Lot.Status.PENDING]
    if pending:
        Lot.objects.filter(pk__in=[lot.pk for lot in pending]).update(release_at=order.final_at)
        for lot in pending:
            lot.release_at = order.final_at
    if order.final_at <= ctx.now:
        _release(ctx, account, order, lots)


def _release(ctx: _Context, account: Account, order: Order, lots: list[Lot]) -> None:
    """The window closed (a late delivery event, an import, or the release job not run
    yet): the pending points become available now."""
    for lot in lots:
        if lot.status == Lot.Status.PENDING:
            ledger.release(
                account,
                lot,
                rules=ctx.rules,
                actor=ctx.actor,
                key=_key(order.order_id, DELIVERED, ZERO, lot.source),
            )


def _refund(
    ctx: _Context, account: Account, order: Order, item: OrderInput, lots: list[Lot]
) -> None:
    """Bring each lot down to what it is worth at the new net amount."""
    if order.final_at is not None and order.final_at <= ctx.now:
        _release(ctx, account, order, lots)  # the window closed: void no pending points
    net = ZERO if item.status == CANCELLED else item.amount - item.refunded_amount
    for lot in lots:
        take = (lot.amount - lot.clawed) - target_points(lot, order.amount, net)
        if take > 0:
            ledger.take_back(
                account,
                lot,
                take,
                key=_key(order.order_id, item.status, item.refunded_amount, lot.source),
                actor=ctx.actor,
                reason=_reason(item.status),
            )


# --- Batches ----------------------------------------------------------------------------


def apply_orders(items: list[dict], *, actor: Actor) -> list[OrderResult | PatronError]:
    """Apply up to ``BATCH_MAX`` order states; one answer per item, in the items' order."""
    if not isinstance(items, list):
        raise refuse("orders", "invalid", _("Send a list of orders."))
    if len(items) > BATCH_MAX:
        raise too_many_orders()
    rules = program.current()
    now = clock.now()
    results: list[OrderResult | PatronError | None] = [None] * len(items)
    parsed: dict[int, OrderInput] = {}
    for index, data in enumerate(items):
        try:
            parsed[index] = parse(data, rules, now)
        except PatronError as error:
            results[index] = error
    if parsed:
        batch = _Batch(rules, actor, parsed, results)
        with tiers.batched_notices():
            try:
                with transaction.atomic():
                    batch.run()
            except DatabaseError:
                # A set-based write failed (a race on a unique key, say): start again one by
                # one, each item in its own transaction.
                known = batch.known if batch.known is not None else _Batch.lookup(parsed)
                for index, item in parsed.items():
                    if item.member in known:
                        results[index] = _one_by_one(rules, actor, item, known)
                    else:
                        results[index] = _Batch.unknown_member()
    return results  # type: ignore[return-value]


def too_many_orders() -> ValidationFailed:
    return refuse(
        "orders", "too_many_orders", _("At most %(n)d orders per batch.") % {"n": BATCH_MAX}
    )


def _one_by_one(
    rules: Rules, actor: Actor, item: OrderInput, known: dict[str, tuple[int, str]]
) -> OrderResult | PatronError:
    member_id, status = known[item.member]
    try:
        with transaction.atomic():
            account = ledger.lock_account(member_id)
            return _apply_locked(
                _Context(rules, clock.now(), actor, item.member, status), account, item
            )
    except PatronError as error:
        return error
    except DatabaseError:
        # A concurrent request wrote the same order (or ledger key) first.
        return _retry()


def _retry() -> Conflict:
    return Conflict(
        _("Another request changed this order at the same time; send it again."),
        code="retry_order",
    )


def _ensure_accounts(member_ids: list[int]) -> None:
    """Create the accounts these members lack (a race with another writer is harmless)."""
    if not member_ids:
        return
    have = set(Account.objects.filter(pk__in=member_ids).values_list("pk", flat=True))
    missing = [mid for mid in member_ids if mid not in have]
    if missing:
        now = clock.now()
        Account.objects.bulk_create(
            [Account(member_id=mid, tier_since=now, updated_at=now) for mid in missing],
            ignore_conflicts=True,
        )


@dataclass
class _Planned:
    """A first-seen order planned set-based: its rows (plain dicts keyed by the models'
    attribute names, ``id`` set once written) and what they do to the account."""

    index: int
    item: OrderInput
    order: dict[str, Any]
    lots: list[dict[str, Any]] = field(default_factory=list)
    # (entry, lot, allocation points or 0)
    entries: list[tuple[dict[str, Any], dict[str, Any], int]] = field(default_factory=list)


# The account fields a batch reads (loading the others cost 15% of a batch's CPU); the
# balances are written by one UPDATE of these columns.
_BATCH_READS = ("tier", "tier_since", "available", "pending", "debt")


class _Batch:
    """One batch's set-based work, in one transaction (``run``): the members' accounts
    locked in member-id order, then the orders; new orders planned row by row in memory
    (plain dicts, no model instances: building 5,000 of those cost more than the writes)
    and written a few statements for the whole batch; known orders one by one after."""

    def __init__(
        self,
        rules: Rules,
        actor: Actor,
        parsed: dict[int, OrderInput],
        results: list,
    ) -> None:
        self.rules = rules
        self.actor = actor
        self.parsed = parsed
        self.results = results
        self.known: dict[str, tuple[int, str]] | None = None  # number: (member id, status)
        self.members: dict[int, str] = {}  # member id: status
        self.by_member: dict[int, list[int]] = {}
        self.now = clock.now()
        self._rules: dict[tuple[str, str, str], dict[str, Any]] = {}

    @staticmethod
    def unknown_member() -> NotFound:
        return NotFound(_("No member has this number."), code="member_not_found")

    @staticmethod
    def lookup(parsed: dict[int, OrderInput]) -> dict[str, tuple[int, str]]:
        """Member number: (member id, status), for the members the items name that exist."""
        return {
            number: (member_id, status)
            for number, member_id, status in Member.objects.filter(
                number__in={item.member for item in parsed.values()}
            ).values_list("number", "id", "status")
        }

    def _lock(self) -> dict[int, Account]:
        """The items' members (``known``) and their accounts, locked in member-id order: one
        statement when every member has an account (the common case).
        Accounts are created for members without one, but not for a cancelled member: a
        refusal writes nothing."""
        numbers = sorted({item.member for item in self.parsed.values()})
        known: dict[str, tuple[int, str]] = {}
        accounts: dict[int, Account] = {}
        # One parameter for all the numbers, not one per number to adapt and quote.
        if connection.vendor == "postgresql":
            where, numbers_param = "m.number = ANY(%s::varchar[])", _pg_array(numbers)
        else:
            where = "m.number IN (SELECT value FROM json_each(%s))"
            numbers_param = json.dumps(numbers)
        with connection.cursor() as cursor:
            cursor.execute(paid_order.accounts_sql(where, _BATCH_READS), [numbers_param])
            rows = cursor.fetchall()
        read = paid_order.account_reader(_BATCH_READS)
        for row in rows:
            account, number, status = read(row)
            accounts[account.pk] = account
            known[number] = (account.pk, status)
        rest = [number for number in numbers if number not in known]
        if rest:
            found = {
                number: (member_id, status)
                for number, member_id, status in Member.objects.filter(number__in=rest).values_list(
                    "number", "id", "status"
                )
            }
            known.update(found)
            _ensure_accounts(
                [m for m, status in found.values() if status != Member.Status.CANCELLED]
            )
            for account in (
                Account.objects.select_for_update()
                .filter(pk__in=[m for m, _status in found.values()])
                .order_by("pk")
            ):
                accounts[account.pk] = account
        self.known = known
        return accounts

    def run(self) -> None:
        # Lock order: accounts in member-id order, then the orders.
        accounts = self._lock()
        known = self.known or {}
        by_member: dict[int, list[int]] = defaultdict(list)
        for index, item in self.parsed.items():
            if item.member not in known:
                self.results[index] = self.unknown_member()
                continue
            member_id, status = known[item.member]
            self.members[member_id] = status
            if member_id not in accounts:
                # No account: a cancelled member never credited (see _lock).
                self.results[index] = _member_cancelled()
                continue
            by_member[member_id].append(index)
        self.by_member = dict(by_member)
        ids = sorted(self.by_member)
        self.now = clock.now()
        history = self._history(accounts)
        planned: list[_Planned] = []
        later: list[tuple[int, int]] = []  # (member id, index): one by one, after the new ones
        seen: set[str] = set()
        for member_id in ids:
            account = accounts[member_id]
            for index in self.by_member[member_id]:
                item = self.parsed[index]
                if item.order_id in seen:
                    later.append((member_id, index))
                    continue
                seen.add(item.order_id)
                plan = self._plan(index, item, account, history.get(member_id, []))
                if plan is None:
                    later.append((member_id, index))
                elif isinstance(plan, PatronError):
                    self.results[index] = plan
                else:
                    planned.append(plan)
        if planned:
            # Orders already recorded are not written (the insert skips their ids): those
            # items go one by one too, in the same order as if known from the start.
            later = sorted([*later, *self._write(planned, accounts)])
        for member_id, index in later:
            account = accounts[member_id]
            item = self.parsed[index]
            ctx = _Context(self.rules, self.now, self.actor, item.member, self.members[member_id])
            try:
                with transaction.atomic():
                    self.results[index] = _apply_locked(ctx, account, item)
            except PatronError as error:
                self.results[index] = error
                account.refresh_from_db()

    def _history(self, accounts: dict[int, Account]) -> dict[int, list[tuple[dt.datetime, str]]]:
        """The tier changes after the earliest payment, for the members with an item paid
        before their last tier change (every change sets ``tier_since``; as ``_new_order``
        the others need none: they held their current tier when they paid)."""
        earliest: dict[int, dt.datetime] = {}
        for member_id, indexes in self.by_member.items():
            since = accounts[member_id].tier_since
            paid = min(self.parsed[i].paid_at for i in indexes)
            if paid < since:
                earliest[member_id] = paid
        history: dict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
        if not earliest:
            return history
        rows = (
            TierChange.objects.filter(
                member_id__in=list(earliest), changed_at__gt=min(earliest.values())
            )
            .order_by("member_id", "changed_at", "id")
            .values_list("member_id", "changed_at", "from_tier")
        )
        for member_id, changed_at, from_tier in rows:
            history[member_id].append((changed_at, from_tier))
        return history

    def _rule(self, tier: str, category: str, kind: str) -> dict[str, Any]:
        """The rule kept on a lot, one dict per tier, category and kind for the batch (the
        lots share it; nothing changes it)."""
        key = (tier, category, kind)
        rule = self._rules.get(key)
        if rule is None:
            rule = {**earning.rule_for(tier, category, self.rules), "kind": str(kind)}
            self._rules[key] = rule
        return rule

    def _plan(
        self,
        index: int,
        item: OrderInput,
        account: Account,
        history: list[tuple[dt.datetime, str]],
    ) -> _Planned | PatronError | None:
        """The rows ``_first_sight`` would write if the order is new, or None to leave the
        item to ``_apply_locked``: the member is cancelled (a known order may still change),
        or the account has debt the released points would repay."""
        if self.members[account.pk] == Member.Status.CANCELLED:
            return None
        if item.status == CANCELLED and item.delivered_at is not None:
            return _cannot_cancel()
        rules, now = self.rules, self.now
        final_at = _final_at(item.delivered_at, rules)
        released = final_at is not None and final_at <= now
        if released and account.debt > 0:
            return None
        if item.paid_at >= account.tier_since:
            tier = account.tier  # no tier change since it was paid (each one sets tier_since)
        else:
            tier = next((t for at, t in history if at > item.paid_at), account.tier)
        order = {
            "order_id": item.order_id,
            "member_id": account.pk,
            "amount": item.amount,
            "currency": item.currency,
            "category": item.category,
            "store": item.store,
            "status": item.status,
            "refunded_amount": item.refunded_amount,
            "paid_at": item.paid_at,
            "delivered_at": item.delivered_at,
            "final_at": final_at,
            "tier_at_paid": tier,
            "created_at": now,
            "updated_at": now,
        }
        plan = _Planned(index, item, order)
        purchase, rebate = earning.points_for(item.amount, tier, item.category, rules)
        net = ZERO if item.status == CANCELLED else item.amount - item.refunded_amount
        reason = _reason(item.status)
        for kind, points in ((Lot.Source.PURCHASE, purchase), (Lot.Source.REBATE, rebate)):
            if points <= 0:
                continue
            lot = {
                "member_id": account.pk,
                "source": kind,
                "order_id": None,
                "amount": points,
                "remaining": points,
                "status": Lot.Status.PENDING,
                "release_at": final_at,
                "available_at": None,
                "expires_at": None,
                "extended_months": 0,
                "clawed": 0,
                "rule": self._rule(tier, item.category, kind),
                "created_at": now,
            }
            plan.lots.append(lot)
            self._entry(
                plan,
                lot,
                Entry.Kind.EARN_PENDING,
                _key(item.order_id, PAID, ZERO, kind),
                pending_delta=points,
            )
            account.pending += points
            if released:
                lot["status"] = Lot.Status.AVAILABLE
                lot["available_at"] = now
                lot["expires_at"] = ledger.expiry_for(now, rules)
                lot["release_at"] = final_at
                self._entry(
                    plan,
                    lot,
                    Entry.Kind.RELEASE,
                    _key(item.order_id, DELIVERED, ZERO, kind),
                    points=points,
                    pending_delta=-points,
                )
                account.pending -= points
                account.available += points
            if item.status in (REFUNDED, CANCELLED):
                worth = target_points(
                    Lot(source=kind, amount=points, rule=lot["rule"]), item.amount, net
                )
                take = points - worth
                if take <= 0:
                    continue
                lot["remaining"] -= take
                lot["clawed"] += take
                key = _key(item.order_id, item.status, item.refunded_amount, kind)
                if lot["status"] == Lot.Status.PENDING:
                    account.pending -= take
                    if lot["remaining"] == 0:
                        lot["status"] = Lot.Status.VOID
                    self._entry(
                        plan,
                        lot,
                        Entry.Kind.VOID_PENDING,
                        key,
                        pending_delta=-take,
                        reason=reason,
                        allocation=-take,
                    )
                else:
                    account.available -= take
                    self._entry(
                        plan,
                        lot,
                        Entry.Kind.CLAWBACK,
                        key,
                        points=-take,
                        reason=reason,
                        allocation=-take,
                    )
        return plan

    def _entry(
        self,
        plan: _Planned,
        lot: dict[str, Any],
        kind: str,
        key: str,
        *,
        points: int = 0,
        pending_delta: int = 0,
        reason: str = "",
        allocation: int = 0,
    ) -> None:
        entry = {
            "member_id": lot["member_id"],
            "kind": kind,
            "points": points,
            "pending_delta": pending_delta,
            "debt_delta": 0,
            "key": key,
            "order_id": None,
            "lot_id": None,
            "redemption_id": None,
            "reason": reason,
            "actor_type": self.actor.type,
            "actor_id": self.actor.id,
            "created_at": self.now,
        }
        plan.entries.append((entry, lot, allocation))

    def _write(
        self, planned: list[_Planned], accounts: dict[int, Account]
    ) -> list[tuple[int, int]]:
        """Write the planned orders that are new; the others (their order ids taken, by
        an earlier call or a concurrent one) are undone in the accounts and returned as
        ``(member id, index)`` for one by one."""
        taken: list[tuple[int, int]] = []
        written = _insert_rows(Order, [plan.order for plan in planned], unique="order_id")
        if len(written) < len(planned):
            kept = []
            for plan in planned:
                if "id" in plan.order:
                    kept.append(plan)
                    continue
                account = accounts[plan.order["member_id"]]
                for entry, _lot, _allocation in plan.entries:
                    account.pending -= entry["pending_delta"]
                    account.available -= entry["points"]
                taken.append((plan.order["member_id"], plan.index))
            planned = kept
            if not planned:
                return taken
        _insert_rows(
            OrderState,
            [
                {
                    "order_id": plan.order["id"],
                    "status": plan.item.status,
                    "refunded_amount": plan.item.refunded_amount,
                    "received_at": self.now,
                }
                for plan in planned
            ],
        )
        lots = []
        for plan in planned:
            for lot in plan.lots:
                lot["order_id"] = plan.order["id"]
                lots.append(lot)
        _insert_rows(Lot, lots)
        entries = []
        for plan in planned:
            for entry, lot, _allocation in plan.entries:
                entry["lot_id"] = lot["id"]
                entry["order_id"] = plan.order["id"]
                entries.append(entry)
        _insert_rows(Entry, entries)
        _insert_rows(
            Allocation,
            [
                {"entry_id": entry["id"], "lot_id": lot["id"], "points": allocation}
                for plan in planned
                for entry, lot, allocation in plan.entries
                if allocation
            ],
        )
        touched = sorted({plan.order["member_id"] for plan in planned})
        before = {member_id: accounts[member_id].tier for member_id in touched}
        changes = self._upgrades(planned, accounts)
        _save_balances([accounts[member_id] for member_id in touched], self.now)
        for plan in planned:
            for entry, lot, _allocation in plan.entries:
                if entry["kind"] == Entry.Kind.EARN_PENDING:
                    _earned_event(
                        plan.item.member,
                        plan.item.order_id,
                        lot["amount"],
                        lot["source"],
                        entry["key"],
                    )
        # As one by one would answer: the tier before the upgrade up to the order credited
        # with it, the new tier from there on.
        upgraded_at = {
            plan.order["member_id"]: plan.index for plan in planned if plan.item.order_id in changes
        }
        for plan in planned:
            member_id = plan.order["member_id"]
            tier = accounts[member_id].tier
            if plan.index < upgraded_at.get(member_id, -1):
                tier = before[member_id]
            self.results[plan.index] = OrderResult(
                order_id=plan.item.order_id,
                member=plan.item.member,
                status=plan.item.status,
                refunded_amount=plan.item.refunded_amount,
                points=_tally((lot["amount"], lot["clawed"], lot["status"]) for lot in plan.lots),
                tier=tier,
                changed=True,
                tier_change=_change_out(changes.get(plan.item.order_id)),
            )
        return taken

    def _upgrades(
        self, planned: list[_Planned], accounts: dict[int, Account]
    ) -> dict[str, TierChange]:
        """Upgrade at once the members the new orders make qualify: one aggregate for all,
        the changes written set-based (the accounts' new tiers with their balances). Each
        change is credited to the member's last counting order of the batch."""
        top = len(self.rules.tiers) - 1
        last: dict[int, _Planned] = {}
        for plan in planned:
            item = plan.item
            if item.status == CANCELLED or item.refunded_amount >= item.amount:
                continue
            member_id = plan.order["member_id"]
            if self.rules.rank(accounts[member_id].tier) >= top:
                continue
            last[member_id] = plan
        if not last:
            return {}
        at = max([self.now, *(plan.item.paid_at for plan in last.values())])
        figures = figures_for(
            list(last), at, self.rules, tiers_now={m: accounts[m].tier for m in last}
        )
        changes: dict[str, TierChange] = {}
        for member_id, plan in sorted(last.items()):
            if member_id not in figures:
                continue
            account = accounts[member_id]
            best = tiers.qualified_upgrade(account, figures[member_id], self.rules)
            if best is None:
                continue
            change = tiers.change_row(
                account,
                best,
                kind=TierChange.Kind.UPGRADE,
                reason="order_paid",
                figures=figures[member_id],
                rules=self.rules,
                now=self.now,
                key=f"upgrade:{plan.item.order_id}",
            )
            change.order_id = plan.order["id"]
            changes[plan.item.order_id] = change
        if changes:
            _insert_rows(TierChange, list(changes.values()))
            tiers.tier_changed()
        return changes


def _insert_rows(model: type, objs: list, *, unique: str | None = None) -> list:
    """INSERT ``objs`` set-based, set their ids and return them. ``objs`` are model
    instances, or plain dicts of the model's attribute names (a field left out takes its
    default; the id goes in ``"id"``): the batch's rows, built without model instances.

    On PostgreSQL one ``INSERT ... SELECT FROM UNNEST(<one array per column>) RETURNING
    id``: a handful of parameters however many rows (Django's ``bulk_create`` sends one
    parameter per value for models with a JSON field, and converting those dominated a
    batch's time).

    With ``unique`` (a unique column) rows whose value is taken are skipped (``ON CONFLICT
    DO NOTHING``, after waiting for a concurrent writer of the same value) and only the
    rows written are returned."""
    if not objs:
        return []
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    rows = isinstance(objs[0], dict)
    if rows:
        defaults = {f.attname: f.get_default() for f in fields}

        def value(obj: Any, name: str) -> Any:
            return obj.get(name, defaults[name])

    else:
        value = getattr
    table = connection.ops.quote_name(model._meta.db_table)
    names = [connection.ops.quote_name(f.column) for f in fields]
    conflict, returning = "", "id"
    if unique is not None:
        column = connection.ops.quote_name(model._meta.get_field(unique).column)
        conflict, returning = f" ON CONFLICT ({column}) DO NOTHING", f"id, {column}"
    if connection.vendor == "postgresql":
        # Each column is one array to UNNEST; a column with few distinct values (times,
        # statuses, the batch's rules) sends each value once and a 1-based index per row
        # (``(SELECT <values>)[i]``, evaluated once), one value alone no array per row.
        columns: list[tuple[str, list]] = []  # (type, values): the arrays to UNNEST
        selects, select_params = [], []
        for f in fields:
            name = f.attname
            if rows:
                default = defaults[name]
                values = [obj.get(name, default) for obj in objs]
            else:
                values = [getattr(obj, name) for obj in objs]
            db_type = f.db_type(connection)
            if f.get_internal_type() == "JSONField":
                # Rows often share one value (the batch's rules): serialised once each.
                texts: dict[int, str] = {}
                dumped = []
                for v in values:
                    text = texts.get(id(v))
                    if text is None:
                        text = texts[id(v)] = json.dumps(v, cls=f.encoder)
                    dumped.append(text)
                values, db_type = dumped, "jsonb"
            codes: dict[Any, int] = {}
            if len(values) > 1:
                few = len(values) // 4
                try:
                    for v in values:
                        if v not in codes:
                            codes[v] = len(codes) + 1
                            if len(codes) > few:
                                codes = {}
                                break
                except TypeError:  # an unhashable value: one array element per row
                    codes = {}
            if not codes:
                selects.append(f"c{len(columns)}")
                columns.append((db_type, values))
                continue
            select_params.append(_pg_array(list(codes)))
            if len(codes) == 1:
                selects.append(f"(SELECT %s::{db_type}[])[1]")
            else:
                selects.append(f"(SELECT %s::{db_type}[])[c{len(columns)}]")
                columns.append(("integer", [codes[v] for v in values]))
        if not columns:  # every row alike: count them off
            columns.append(("integer", list(range(len(objs)))))
        statements = [
            (
                f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608
                f"SELECT {', '.join(selects)} FROM UNNEST("
                + ", ".join(f"%s::{db_type}[]" for db_type, _values in columns)
                + f") AS u({', '.join(f'c{n}' for n in range(len(columns)))})"
                + f"{conflict} RETURNING {returning}",
                [*select_params, *(_pg_array(values) for _type, values in columns)],
                objs,
            )
        ]
    else:
        # SQLite: multi-row VALUES, no model instances (building and preparing those was
        # most of a batch's time); values the driver takes as they are skip the ORM's prep.
        prep = _preparers(model)
        statements = []
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for first in range(0, len(objs), 500):
            chunk = objs[first : first + 500]
            params = []
            for obj in chunk:
                for f, prepare in prep:
                    v = value(obj, f.attname)
                    params.append(v if prepare is None else prepare(v))
            statements.append(
                (
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES "  # noqa: S608
                    + ", ".join([row] * len(chunk))
                    + f"{conflict} RETURNING {returning}",
                    params,
                    chunk,
                )
            )
    written = []
    for sql, params, chunk in statements:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        if unique is None:
            pairs = zip(chunk, (r[0] for r in fetched), strict=True)
        else:
            ids = {r[1]: r[0] for r in fetched}
            pairs = ((obj, ids[value(obj, unique)]) for obj in chunk if value(obj, unique) in ids)
        for obj, pk in pairs:
            if rows:
                obj["id"] = pk
            else:
                obj.pk = pk
                obj._state.adding = False
                obj._state.db = connection.alias
            written.append(obj)
    return written


def _preparers(model: type) -> list[tuple[Any, Callable[[Any], Any] | None]]:
    """Per insert field: None when the driver takes its values as they are, else a
    function preparing one value as the ORM would. Those remember what they prepared:
    a batch's rows share a few times (now, release, expiry), and preparing a time is the
    costliest step left on SQLite."""
    db = connections[connection.alias]  # not the per-access proxy: called per value
    prepared = paid_order.prepared_fields(model)
    return [
        (f, _remembering(f, db) if f.attname in prepared else None)
        for f in model._meta.concrete_fields
        if not f.primary_key
    ]


def _remembering(field: Any, db: Any) -> Callable[[Any], Any]:
    seen: dict[Any, Any] = {}

    def prepare(v: Any) -> Any:
        try:
            return seen[v]
        except KeyError:
            seen[v] = out = field.get_db_prep_save(v, db)
            return out
        except TypeError:  # unhashable (a JSON value): prepared every time
            return field.get_db_prep_save(v, db)

    return prepare


def _pg_array(values: list) -> str:
    """A PostgreSQL array literal: one text parameter instead of a list psycopg adapts
    value by value (Django's client-side binding quotes each element separately). Text is
    quoted and escaped; numbers and times need no quotes (nothing in them is special to an
    array literal); a time repeated down a column is written once."""
    parts = []
    append = parts.append
    times: dict[dt.datetime, str] = {}
    for value in values:
        kind = value.__class__
        if kind is str:
            if "\\" in value or '"' in value:
                value = value.replace("\\", "\\\\").replace('"', '\\"')
            append('"' + value + '"')
        elif value is None:
            append("NULL")
        elif kind is int or kind is Decimal:
            append(str(value))
        elif kind is dt.datetime:
            text = times.get(value)
            if text is None:
                text = times[value] = value.isoformat()
            append(text)
        else:
            text = value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
            append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _save_balances(accounts: list[Account], now: dt.datetime) -> None:
    """Write the accounts' cached balances and tiers set-based (the rows are locked): on
    PostgreSQL one ``UPDATE ... FROM UNNEST`` of one array per column, elsewhere one
    statement per 500. Django's ``bulk_update`` builds a CASE per row and field: seconds
    for 1,000."""
    if not accounts:
        return
    table = Account._meta.db_table
    stamp = Account._meta.get_field("tier_since")
    updated_at = Account._meta.get_field("updated_at").get_db_prep_save(now, connection)
    for account in accounts:
        account.updated_at = now
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET available = v.available, pending = v.pending, "  # noqa: S608
                f"tier = v.tier, tier_since = v.tier_since, updated_at = %s "
                "FROM UNNEST(%s::bigint[], %s::bigint[], %s::bigint[], %s::varchar(16)[], "
                "%s::timestamptz[]) AS v(member_id, available, pending, tier, tier_since) "
                f"WHERE {table}.member_id = v.member_id",
                [
                    updated_at,
                    _pg_array([a.pk for a in accounts]),
                    _pg_array([a.available for a in accounts]),
                    _pg_array([a.pending for a in accounts]),
                    _pg_array([a.tier for a in accounts]),
                    _pg_array([a.tier_since for a in accounts]),
                ],
            )
        return
    for start in range(0, len(accounts), 500):
        chunk = accounts[start : start + 500]
        rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
        params: list[Any] = []
        for account in chunk:
            params += [
                account.pk,
                account.available,
                account.pending,
                account.tier,
                stamp.get_db_prep_save(account.tier_since, connection),
            ]
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH v(member_id, available, pending, tier, tier_since) AS (VALUES {rows}) "  # noqa: S608
                f"UPDATE {table} SET available = v.available, pending = v.pending, "
                f"tier = v.tier, tier_since = v.tier_since, updated_at = %s "
                f"FROM v WHERE {table}.member_id = v.member_id",
                [*params, updated_at],
            )


def figures_for(
    member_ids: list[int],
    at: dt.datetime,
    rules: Rules,
    *,
    tiers_now: dict[int, str] | None = None,
) -> dict[int, Figures]:
    """``figures.for_member`` for many members in two grouped queries (same definitions;
    ``test_figures`` holds them equal).

    With ``tiers_now`` only the members whose spend and orders could lift them above that
    tier (with any loyalty score) are answered and have their loyalty score counted: most
    order events then cost one aggregate."""
    if not member_ids:
        return {}
    from django.db.models import BooleanField
    from django.db.models.expressions import RawSQL

    def members_in(model: type, ids: list[int]) -> Q | RawSQL:
        """``member_id`` in ``ids``: on PostgreSQL one array parameter for a long list."""
        if connection.vendor != "postgresql" or len(ids) < 20:
            return Q(member_id__in=ids)
        column = connection.ops.quote_name(model._meta.db_table) + '."member_id"'
        return RawSQL(  # noqa: S611
            f"{column} = ANY(%s::bigint[])", [_pg_array(ids)], output_field=BooleanField()
        )

    start = window.window_start(at, rules)
    rows = (
        Order.objects.filter(members_in(Order, member_ids), paid_at__gt=start, paid_at__lte=at)
        .values("member_id")
        .annotate(**window.order_sums())
        .values_list("member_id", "spend", "orders")
    )
    found = {
        member_id: (Decimal(spend or 0).quantize(CENT), n or 0) for member_id, spend, n in rows
    }
    figures: dict[int, tuple[Decimal, int]] = {}
    for member_id in member_ids:
        spend, orders = found.get(member_id, (ZERO, 0))
        if tiers_now is not None:
            rank = rules.rank(tiers_now[member_id])
            if rules.qualified_tier(spend, orders, _ANY_SCORE).rank <= rank:
                continue  # not even the highest loyalty score would lift them
        figures[member_id] = (spend, orders)
    loyalty: dict[int, int] = {}
    if figures:
        loyalty = dict(
            LoyaltyEvent.objects.filter(
                members_in(LoyaltyEvent, list(figures)),
                occurred_at__gt=start,
                occurred_at__lte=at,
            )
            .values("member_id")
            .annotate(s=Sum("score"))
            .values_list("member_id", "s")
        )
    return {
        member_id: Figures(spend=spend, orders=orders, loyalty=loyalty.get(member_id) or 0)
        for member_id, (spend, orders) in figures.items()
    }


_ANY_SCORE = 10**12  # a loyalty score above every threshold
