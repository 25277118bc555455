"""The points ledger's primitives (architecture rule 3, PTS-3, PTS-5, PTS-7).

Every function here runs inside the caller's transaction **after** the caller locked the
member's account with ``lock_account``: that lock (a row lock on PostgreSQL, the single
writer of an IMMEDIATE transaction on SQLite) is what serialises all changes to one member's
lots and balances, so two requests can never spend the same points. Batch jobs that touch
many members lock their accounts in member-id order first (see ``patron.loyalty.jobs``).

Services call these primitives. Two set-based writers bypass them for speed and keep the same
invariants (``patron ledger verify``; tests hold them row-for-row equal to the primitives):
``orders.apply_orders`` for new orders in a batch, and the batch jobs (``patron.loyalty.jobs``).
Each primitive writes one ``Entry`` whose ``key`` is unique in the database: a caller that
finds its key already written (``existing``) returns the first result instead of acting
twice.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict
from patron.loyalty.models import Account, Allocation, Entry, Lot
from patron.loyalty.rules import Rules

Kind = Entry.Kind


class InsufficientPoints(Conflict):
    def __init__(self, available: int, wanted: int) -> None:
        super().__init__(
            _("Not enough points: %(available)s available, %(wanted)s needed.")
            % {"available": available, "wanted": wanted},
            code="insufficient_points",
        )


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger writes must run inside the caller's transaction")


def lock_account(member_id: int) -> Account:
    """The member's account, created on first use, locked until the transaction ends."""
    _require_transaction()
    try:
        return Account.objects.select_for_update().get(pk=member_id)
    except Account.DoesNotExist:
        pass
    try:
        with transaction.atomic():  # savepoint: a concurrent creator may win the insert
            Account.objects.create(member_id=member_id, tier_since=clock.now())
    except IntegrityError:
        pass
    return Account.objects.select_for_update().get(pk=member_id)


def existing(key: str) -> Entry | None:
    return Entry.objects.filter(key=key).first()


# --- dates -----------------------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of_day(day: dt.date, rules: Rules) -> dt.datetime:
    """The first instant after ``day`` in the program's time zone: a lot whose
    ``expires_at`` is this instant is still usable all of ``day`` and expired from midnight."""
    tz = zoneinfo.ZoneInfo(rules.time_zone)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)


def local_date(moment: dt.datetime, rules: Rules) -> dt.date:
    return moment.astimezone(zoneinfo.ZoneInfo(rules.time_zone)).date()


def expiry_for(available_at: dt.datetime, rules: Rules, extra_months: int = 0) -> dt.datetime:
    """End of the day ``expiry_months`` (+ extensions) after the points became available."""
    day = add_months(local_date(available_at, rules), rules.expiry_months + extra_months)
    return end_of_day(day, rules)


def last_usable_day(expires_at: dt.datetime, rules: Rules) -> dt.date:
    return local_date(expires_at - dt.timedelta(microseconds=1), rules)


# --- writes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Credit:
    """What to credit: one new lot and the entry that records it."""

    points: int
    source: str
    key: str
    pending: bool = False
    release_at: dt.datetime | None = None
    order_id: int | None = None
    rule: dict | None = None
    reason: str = ""


def _entry(
    account: Account, kind: str, key: str, actor: Actor, now: dt.datetime, **fields
) -> Entry:
    return Entry.objects.create(
        member_id=account.pk,
        kind=kind,
        key=key,
        actor_type=actor.type,
        actor_id=actor.id,
        created_at=now,
        **fields,
    )


def _save_account(account: Account, now: dt.datetime) -> None:
    account.updated_at = now
    account.save(update_fields=["available", "pending", "debt", "updated_at"])


def credit(account: Account, credit: Credit, *, rules: Rules, actor: Actor) -> Lot:
    """A new lot: pending until ``release_at`` or available now; available points repay
    any debt first."""
    _require_transaction()
    if credit.points <= 0:
        raise ValueError("a credit is positive")
    now = clock.now()
    lot = Lot.objects.create(
        member_id=account.pk,
        source=credit.source,
        order_id=credit.order_id,
        amount=credit.points,
        remaining=credit.points,
        status=Lot.Status.PENDING if credit.pending else Lot.Status.AVAILABLE,
        release_at=credit.release_at if credit.pending else None,
        available_at=None if credit.pending else now,
        expires_at=None if credit.pending else expiry_for(now, rules),
        rule=credit.rule or {},
        created_at=now,
    )
    if credit.pending:
        account.pending += credit.points
        _entry(
            account,
            Kind.EARN_PENDING,
            credit.key,
            actor,
            now,
            pending_delta=credit.points,
            lot=lot,
            order_id=credit.order_id,
            reason=credit.reason,
        )
    else:
        account.available += credit.points
        _entry(
            account,
            Kind.EARN if credit.source != Lot.Source.ADJUSTMENT else Kind.ADJUST,
            credit.key,
            actor,
            now,
            points=credit.points,
            lot=lot,
            order_id=credit.order_id,
            reason=credit.reason,
        )
        _repay_debt(account, lot, f"{credit.key}:repay", actor, now)
    _save_account(account, now)
    return lot


def release(account: Account, lot: Lot, *, rules: Rules, actor: Actor, key: str) -> Entry:
    """A pending lot becomes available (its return window closed)."""
    _require_transaction()
    now = clock.now()
    if lot.status != Lot.Status.PENDING:
        raise ValueError("only a pending lot is released")
    points = lot.remaining
    lot.status = Lot.Status.AVAILABLE
    lot.available_at = now
    lot.expires_at = expiry_for(now, rules)
    lot.save(update_fields=["status", "available_at", "expires_at"])
    account.pending -= points
    account.available += points
    entry = _entry(
        account,
        Kind.RELEASE,
        key,
        actor,
        now,
        points=points,
        pending_delta=-points,
        lot=lot,
        order_id=lot.order_id,
    )
    _repay_debt(account, lot, f"{key}:repay", actor, now)
    _save_account(account, now)
    return entry


