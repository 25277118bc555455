"""A new paid order in as few statements as the database allows: the order path's common case.

Most order events are an order seen for the first time, in state ``paid``. The general path
(``orders._first_sight``) writes it through the ledger primitives and the ORM, one query
built per row: the order, its first state, a pending lot and its entry per kind of points,
the account's balance, then the window's figures for the upgrade check. Here the same rows
are written by SQL built from the models' own fields once per process (``_fields``):

- **PostgreSQL**: one data-modifying statement (a chain of ``WITH ... INSERT``) that also
  reads the window's figures, so the event costs four round trips: ``BEGIN``, the account's
  lock, this statement, ``COMMIT``.
- **SQLite**: the same rows as a few plain statements (``INSERT ... RETURNING``). SQLite has
  one writer at a time and its transaction is held from ``BEGIN IMMEDIATE``, so what matters
  there is how long the transaction lasts: no query is compiled while it is open.

The account is locked by a statement of its own before the writes (``lock_account``). On
PostgreSQL that order matters: a statement's snapshot is taken when it starts, so a lock
taken inside it could be granted after a concurrent order of the same member committed, and
the figures would miss that order; two such orders could each miss the other and an upgrade
they make together would be lost. Locked first, the statement sees every order committed
before it. ``test_paid_order`` holds the rows equal to the general path's; every other event
(a known order's next state, an order first seen delivered, refunded or cancelled) goes the
general way.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from django.db import connection, connections
from django.db.models import Field, Model

from patron.core import clock
from patron.core.audit import Actor
from patron.loyalty import earning, figures
from patron.loyalty.figures import Figures
from patron.loyalty.models import Account, Entry, Lot, Order, OrderState
from patron.loyalty.rules import Rules

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Written:
    """What was written, and the window's figures at ``at`` with the order in."""

    order: Order
    lots: list[Lot]
    figures: Figures


def applies(status: str) -> bool:
    return status == Order.Status.PAID


@dataclass(frozen=True)
class _Model:
    """A model's insert columns and its fields with their placeholders."""

    table: str
    columns: str
    fields: list[tuple[Field, str]]
    prepared: frozenset[str] = frozenset()  # fields whose values go through get_db_prep_save


# Field types whose Python values the driver takes as they are: their ``get_db_prep_save``
# changes nothing, and calling it for every value was a fifth of the order path's CPU.
# PostgreSQL (psycopg; the casts in the statement give the column types) takes times and
# decimals too; SQLite's driver takes decimals (Django registers their adapter) but not
# aware times, which Django stores as naive UTC text. Others (JSON) are always prepared.
_INTEGERS_AND_TEXT = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "CharField",
        "DecimalField",
        "ForeignKey",
        "IntegerField",
        "OneToOneField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SmallIntegerField",
        "TextField",
    }
)
_DRIVER_ADAPTS = {
    "postgresql": _INTEGERS_AND_TEXT | {"DateTimeField"},
    "sqlite": _INTEGERS_AND_TEXT,
}


