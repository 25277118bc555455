"""A new paid order in one statement on PostgreSQL: the order path's common case.

Most order events are an order seen for the first time, in state ``paid``. The general path
(``orders._first_sight``) writes it through the ledger primitives, one statement per row:
the order, its first state, a pending lot and its entry per kind of points, the account's
balance, then the window's figures for the upgrade check; nine or ten round trips. Here the
same rows go in as one data-modifying statement (a chain of ``WITH ... INSERT``) that also
reads the window's figures, so the event costs four round trips: ``BEGIN``, the account's
lock, this statement, ``COMMIT``.

The account is locked by a statement of its own before this one runs (``orders._lock_member``).
That order matters: a statement's snapshot is taken when it starts, so a lock taken inside
it could be granted after a concurrent order of the same member committed, and the figures
would miss that order; two such orders could each miss the other and an upgrade they make
together would be lost. Locked first, the statement sees every order committed before it.

The rows are built from the models' own fields (``_select``), so a column added to a model
is written here too; ``test_paid_order`` holds the rows equal to the general path's.
Anything else (the order id already taken, another state, SQLite) goes the general way.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Field, Model

from patron.core import clock
from patron.core.audit import Actor
from patron.loyalty import earning
from patron.loyalty.figures import Figures, window_start
from patron.loyalty.models import Account, Entry, Lot, Order, OrderState
from patron.loyalty.rules import Rules

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Written:
    """What the statement wrote, and the window's figures at ``at`` with the order in."""

    order: Order
    lots: list[Lot]
    figures: Figures


def applies(status: str) -> bool:
    return connection.vendor == "postgresql" and status == Order.Status.PAID