def _repay_debt(account: Account, lot: Lot, key: str, actor: Actor, now: dt.datetime) -> None:
    """Debt (points clawed back after they were spent) is repaid by the next available points."""
    take = min(account.debt, lot.remaining)
    if take <= 0:
        return
    lot.remaining -= take
    lot.save(update_fields=["remaining"])
    account.debt -= take
    account.available -= take
    entry = _entry(
        account, Kind.DEBT_REPAY, key, actor, now, points=-take, debt_delta=-take, lot=lot
    )
    Allocation.objects.create(entry=entry, lot=lot, points=-take)


def spend(
    account: Account,
    points: int,
    *,
    key: str,
    actor: Actor,
    kind: str = Kind.REDEEM,
    redemption_id: int | None = None,
    reason: str = "",
) -> Entry:
    """Take ``points`` from the available lots nearest to expiry first; record which."""
    _require_transaction()
    if points <= 0:
        raise ValueError("spend a positive amount")
    now = clock.now()
    if account.available < points:
        raise InsufficientPoints(account.available, points)
    lots = (
        Lot.objects.filter(
            member_id=account.pk, status=Lot.Status.AVAILABLE, remaining__gt=0, expires_at__gt=now
        )
        .order_by("expires_at", "id")
        .only("id", "remaining")
    )
    taken: list[tuple[Lot, int]] = []
    left = points
    for lot in lots.iterator(chunk_size=200):
        take = min(lot.remaining, left)
        taken.append((lot, take))
        left -= take
        if left == 0:
            break
    if left:
        # The cache says enough but some lots are past expiry and not yet swept: only what
        # is really usable counts.
        raise InsufficientPoints(points - left, points)
    entry = _entry(
        account, kind, key, actor, now, points=-points, redemption_id=redemption_id, reason=reason
    )
    _move(entry, [(lot, -take) for lot, take in taken])
    account.available -= points
    _save_account(account, now)
    return entry


def _move(entry: Entry, moves: Iterable[tuple[Lot, int]]) -> None:
    moves = list(moves)
    Allocation.objects.bulk_create(
        [Allocation(entry=entry, lot_id=lot.pk, points=delta) for lot, delta in moves]
    )
    for lot, delta in moves:
        Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") + delta)


def restore(account: Account, spent: Entry, *, key: str, actor: Actor, reason: str = "") -> Entry:
    """Put back exactly the points ``spent`` took, lot by lot (a cancelled redemption).

    Points whose lot has expired meanwhile are not restored: they would already have
    expired had they never been spent. The entry's reason says how many.
    """
    _require_transaction()
    now = clock.now()
    moves: list[tuple[Lot, int]] = []
    lapsed = 0
    for allocation in spent.allocations.select_related("lot"):
        lot = allocation.lot
        if lot.status == Lot.Status.AVAILABLE and lot.expires_at and lot.expires_at > now:
            moves.append((lot, -allocation.points))
        else:
            lapsed += -allocation.points
    points = sum(delta for _lot, delta in moves)
    note = reason or (f"{lapsed} points had expired" if lapsed else "")
    entry = _entry(
        account,
        Kind.REDEEM_CANCEL,
        key,
        actor,
        now,
        points=points,
        redemption_id=spent.redemption_id,
        reason=note[:200],
    )
    _move(entry, moves)
    account.available += points
    _save_account(account, now)
    return entry


def take_back(
    account: Account, lot: Lot, points: int, *, key: str, actor: Actor, reason: str
) -> Entry:
    """Take ``points`` of a lot's value back (a refund): from what remains of the lot, and
    what was already spent becomes debt, so the balance never goes negative (PTS-3)."""
    _require_transaction()
    if points <= 0:
        raise ValueError("take back a positive amount")
    now = clock.now()
    lot.refresh_from_db(fields=["remaining", "status", "clawed"])
    take = min(points, lot.remaining)
    shortfall = points - take
    lot.remaining -= take
    lot.clawed += points
    fields = ["remaining", "clawed"]
    if lot.status == Lot.Status.PENDING:
        if shortfall:
            raise ValueError("pending points cannot have been spent")
        account.pending -= take
        if lot.remaining == 0:
            lot.status = Lot.Status.VOID
            fields.append("status")
        entry = _entry(
            account,
            Kind.VOID_PENDING,
            key,
            actor,
            now,
            pending_delta=-take,
            lot=lot,
            order_id=lot.order_id,
            reason=reason,
        )
    else:
        account.available -= take
        account.debt += shortfall
        entry = _entry(
            account,
            Kind.CLAWBACK,
            key,
            actor,
            now,
            points=-take,
            debt_delta=shortfall,
            lot=lot,
            order_id=lot.order_id,
            reason=reason,
        )
    lot.save(update_fields=fields)
    if take:
        Allocation.objects.create(entry=entry, lot=lot, points=-take)
    _save_account(account, now)
    return entry


def extend(lot: Lot, months: int, *, rules: Rules) -> None:
    """Move an available lot's expiry by whole months (balances do not change; the caller
    audits staff extensions)."""
    _require_transaction()
    if lot.status != Lot.Status.AVAILABLE or lot.expires_at is None:
        raise Conflict(_("Only available points can be extended."), code="lot_not_available")
    day = add_months(last_usable_day(lot.expires_at, rules), months)
    lot.expires_at = end_of_day(day, rules)
    lot.extended_months += months
    lot.save(update_fields=["expires_at", "extended_months"])