@functools.cache
def _fields(model: type[Model], vendor: str) -> _Model:
    """Worked out once per process per database (``db_type`` is costly enough to show in a
    profile of the order path)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if vendor == "postgresql":  # casts type the values of the INSERT ... SELECT
        placeholders = [f"%s::{f.db_type(connection)}" for f in fields]
    else:
        placeholders = ["%s"] * len(fields)
    table = model._meta.db_table
    return _Model(
        table=connection.ops.quote_name(table),
        columns=", ".join(connection.ops.quote_name(f.column) for f in fields),
        fields=list(zip(fields, placeholders, strict=True)),
        prepared=frozenset(
            f.attname
            for f in fields
            if f.get_internal_type() not in _DRIVER_ADAPTS.get(vendor, frozenset())
        ),
    )


def prepared_fields(model: type[Model]) -> frozenset[str]:
    """The fields whose values need ``get_db_prep_save`` before this database's driver
    takes them (see ``_DRIVER_ADAPTS``)."""
    return _fields(model, connection.vendor).prepared


@functools.cache
def _account_reads(names: tuple[str, ...] | None, vendor: str) -> tuple[str, list, list]:
    """(select list, attribute names, (converters, column) per field) for the account
    fields ``names`` (None: all of them)."""
    table = Account._meta.db_table
    fields = [
        f
        for f in Account._meta.concrete_fields
        if not f.primary_key and (names is None or f.name in names)
    ]
    return (
        ", ".join(f"a.{connection.ops.quote_name(f.column)}" for f in fields),
        ["member_id", *(f.attname for f in fields)],
        [
            (
                connection.ops.get_db_converters(f.get_col(table))
                + f.get_db_converters(connection),
                f.get_col(table),
            )
            for f in fields
        ],
    )


def accounts_sql(where: str, names: tuple[str, ...] | None = None) -> str:
    """``SELECT`` of the accounts whose members match ``where`` (aliases ``a`` for the
    account, ``m`` for the member), in member-id order and locked on PostgreSQL (on SQLite
    the ``BEGIN IMMEDIATE`` already holds the write lock); read each row with
    ``account_reader`` of the same ``names`` (the fields to load; None: all, the others
    stay deferred). The one order path and the batch lock accounts through it."""
    columns, _names, _converters = _account_reads(names, connection.vendor)
    lock = " FOR UPDATE OF a" if connection.vendor == "postgresql" else ""
    return (
        f"SELECT a.member_id, {columns}, m.number, m.status FROM loyalty_account a"  # noqa: S608
        f" JOIN members_member m ON m.id = a.member_id WHERE {where}"
        f" ORDER BY a.member_id{lock}"
    )


def account_reader(
    names: tuple[str, ...] | None = None,
) -> Callable[[tuple], tuple[Account, str, str]]:
    """A function reading an ``accounts_sql`` row (same ``names``) as (the account,
    converted as the ORM converts it, the member's number, the member's status)."""
    _columns, attnames, converters = _account_reads(names, connection.vendor)
    db = connections[connection.alias]  # not the per-access proxy: called per row
    alias = db.alias

    def read(row: tuple) -> tuple[Account, str, str]:
        values = [row[0]]
        for value, (field_converters, column) in zip(row[1:-2], converters, strict=True):
            for converter in field_converters:
                value = converter(value, column, db)
            values.append(value)
        return Account.from_db(alias, attnames, values), row[-2], row[-1]

    return read


def lock_account(number: str) -> tuple[Account, str] | None:
    """The member's account, locked, and the member's status, or None when the member has
    no account yet."""
    row = _fetchone(accounts_sql("m.number = %s"), [number])
    if row is None:
        return None
    account, _number, status = account_reader()(row)
    return account, status


def _fetchone(sql: str, params: list) -> tuple | None:
    """Run ``sql`` and return its first row. On PostgreSQL as a prepared statement with
    server-side parameters: psycopg prepares it once per connection, so the database plans
    the lock and the write chain once instead of at every order (planning was about half
    of the database's time per order). The statements type every parameter with a cast."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


@dataclass(frozen=True)
class _Row:
    """One row to insert; ``links`` names, per foreign key, the row whose new id it takes."""

    name: str
    obj: Model
    links: dict[str, str] = field(default_factory=dict)
    returning: bool = False


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
    entries and the account's pending balance; None when the order id is already taken
    (nothing is written then). ``account`` must be locked; its balance is updated in memory
    too. The figures are those of the window ending at ``at``; ``entry_key(kind)`` is the
    ledger key of the entry crediting that kind of points."""
    now = clock.now()
    tier = order.tier_at_paid
    purchase, rebate = earning.points_for(order.amount, tier, order.category, rules)
    rule = earning.rule_for(tier, order.category, rules)
    state = OrderState(
        status=order.status, refunded_amount=order.refunded_amount, received_at=order.created_at
    )
    rows = [_Row("o", order, returning=True), _Row("s", state, {"order_id": "o"})]
    lots: list[Lot] = []
    for kind, points in ((Lot.Source.PURCHASE, purchase), (Lot.Source.REBATE, rebate)):
        if points <= 0:
            continue
        lot = Lot(
            member_id=account.pk,
            source=kind,
            amount=points,
            remaining=points,
            status=Lot.Status.PENDING,
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
        name = f"l{len(lots)}"
        rows.append(_Row(name, lot, {"order_id": "o"}, returning=True))
        rows.append(_Row(f"e{len(lots)}", entry, {"order_id": "o", "lot_id": name}))
        lots.append(lot)
    pending = account.pending + sum(lot.amount for lot in lots)
    # The window's figures are read before the order is written (on PostgreSQL the
    # statement's snapshot does not see its own inserts), so the order is added below.
    window = figures.member_sql(account.pk, at, rules)
    balance = _db([pending, now, account.pk])
    if connection.vendor == "postgresql":
        found = _write_in_one(rows, balance, window)
    else:
        found = _write_one_by_one(rows, balance, window)
    if found is None:
        return None
    ids, (spend, count, loyalty) = found
    account.pending, account.updated_at = pending, now
    for row in rows:
        if row.returning:
            row.obj.pk = ids[row.name]
            row.obj._state.adding = False
            row.obj._state.db = connection.alias
    for lot in lots:
        lot.order = order
    spend = Decimal(str(spend))  # SQLite sums money as a float
    if figures.window_start(at, rules) < order.paid_at <= at:  # the order itself counts
        spend, count = spend + order.amount, count + 1
    return Written(order, lots, Figures(spend.quantize(CENT), int(count), int(loyalty)))


_BALANCE = "UPDATE loyalty_account SET pending = %s, updated_at = %s WHERE member_id = %s"


def _db(values: list) -> list:
    """Raw SQL gets the values the backend stores (SQLite keeps UTC text)."""
    adapt = connection.ops.adapt_datetimefield_value
    return [adapt(v) if isinstance(v, dt.datetime) else v for v in values]


def _values(row: _Row, link: Callable[[str], Any]) -> tuple[str, list]:
    """The row's value list and params; a linked field takes ``link(row name)``."""
    model = _fields(type(row.obj), connection.vendor)
    values, params = [], []
    for f, placeholder in model.fields:
        if f.attname in row.links:
            expression, extra = link(row.links[f.attname])
            values.append(expression)
            params += extra
        else:
            values.append(placeholder)
            value = getattr(row.obj, f.attname)
            if f.attname in model.prepared:
                value = f.get_db_prep_save(value, connection)
            params.append(value)
    return ", ".join(values), params


def _write_in_one(rows: list[_Row], balance: list, window: tuple[str, list]) -> tuple | None:
    """PostgreSQL: every row, the balance and the figures in one ``WITH`` chain."""
    parts, params = [], []
    for row in rows:
        model = _fields(type(row.obj), connection.vendor)
        values, row_params = _values(row, lambda name: (f"{name}.id", []))
        sources = sorted(set(row.links.values()))
        source = f" FROM {', '.join(sources)}" if sources else ""
        conflict = " ON CONFLICT (order_id) DO NOTHING" if row.name == "o" else ""
        tail = " RETURNING id" if row.returning else ""
        parts.append(
            f"{row.name} AS (INSERT INTO {model.table} ({model.columns})"
            f" SELECT {values}{source}{conflict}{tail})"
        )
        params += row_params
    parts.append(f"a AS ({_BALANCE} AND EXISTS (SELECT 1 FROM o))")  # noqa: S608
    params += balance
    parts.append(f"w AS ({window[0]})")
    params += window[1]
    named = [row.name for row in rows if row.returning]
    statement = "WITH " + ", ".join(parts)
    statement += f" SELECT w.spend, w.orders, w.loyalty, {', '.join(f'{n}.id' for n in named)}"
    statement += f" FROM w, {', '.join(named)}"
    found = _fetchone(statement, params)
    if found is None:  # the order id was taken: the chain wrote nothing
        return None
    return dict(zip(named, found[3:], strict=True)), found[:3]


def _write_one_by_one(rows: list[_Row], balance: list, window: tuple[str, list]) -> tuple | None:
    """SQLite: the figures first, then the rows, each ``INSERT ... RETURNING`` its id."""
    ids: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(*window)
        spend, count, loyalty = cursor.fetchone()
        for row in rows:
            model = _fields(type(row.obj), connection.vendor)
            values, params = _values(row, lambda name: ("%s", [ids[name]]))
            conflict = " ON CONFLICT (order_id) DO NOTHING" if row.name == "o" else ""
            tail = " RETURNING id" if row.returning else ""
            cursor.execute(
                f"INSERT INTO {model.table} ({model.columns})"  # noqa: S608
                f" VALUES ({values}){conflict}{tail}",
                params,
            )
            if row.returning:
                found = cursor.fetchone()
                if found is None:  # only the first row, the order, can be skipped
                    return None
                ids[row.name] = found[0]
        cursor.execute(_BALANCE, balance)
    return ids, (spend, count, loyalty)