def lock_account(number: str) -> tuple[Account, str] | None:
    """The member's account, locked, and the member's status, or None when the member has
    no account yet: the order path's first statement, written out once (PostgreSQL)."""
    columns, fields = _fields(Account, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.member_id, {', '.join(f'a.{c}' for c in columns.split(', '))}, m.status"  # noqa: S608
            " FROM loyalty_account a JOIN members_member m ON m.id = a.member_id"
            " WHERE m.number = %s FOR UPDATE OF a",
            [number],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    names = ["member_id", *(f.attname for f, _cast in fields)]
    return Account.from_db(connection.alias, names, row[:-1]), row[-1]


@functools.cache
def _fields(model: type[Model], vendor: str) -> tuple[str, list[tuple[Field, str]]]:
    """The model's insert columns and each field with its cast, worked out once per process
    (``db_type`` is costly enough to show in a profile of the order path)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    return columns, [(f, f"%s::{f.db_type(connection)}") for f in fields]


def _select(obj: Model, links: dict[str, str]) -> tuple[str, str, list]:
    """``(columns, select list, params)`` inserting ``obj``'s concrete fields; a field named
    in ``links`` takes that SQL expression (the id another part of the statement returned)."""
    columns, fields = _fields(type(obj), connection.vendor)
    values, params = [], []
    for f, placeholder in fields:
        if f.attname in links:
            values.append(links[f.attname])
        else:
            values.append(placeholder)
            params.append(f.get_db_prep_save(getattr(obj, f.attname), connection))
    return columns, ", ".join(values), params


def _insert(name: str, obj: Model, links: dict[str, str], sources: str, returning: bool) -> tuple:
    table = connection.ops.quote_name(type(obj)._meta.db_table)
    columns, values, params = _select(obj, links)
    tail = " RETURNING id" if returning else ""
    where = f" FROM {sources}" if sources else ""
    return f"{name} AS (INSERT INTO {table} ({columns}) SELECT {values}{where}{tail})", params


def write(
    account: Account,
    order: Order,
    *,
    rules: Rules,
    actor: Actor,
    at: dt.datetime,
    entry_key: Callable[[str], str],
) -> Written | None:
    """Write the new paid ``order`` (unsaved, ``tier_at_paid`` set) with its pending lots,
    entries and the account's pending balance, in one statement; None when the order id is
    already taken (nothing is written then). ``account`` must be locked; its balance is
    updated in memory too. The figures are those of the window ending at ``at``;
    ``entry_key(kind)`` is the ledger key of the entry crediting that kind of points."""
    now = clock.now()
    tier = order.tier_at_paid
    purchase, rebate = earning.points_for(order.amount, tier, order.category, rules)
    rule = earning.rule_for(tier, order.category, rules)
    state = OrderState(status=order.status, refunded_amount=order.refunded_amount)
    state.received_at = order.created_at
    parts, params = [], []
    sql, p = _insert("o", order, {}, "", returning=True)
    parts.append(sql.replace(" RETURNING id", " ON CONFLICT (order_id) DO NOTHING RETURNING id"))
    params += p
    sql, p = _insert("s", state, {"order_id": "o.id"}, "o", returning=False)
    parts.append(sql)
    params += p
    lots: list[Lot] = []
    names: list[str] = []  # the lots' parts of the statement
    pending = 0
    for n, (kind, points) in enumerate(
        ((Lot.Source.PURCHASE, purchase), (Lot.Source.REBATE, rebate))
    ):
        if points <= 0:
            continue
        lot = Lot(
            member_id=account.pk,
            source=kind,
            amount=points,
            remaining=points,
            status=Lot.Status.PENDING,
            release_at=None,
            available_at=None,
            expires_at=None,
            rule={**rule, "kind": str(kind)},
            created_at=now,
        )
        entry = Entry(
            member_id=account.pk,
            kind=Entry.Kind.EARN_PENDING,
            pending_delta=points,
            key=entry_key(kind),
            actor_type=actor.type,
            actor_id=actor.id,
            created_at=now,
        )
        sql, p = _insert(f"l{n}", lot, {"order_id": "o.id"}, "o", returning=True)
        parts.append(sql)
        params += p
        links = {"order_id": "o.id", "lot_id": f"l{n}.id"}
        sql, p = _insert(f"e{n}", entry, links, f"o, l{n}", returning=False)
        parts.append(sql)
        params += p
        lots.append(lot)
        names.append(f"l{n}")
        pending += points
    account.pending += pending
    account.updated_at = now
    parts.append(
        "a AS (UPDATE loyalty_account SET pending = %s, updated_at = %s"
        " WHERE member_id = %s AND EXISTS (SELECT 1 FROM o))"
    )
    params += [account.pending, now, account.pk]
    start = window_start(at, rules)
    # The window's figures as ``figures.for_member`` defines them, before this order (the
    # statement's snapshot does not see its own inserts; the order is added below).
    parts.append(
        "w AS (SELECT COALESCE(SUM(CASE WHEN status <> 'cancelled'"
        " THEN amount - refunded_amount ELSE 0 END), 0) AS spend,"
        " COUNT(*) FILTER (WHERE status <> 'cancelled' AND refunded_amount < amount) AS orders"
        " FROM loyalty_order WHERE member_id = %s AND paid_at > %s AND paid_at <= %s)"
    )
    params += [account.pk, start, at]
    parts.append(
        "v AS (SELECT COALESCE(SUM(score), 0) AS loyalty FROM loyalty_loyaltyevent"
        " WHERE member_id = %s AND occurred_at > %s AND occurred_at <= %s)"
    )
    params += [account.pk, start, at]
    lot_ids = "".join(f", {name}.id" for name in names)
    sources = "".join(f", {name}" for name in names)
    # Only fixed fragments and the models' own column names are interpolated.
    statement = "WITH " + ", ".join(parts)
    statement += f" SELECT w.spend, w.orders, v.loyalty, o.id{lot_ids} FROM o, w, v{sources}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        account.pending -= pending
        return None
    spend, count, loyalty, order.pk, *ids = row
    order._state.adding = False
    order._state.db = connection.alias
    for lot, pk in zip(lots, ids, strict=True):
        lot.pk, lot.order = pk, order
        lot._state.adding = False
        lot._state.db = connection.alias
    spend = Decimal(spend)
    if start < order.paid_at <= at:  # the order itself counts
        spend, count = spend + order.amount, count + 1
    return Written(order, lots, Figures(spend.quantize(CENT), int(count), int(loyalty)))
