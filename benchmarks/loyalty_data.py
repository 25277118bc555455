"""Loyalty benchmark data, hand-written SQL baselines and the in-process job runs (issue 3).

``python -m benchmarks.loyalty_data <command>`` inside a configured Django (benchmarks/
loyalty.py runs each command in its own process, with the benchmark's settings):

- ``generate``: members, accounts, orders, loyalty events, points lots with their ledger
  entries and allocations, an API key and the ``bench_ping`` table. Set-based SQL only:
  ``generate_series`` on PostgreSQL, a recursive CTE on SQLite, in chunks of rows; no Python
  loop per row. Every value is a deterministic hash of the row number, so the same
  arguments give the same rows on either database.
- ``tiers-sql``: the hand-written aggregate of the evaluation window (the baseline of
  ``evaluate-tiers``); ``tiers-job``: ``patron.loyalty.jobs.evaluate_tiers``.
- ``expire-sql``: hand-written SQL making the writes expiry makes (entries, allocations,
  lots zeroed and expired, accounts' available reduced); ``expire-job``:
  ``patron.loyalty.jobs.expire_points``. Both then run ``verify_ledger`` and summarise the
  ledger, so the writes of the two can be compared.

The data set (``DataSpec``; M members, N orders, L expiring lots):

- members ``1..M`` (their ids), each with a user, an account and a valid 12-digit Luhn
  member number; name and phone hold one shared ciphertext made once with the run's key
  ring; blind indexes are NULL.
- orders over the 15 months before the as-of date. Orders ``1..1.5 L`` are the orders the
  lots below were earned on (member ``(n-1) % M + 1``, delivered); the others go to members
  drawn 70% uniformly and 30% skewed towards low ids (a long tail of frequent buyers), with
  a status mix: mostly delivered, 5% cancelled, 4% refunded in full, 3% in part, 3% paid and
  never delivered, and paid (not yet delivered) in the last 3 days.
- loyalty events: every 20th member joined 13 activities over the last 14 months.
- lots: ``L`` lots that expired in the 30 days before the as-of date and ``L/2`` that expire
  in the 11 months after it, each with its ``earn`` entry; every 4th lot is half spent by a
  ``redeem`` entry with its allocation. An account's ``available`` is the sum of its lots'
  ``remaining``; its tier is what the previous quarter's evaluation gave.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

DAY = 86_400
PRIME = 2_147_483_647  # 2**31 - 1: every product stays below 2**62, exact in both databases
WINDOW_SECONDS = 456 * DAY  # orders over the last 15 months
ORDER_PREFIX = "bench-"
PING_TABLE = "bench_ping"
CHUNK = {"postgresql": 1_000_000, "sqlite": 250_000}
CATEGORIES = ("ticket", "concession", "merchandise")
LEDGER_TABLES = (
    "members_user",
    "members_member",
    "loyalty_account",
    "loyalty_order",
    "loyalty_loyaltyevent",
    "loyalty_lot",
    "loyalty_entry",
    "loyalty_allocation",
    "loyalty_tierchange",
)


@dataclass(frozen=True)
class DataSpec:
    members: int
    orders: int
    lots: int  # lots expiring before the as-of date
    as_of: dt.date
    time_zone: str = "Asia/Shanghai"

    @property
    def live_lots(self) -> int:
        """Lots that do not expire by the as-of date."""
        return self.lots // 2

    @property
    def lot_orders(self) -> int:
        return self.lots + self.live_lots

    def check(self) -> None:
        if self.members < 20 or self.lots < 4:
            raise ValueError("at least 20 members and 4 lots")
        if self.orders < self.lot_orders:
            raise ValueError("orders must be at least 1.5 x lots (each lot has its order)")

    def boundary(self) -> dt.datetime:
        """Start of the as-of date in the program's time zone (aware, UTC)."""
        return local_midnight(self.as_of, self.time_zone)


def local_midnight(day: dt.date, time_zone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), ZoneInfo(time_zone)).astimezone(dt.UTC)


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return dt.date(year, month0 + 1, min(day.day, last))


def evaluation_date(today: dt.date, months: tuple[int, ...] = (1, 4, 7, 10)) -> dt.date:
    """The latest periodic evaluation date (1st of an evaluation month) on or before today."""
    day = today.replace(day=1)
    for _ in range(12):
        if day.month in months:
            return day
        day = add_months(day, -1)
    return today.replace(day=1)


# --- SQL building blocks: the same text on both databases ---------------------------------
# Statements always go through Django's cursor with a parameter list, so a literal % is %%.


def h(column: str, salt: int) -> str:
    """A deterministic pseudo-random integer in [0, PRIME) from a row number: a quadratic
    map modulo a prime, exact in 64-bit integers on PostgreSQL and SQLite alike."""
    a = 1_103_515_245 + 7_919 * salt
    c = 12_345 + 104_729 * salt
    x = f"(({column} * {a} + {c}) %% {PRIME})"
    return f"(((({x} * {x}) %% {PRIME}) * 48271 + {x}) %% {PRIME})"


def member_number_sql(column: str) -> str:
    """A valid member number as SQL text (11 digits, the first 9, and a Luhn check digit);
    ``member_number(n)`` gives the same in Python."""
    body = f"(90000000000 + ({column} * 7919) %% 10000000000)"
    terms = []
    for position in range(11):
        digit = f"(({body} / {10**position}) %% 10)"
        if position % 2 == 0:  # doubled once the check digit is appended
            terms.append(f"(CASE WHEN {digit} > 4 THEN {digit} * 2 - 9 ELSE {digit} * 2 END)")
        else:
            terms.append(digit)
    check = f"((10 - ({' + '.join(terms)}) %% 10) %% 10)"
    return f"(CAST({body} AS TEXT) || CAST({check} AS TEXT))"


def member_number(n: int) -> str:
    from patron.core.ids import luhn_check_digit

    body = str(90_000_000_000 + (n * 7919) % 10_000_000_000)
    return body + luhn_check_digit(body)


class Dialect:
    """What differs between PostgreSQL and SQLite: the row series and time arithmetic."""

    def __init__(self, vendor: str):
        self.vendor = vendor
        self.pg = vendor == "postgresql"

    def series(self) -> tuple[str, str]:
        """(statement prefix, FROM item) numbering rows ``g.n`` between two %s bounds."""
        if self.pg:
            return "", "generate_series(CAST(%s AS bigint), CAST(%s AS bigint)) AS g(n)"
        return (
            "WITH RECURSIVE g(n) AS (SELECT %s UNION ALL SELECT n + 1 FROM g WHERE n < %s) ",
            "g",
        )

    def before(self, seconds: str) -> str:
        """The boundary (one %s) minus an integer SQL expression of seconds."""
        if self.pg:
            return f"(CAST(%s AS timestamptz) - ({seconds}) * interval '1 second')"
        return f"datetime(%s, CAST(-({seconds}) AS TEXT) || ' seconds')"

    def plus_months(self, column: str, months: int) -> str:
        if self.pg:
            return f"({column} + interval '{months} months')"
        return f"datetime({column}, '+{months} months')"

    def plus_days(self, column: str, days: int) -> str:
        if self.pg:
            return f"({column} + interval '{days} days')"
        return f"datetime({column}, '+{days} days')"

    def param(self, moment: dt.datetime) -> Any:
        # Django keeps SQLite datetimes as UTC text, compared as text.
        if self.pg:
            return moment
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


Expr = str | tuple[str, list[Any]]  # SQL text, or SQL text with its %s parameters


def _placeholders(text: str) -> int:
    return text.replace("%%", "").count("%s")


def insert_select(
    model: Any,
    overrides: dict[str, Expr],
    source: str,
    source_params: list[Any],
    prefix: str = "",
    prefix_params: tuple[Any, ...] | list[Any] = (),
) -> int:
    """``[prefix] INSERT INTO <model's table> (...) SELECT ... FROM <source>``.

    ``overrides`` maps field names to SQL expressions (with their parameters); every other
    column gets its model default as a parameter, so a column added to the model later does
    not break the generator; an auto primary key not named is left to the database.
    """
    from django.db import connection

    quote = connection.ops.quote_name
    columns: list[str] = []
    expressions: list[str] = []
    values: list[Any] = list(prefix_params)
    named = set()
    for field in model._meta.concrete_fields:
        given = overrides.get(field.name, overrides.get(field.attname))
        if given is not None:
            named.update({field.name, field.attname})
            text, params = (given, []) if isinstance(given, str) else given
            if _placeholders(text) != len(params):
                raise ValueError(f"{model.__name__}.{field.name}: parameters do not match")
            values.extend(params)
        elif field.primary_key or (field.has_db_default() and not field.has_default()):
            continue
        else:
            values.append(field.get_db_prep_save(field.get_default(), connection))
            text = (
                "%s"
                if connection.vendor == "sqlite"
                else f"CAST(%s AS {field.cast_db_type(connection)})"
            )
        columns.append(quote(field.column))
        expressions.append(text)
    unknown = set(overrides) - named
    if unknown:
        raise ValueError(f"{model.__name__} has no field {sorted(unknown)}")
    values.extend(source_params)
    sql = (
        f"{prefix}INSERT INTO {quote(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM {source}"
    )
    if _placeholders(sql) != len(values):
        raise ValueError(
            f"{model.__name__}: {_placeholders(sql)} placeholders, {len(values)} values"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.rowcount


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(1, total + 1, size):
        yield start, min(total, start + size - 1)


def insert_series(
    dialect: Dialect,
    model: Any,
    total: int,
    overrides: dict[str, Expr],
    source: str = "(SELECT g.n AS n FROM {series}) q",
    chunk: int | None = None,
) -> int:
    """Rows numbered ``q.n`` = 1..total, in chunks, each its own transaction. ``source``
    names the series as ``{series}`` and has no parameters of its own."""
    from django.db import transaction

    if "%s" in source:
        raise ValueError("the source may not take parameters")
    rows = 0
    for start, stop in chunks(total, chunk or CHUNK[dialect.vendor]):
        prefix, series = dialect.series()
        text = source.format(series=series)
        bounds = [start, stop]
        with transaction.atomic():
            rows += insert_select(
                model,
                overrides,
                text,
                [] if prefix else bounds,
                prefix=prefix,
                prefix_params=bounds if prefix else (),
            )
    return rows


# --- Tier rules as SQL ---------------------------------------------------------------------


def tier_case(rules: Any, spend: str, orders: str, loyalty: str) -> str:
    """SQL CASE: the highest tier whose thresholds the three figures meet."""
    figures = {"spend": spend, "orders": orders, "loyalty": loyalty}
    whens = []
    for tier in reversed(rules.tiers[1:]):
        conditions = [f"{figures[m]} >= {v}" for m, v in tier.all_of.items()]
        if tier.any_of:
            either = " OR ".join(f"{figures[m]} >= {v}" for m, v in tier.any_of.items())
            conditions.append(f"({either})")
        whens.append(f"WHEN {' AND '.join(conditions) or '1 = 1'} THEN '{tier.code}'")
    return f"CASE {' '.join(whens)} ELSE '{rules.tiers[0].code}' END"


def tier_window(as_of: dt.date, rules: Any, shift_months: int = 0) -> tuple[dt.datetime, ...]:
    """``(start, end]`` of the qualification window of an evaluation at the start of the
    as-of date (``shift_months`` earlier), in the program's time zone, as
    ``patron.loyalty.figures`` defines it."""
    end = add_months(as_of, -shift_months)
    start = add_months(end, -rules.window_months)
    return local_midnight(start, rules.time_zone), local_midnight(end, rules.time_zone)


def tier_aggregate_sql(rules: Any) -> str:
    """Every account's qualified tier over a window: four %s (order window start, end; event
    window start, end). The figures as ``patron.loyalty.figures`` defines them: spend is the
    amount net of refunds of orders not cancelled; orders counts those not cancelled and not
    refunded in full; loyalty is the score of the events in the window."""
    case = tier_case(
        rules, "COALESCE(o.spend, 0)", "COALESCE(o.orders, 0)", "COALESCE(l.loyalty, 0)"
    )
    return f"""
        SELECT a.member_id AS member_id, {case} AS tier
        FROM loyalty_account a
        LEFT JOIN (
            SELECT member_id,
                   SUM(CASE WHEN status <> 'cancelled' THEN amount - refunded_amount ELSE 0 END)
                       AS spend,
                   SUM(CASE WHEN status <> 'cancelled' AND refunded_amount < amount
                            THEN 1 ELSE 0 END) AS orders
            FROM loyalty_order
            WHERE paid_at > %s AND paid_at <= %s
            GROUP BY member_id
        ) o ON o.member_id = a.member_id
        LEFT JOIN (
            SELECT member_id, SUM(score) AS loyalty FROM loyalty_loyaltyevent
            WHERE occurred_at > %s AND occurred_at <= %s
            GROUP BY member_id
        ) l ON l.member_id = a.member_id
    """


def _window_params(dialect: Dialect, as_of: dt.date, rules: Any, shift: int = 0) -> list[Any]:
    start, end = tier_window(as_of, rules, shift)
    return [dialect.param(start), dialect.param(end)] * 2


# --- The generator -------------------------------------------------------------------------


def generate(
    spec: DataSpec, log: Callable[[str], None] = print, analyze: bool = True
) -> dict[str, Any]:
    """Write the data set into the default database (migrated, no loyalty data yet)."""
    from django.db import connection, transaction

    from patron.api.keys import SCOPES, create_api_key
    from patron.core import crypto
    from patron.core.audit import Actor
    from patron.loyalty import rules as loyalty_rules
    from patron.loyalty.models import Account, Allocation, Entry, Lot, LoyaltyEvent, Order
    from patron.members.models import Member, User

    spec.check()
    d = Dialect(connection.vendor)
    rules = loyalty_rules.current()
    b = d.param(spec.boundary())
    members, lots, live = spec.members, spec.lots, spec.live_lots
    lot_orders = spec.lot_orders
    base_tier = f"'{rules.tiers[0].code}'"
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - started, 2)
        log(f"  {name}: {timings[name]} s")
        return result

    if d.pg:
        with connection.cursor() as cursor:
            # A loader's session settings: the data is regenerated, never recovered.
            cursor.execute("SET synchronous_commit = off", [])
            cursor.execute("SET maintenance_work_mem = '512MB'", [])
            cursor.execute("SET work_mem = '256MB'", [])
    loaded = [m._meta.db_table for m in (User, Member, Account, Order, LoyaltyEvent, Lot, Entry)]
    loaded.append(Allocation._meta.db_table)
    rebuild = step("drop_indexes", lambda: drop_indexes(loaded)) if d.pg else []

    def at(text: str) -> Expr:
        """An expression whose every %s is the boundary."""
        return text, [b] * _placeholders(text)

    # One ciphertext per encrypted column, made once with the run's key ring.
    name_cipher = crypto.encrypt("会员")
    phone_cipher = crypto.encrypt("+8613800000000")
    joined = at(d.before(f"{WINDOW_SECONDS} + q.n %% {DAY}"))

    step(
        "users",
        lambda: insert_series(
            d,
            User,
            members,
            {
                "id": "q.n",
                "username": "'lb' || CAST(q.n AS TEXT)",
                "password": "'!bench'",  # unusable: these members do not sign in
                "date_joined": joined,
            },
        ),
    )
    step(
        "members",
        lambda: insert_series(
            d,
            Member,
            members,
            {
                "id": "q.n",
                "user": "q.n",
                "number": member_number_sql("q.n"),
                "kind": "'individual'",
                "status": "'active'",
                "name": ("%s", [name_cipher]),
                "phone": ("%s", [phone_cipher]),
                "phone_verified_at": joined,
                "created_at": joined,
                "updated_at": joined,
            },
        ),
    )
    step(
        "accounts",
        lambda: insert_series(
            d,
            Account,
            members,
            {"member": "q.n", "tier": base_tier, "tier_since": joined, "updated_at": joined},
        ),
    )

    # Orders: hashes of n first, then member and age (seconds before the boundary it was
    # paid) from them, then the columns. A lot order n <= lot_orders pays for lot n, which
    # expires ``expires_in`` seconds before the boundary (negative: after it): an expiring
    # lot in the 30 days before, a live one in the 11 months after. The lot became
    # available 365 days before it expires, when the return window closed (delivered + 7
    # days); the order was delivered a day after it was paid.
    expires_in = (
        f"(CASE WHEN r.n <= {lots} THEN {DAY} + r.hx %% {29 * DAY} "
        f"ELSE -({DAY} + r.hx %% {330 * DAY}) END)"
    )
    skewed = f"(((r.hm %% 1000003) * (r.hm %% 1000003) / 1000003) * {members} / 1000003)"
    member = (
        f"(CASE WHEN r.n <= {lot_orders} THEN (r.n - 1) %% {members} + 1 "
        f"WHEN r.hb %% 10 < 7 THEN r.hm %% {members} + 1 ELSE {skewed} + 1 END)"
    )
    age = (
        f"(CASE WHEN r.n <= {lot_orders} THEN {expires_in} + {373 * DAY} "
        f"ELSE 1 + r.ha %% {WINDOW_SECONDS} END)"
    )
    salts = ((1, "hm"), (2, "ha"), (3, "hs"), (4, "hp"), (5, "hc"), (6, "hx"), (7, "hb"))
    hashes = ", ".join(f"{h('g.n', salt)} AS {name}" for salt, name in salts)
    order_source = (
        f"(SELECT r.*, {member} AS member_id, {age} AS age, r.hs %% 100 AS bucket, "
        # Amount 9.90 .. about 1,010 CNY, most orders small (mean about 260).
        "CAST(990 + (r.hp %% 1000) * (r.hp %% 1000) * (r.hp %% 1000) / 10000 + r.hp %% 97 "
        "AS INTEGER) AS cents "
        f"FROM (SELECT g.n AS n, {hashes} FROM {{series}}) r) q"
    )
    recent = 3 * DAY
    old = f"q.n > {lot_orders} AND q.age >= {recent}"
    status = (
        f"(CASE WHEN q.n <= {lot_orders} THEN 'delivered' "
        "WHEN q.bucket < 5 THEN 'cancelled' "
        f"WHEN q.age < {recent} THEN 'paid' "
        "WHEN q.bucket < 12 THEN 'refunded' "
        "WHEN q.bucket < 15 THEN 'paid' ELSE 'delivered' END)"
    )
    refunded = (
        f"(CASE WHEN {old} AND q.bucket >= 5 AND q.bucket < 9 THEN q.cents / 100.0 "
        f"WHEN {old} AND q.bucket >= 9 AND q.bucket < 12 THEN (q.cents * 3 / 10) / 100.0 "
        "ELSE 0 END)"
    )
    delivered = (
        f"(q.n <= {lot_orders} OR (q.age >= {recent} AND (q.bucket >= 15 "
        "OR (q.bucket >= 5 AND q.bucket < 12))))"
    )
    paid_at = d.before("q.age")
    delivered_at = d.before(f"q.age - {DAY}")
    final_at = d.before(f"q.age - {8 * DAY}")
    category = (
        f"(CASE q.hc %% 3 WHEN 0 THEN '{CATEGORIES[0]}' WHEN 1 THEN '{CATEGORIES[1]}' "
        f"ELSE '{CATEGORIES[2]}' END)"
    )
    step(
        "orders",
        lambda: insert_series(
            d,
            Order,
            spec.orders,
            {
                "id": "q.n",
                "order_id": f"'{ORDER_PREFIX}' || CAST(q.n AS TEXT)",
                "member": "q.member_id",
                "amount": "q.cents / 100.0",
                "currency": "'CNY'",
                "category": category,
                "store": "'S' || CAST(q.hc %% 40 AS TEXT)",
                "status": status,
                "refunded_amount": refunded,
                "paid_at": at(paid_at),
                "delivered_at": at(f"(CASE WHEN {delivered} THEN {delivered_at} END)"),
                "final_at": at(f"(CASE WHEN {delivered} THEN {final_at} END)"),
                "tier_at_paid": base_tier,
                "created_at": at(paid_at),
                "updated_at": at(f"(CASE WHEN {delivered} THEN {delivered_at} ELSE {paid_at} END)"),
            },
            order_source,
        ),
    )

    # Loyalty events: every 20th member joined 13 activities over the last 14 months.
    occurred = at(d.before(f"1 + {h('q.n', 8)} %% {425 * DAY}"))
    step(
        "loyalty_events",
        lambda: insert_series(
            d,
            LoyaltyEvent,
            (members // 20) * 13,
            {
                "member": "((q.n - 1) / 13) * 20 + 1",
                "kind": "'activity'",
                "name": "'bench'",
                "score": "1",
                "occurred_at": occurred,
                "key": "'bench-activity-' || CAST(q.n AS TEXT)",
                "created_at": occurred,
            },
        ),
    )

    # Lots from their orders, one point per whole yuan; every 4th half spent.
    all_lots = lots + live
    # Whole yuan, the same on both databases (SQLite keeps the amount as a float).
    points = "(CAST(ROUND(o.amount * 100) AS INTEGER) / 100)"
    step(
        "lots",
        lambda: insert_series(
            d,
            Lot,
            all_lots,
            {
                "id": "q.n",
                "member": "o.member_id",
                "source": "'purchase'",
                "order": "o.id",
                "amount": points,
                "remaining": (
                    f"(CASE WHEN q.n %% 4 = 0 THEN {points} - {points} / 2 ELSE {points} END)"
                ),
                "status": "'available'",
                "release_at": "o.final_at",
                "available_at": "o.final_at",
                "expires_at": d.plus_days("o.final_at", 365),
                "created_at": "o.paid_at",
            },
            "(SELECT g.n AS n FROM {series}) q JOIN loyalty_order o ON o.id = q.n"
            f" AND o.id <= {all_lots}",
        ),
    )
    step(
        "earn_entries",
        lambda: insert_series(
            d,
            Entry,
            all_lots,
            {
                "id": "q.n",
                "member": "l.member_id",
                "kind": "'earn'",
                "points": "l.amount",
                "key": "'bench-earn-' || CAST(q.n AS TEXT)",
                "order": "l.order_id",
                "lot": "l.id",
                "reason": "'purchase'",
                "created_at": "l.available_at",
            },
            "(SELECT g.n AS n FROM {series}) q JOIN loyalty_lot l ON l.id = q.n"
            f" AND l.id <= {all_lots}",
        ),
    )
    spent = all_lots // 4
    spent_source = "(SELECT g.n AS n FROM {series}) q JOIN loyalty_lot l ON l.id = 4 * q.n"
    step(
        "redeem_entries",
        lambda: insert_series(
            d,
            Entry,
            spent,
            {
                "id": f"{all_lots} + q.n",
                "member": "l.member_id",
                "kind": "'redeem'",
                "points": "l.remaining - l.amount",
                "key": "'bench-redeem-' || CAST(q.n AS TEXT)",
                "reason": "'reward'",
                "created_at": d.plus_days("l.available_at", 30),
            },
            spent_source,
        ),
    )
    step(
        "allocations",
        lambda: insert_series(
            d,
            Allocation,
            spent,
            {
                "id": "q.n",
                "entry": f"{all_lots} + q.n",
                "lot": "l.id",
                "points": "l.remaining - l.amount",
            },
            spent_source,
        ),
    )

    def balances_and_tiers() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE loyalty_account SET available = x.total FROM ("
                " SELECT member_id, SUM(remaining) AS total FROM loyalty_lot"
                " WHERE status = 'available' GROUP BY member_id) x"
                " WHERE loyalty_account.member_id = x.member_id",
                [],
            )
            # The tiers the previous quarter's evaluation gave.
            cursor.execute(
                f"UPDATE loyalty_account SET tier = x.tier FROM ({tier_aggregate_sql(rules)}) x"
                f" WHERE loyalty_account.member_id = x.member_id AND x.tier <> {base_tier}",
                _window_params(d, spec.as_of, rules, shift=3),
            )

    if d.pg:
        step("rebuild_indexes", lambda: rebuild_indexes(rebuild))
    step("balances_and_tiers", balances_and_tiers)

    def sequences() -> None:
        if not d.pg:
            return  # SQLite's AUTOINCREMENT follows explicit ids by itself
        with connection.cursor() as cursor:
            for model in (User, Member, Order, LoyaltyEvent, Lot, Entry, Allocation):
                table = model._meta.db_table
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT COALESCE(MAX(id), 1) FROM {table}))",
                    [],
                )

    step("sequences", sequences)
    step("ping_table", create_ping_table)
    key = create_api_key(name="loyalty-benchmark", scopes=sorted(SCOPES), actor=Actor.system())
    if analyze:
        step("analyze", lambda: maintain(vacuum=True))
    return {
        "spec": {**asdict(spec), "as_of": spec.as_of.isoformat()},
        "timings": timings,
        "seconds": round(sum(timings.values()), 1),
        "counts": table_counts(),
        "api_key": key.secret,
        "scopes": sorted(SCOPES),
    }


def drop_indexes(tables: list[str]) -> list[str]:
    """PostgreSQL bulk load: drop the tables' secondary indexes and unique constraints and
    turn off foreign-key triggers for this session (the generated rows are consistent by
    construction, which the smoke test and ``verify_ledger`` check). Returns the
    statements that put them back, for ``rebuild_indexes``. Building an index once over
    millions of rows is several times faster than maintaining it row by row."""
    from django.db import connection

    back: list[str] = []
    with connection.cursor() as cursor:
        try:
            cursor.execute("SET session_replication_role = replica", [])
        except Exception:  # not a superuser: the checks stay on, the load is slower
            connection.rollback()
        for table in tables:
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(%s AS regclass) AND contype = 'u'",
                [table],
            )
            constraints = cursor.fetchall()
            cursor.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i"
                " WHERE i.schemaname = current_schema() AND i.tablename = %s AND NOT EXISTS ("
                "  SELECT 1 FROM pg_constraint c WHERE c.conrelid = CAST(%s AS regclass)"
                "  AND c.conindid = CAST(quote_ident(i.indexname) AS regclass))",
                [table, table],
            )
            indexes = cursor.fetchall()
            for name, definition in constraints:
                cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"', [])
                back.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
            for name, definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"', [])
                back.append(definition)
    return back


def rebuild_indexes(statements: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement.replace("%", "%%"), [])
        cursor.execute("SET session_replication_role = origin", [])


def maintain(vacuum: bool) -> None:
    """Statistics (and on PostgreSQL the visibility map) as a database in service has them,
    and a checkpoint, so the next measurement does not pay for the load's writes."""
    from django.db import connection

    if connection.vendor == "postgresql":
        connection.ensure_connection()
        raw = connection.connection
        previous = raw.autocommit
        raw.autocommit = True
        try:
            raw.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
            raw.execute("CHECKPOINT")
        finally:
            raw.autocommit = previous
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE", [])
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)", [])


def create_ping_table() -> None:
    """The table ``POST /api/v1/bench/ping`` writes to (made here, not by a migration)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        sql = (
            f"CREATE TABLE IF NOT EXISTS {PING_TABLE} (id bigserial PRIMARY KEY,"
            " note varchar(64) NOT NULL, created_at timestamptz NOT NULL)"
        )
    else:
        sql = (
            f"CREATE TABLE IF NOT EXISTS {PING_TABLE} (id integer PRIMARY KEY AUTOINCREMENT,"
            " note varchar(64) NOT NULL, created_at datetime NOT NULL)"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [])


def table_counts() -> dict[str, int]:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for table in LEDGER_TABLES:
            cursor.execute(f"SELECT COUNT(*) FROM {table}", [])
            counts[table] = cursor.fetchone()[0]
    return counts


def ledger_summary() -> dict[str, Any]:
    """Counts and sums of the ledger: what two runs that made the same writes agree on."""
    from django.db import connection

    out: dict[str, Any] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, COUNT(*), COALESCE(SUM(points), 0) FROM loyalty_entry GROUP BY kind"
            " ORDER BY kind",
            [],
        )
        out["entries"] = {k: {"count": c, "points": int(p)} for k, c, p in cursor.fetchall()}
        cursor.execute(
            "SELECT status, COUNT(*), COALESCE(SUM(remaining), 0) FROM loyalty_lot"
            " GROUP BY status ORDER BY status",
            [],
        )
        out["lots"] = {k: {"count": c, "remaining": int(r)} for k, c, r in cursor.fetchall()}
        cursor.execute("SELECT COUNT(*), COALESCE(SUM(points), 0) FROM loyalty_allocation", [])
        count, total = cursor.fetchone()
        out["allocations"] = {"count": count, "points": int(total)}
        cursor.execute(
            "SELECT COALESCE(SUM(available), 0), COALESCE(SUM(pending), 0),"
            " COALESCE(SUM(debt), 0) FROM loyalty_account",
            [],
        )
        available, pending, debt = cursor.fetchone()
        out["accounts"] = {"available": int(available), "pending": int(pending), "debt": int(debt)}
        cursor.execute("SELECT tier, COUNT(*) FROM loyalty_account GROUP BY tier ORDER BY tier", [])
        out["tiers"] = dict(cursor.fetchall())
    return out


# --- Baselines and jobs --------------------------------------------------------------------


def tiers_sql(as_of: dt.date, repeat: int = 2) -> dict[str, Any]:
    """The hand-written aggregate: every account's qualified tier over the window, counted
    per tier (run ``repeat`` times; the first warms the operating system's cache for the
    rest). Each run opens a new connection: the job runs once in a new process, so a run
    may not find pages in a connection's own cache (SQLite's, 64 MB) that the job could not
    have either."""
    from django.db import connection

    from patron.loyalty import rules as loyalty_rules

    rules = loyalty_rules.current()
    d = Dialect(connection.vendor)
    sql = f"SELECT tier, COUNT(*) FROM ({tier_aggregate_sql(rules)}) x GROUP BY tier"
    runs, tiers = [], {}
    for _ in range(repeat):
        if not connection.in_atomic_block:  # a test's transaction holds its data
            connection.close()
        connection.ensure_connection()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql, _window_params(d, as_of, rules))
            tiers = dict(cursor.fetchall())
        runs.append(round(time.perf_counter() - started, 3))
    start, end = tier_window(as_of, rules)
    return {
        "seconds": min(runs),
        "runs": runs,
        "tiers": tiers,
        "window": [start.isoformat(), end.isoformat()],
        "sql": " ".join(sql.split()),
    }


def tiers_mismatch(as_of: dt.date) -> int:
    """Accounts whose tier differs from the aggregate's (after the job: should be none)."""
    from django.db import connection

    from patron.loyalty import rules as loyalty_rules

    rules = loyalty_rules.current()
    d = Dialect(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM loyalty_account a JOIN ({tier_aggregate_sql(rules)}) x"
            " ON x.member_id = a.member_id WHERE a.tier <> x.tier",
            _window_params(d, as_of, rules),
        )
        return cursor.fetchone()[0]


def expire_sql(as_of: dt.date) -> dict[str, Any]:
    """Hand-written SQL making expiry's writes, in one transaction: lots of members whose
    tier grants an expiry extension and that were never extended move their expiry instead
    (by the tier's months; the job rounds to the end of the last usable day, which changes
    no count); every other available lot whose ``expires_at`` is at or before the start of
    the as-of date gets an ``expire`` entry and its allocation, is zeroed and ``expired``,
    and its account's ``available`` goes down."""
    from django.db import connection, transaction

    from patron.core import clock
    from patron.loyalty import rules as loyalty_rules

    rules = loyalty_rules.current()
    d = Dialect(connection.vendor)
    cutoff = d.param(local_midnight(as_of, rules.time_zone))
    now = d.param(clock.now())
    started = time.perf_counter()
    extensions = [
        (
            "UPDATE loyalty_lot SET"
            f" expires_at = {d.plus_months('expires_at', t.expiry_extension_months)},"
            f" extended_months = extended_months + {t.expiry_extension_months}"
            " WHERE status = 'available' AND expires_at <= %s AND extended_months = 0"
            " AND member_id IN (SELECT member_id FROM loyalty_account WHERE tier = %s)",
            [cutoff, t.code],
        )
        for t in rules.tiers
        if t.expiry_extension_months
    ]
    statements = [
        *extensions,
        (
            "CREATE TEMPORARY TABLE bench_expiring AS"
            " SELECT id AS lot_id, member_id, remaining,"
            " ROW_NUMBER() OVER (ORDER BY id) + (SELECT COALESCE(MAX(id), 0) FROM loyalty_entry)"
            " AS entry_id"
            " FROM loyalty_lot WHERE status = 'available' AND expires_at <= %s",
            [cutoff],
        ),
        ("ANALYZE bench_expiring", []) if d.pg else None,
        (
            "INSERT INTO loyalty_entry (id, member_id, kind, points, pending_delta, debt_delta,"
            " key, order_id, lot_id, redemption_id, reason, actor_type, actor_id, created_at)"
            " SELECT entry_id, member_id, 'expire', -remaining, 0, 0,"
            " 'bench-expire-' || CAST(lot_id AS TEXT), NULL, lot_id, NULL, 'expired', 'system',"
            " '', %s FROM bench_expiring WHERE remaining > 0",
            [now],
        ),
        (
            "INSERT INTO loyalty_allocation (entry_id, lot_id, points)"
            " SELECT entry_id, lot_id, -remaining FROM bench_expiring WHERE remaining > 0",
            [],
        ),
        (
            "UPDATE loyalty_lot SET remaining = 0, status = 'expired'"
            " WHERE id IN (SELECT lot_id FROM bench_expiring)",
            [],
        ),
        (
            "UPDATE loyalty_account SET available = available - x.total, updated_at = %s FROM ("
            " SELECT member_id, SUM(remaining) AS total FROM bench_expiring WHERE remaining > 0"
            " GROUP BY member_id) x WHERE loyalty_account.member_id = x.member_id",
            [now],
        ),
        (
            "SELECT setval(pg_get_serial_sequence('loyalty_entry', 'id'),"
            " (SELECT MAX(id) FROM loyalty_entry))",
            [],
        )
        if d.pg
        else None,
    ]
    timings = []
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            if statement is None:
                continue
            began = time.perf_counter()
            cursor.execute(*statement)
            timings.append(round(time.perf_counter() - began, 3))
        commit_began = time.perf_counter()
        cursor.execute(
            "SELECT COUNT(*), COALESCE(SUM(remaining), 0) FROM bench_expiring WHERE remaining > 0",
            [],
        )
        lots, points = cursor.fetchone()
        cursor.execute("DROP TABLE bench_expiring", [])
    timings.append(round(time.perf_counter() - commit_began, 3))  # commit: deferred FK checks
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "lots": lots,
        "points": int(points),
        "statements": [" ".join(s[0].split()) for s in statements if s] + ["COMMIT"],
        "statement_seconds": timings,
    }


def _jobs() -> Any:
    from patron.loyalty import jobs

    return jobs


def run_job(name: str, as_of: dt.date) -> dict[str, Any]:
    """Call ``patron.loyalty.jobs.<name>(as_of=...)`` and time it."""
    from django.db import connection

    jobs = _jobs()
    fn = getattr(jobs, name)
    connection.ensure_connection()  # as the baseline: connecting is not the job's time
    started = time.perf_counter()
    result = fn(as_of=as_of)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "result": _jsonable(result)}


def verify() -> dict[str, Any]:
    from patron.loyalty.verify import verify_ledger

    started = time.perf_counter()
    result = verify_ledger()
    problems = getattr(result, "problems", None) or {}
    if isinstance(problems, dict):  # check name -> offenders
        listed: Any = {name: [str(x) for x in list(found)[:5]] for name, found in problems.items()}
        count = sum(len(found) for found in problems.values())
    else:
        listed = [str(p)[:300] for p in list(problems)[:10]]
        count = len(listed)
    return {
        "ok": bool(result.ok),
        "problems": count,
        "first_problems": listed,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _guard(fn: Callable[[], Any]) -> Any:
    """A step that may not exist yet (another part of the work): its error, not a crash."""
    try:
        return fn()
    except Exception as exc:  # reported in the benchmark output, never hidden
        return {"error": f"{type(exc).__name__}: {str(exc)[:1000]}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", choices=["generate", "tiers-sql", "tiers-job", "expire-sql", "expire-job"]
    )
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--lots", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    out: dict[str, Any]
    if args.command == "generate":
        spec = DataSpec(args.members, args.orders, args.lots, args.as_of)
        out = generate(spec, log=log)
        out["ledger"] = ledger_summary()
    elif args.command == "tiers-sql":
        out = tiers_sql(args.as_of, args.repeat)
    elif args.command == "tiers-job":
        out = _guard(lambda: run_job("evaluate_tiers", args.as_of))
        out["verify"] = _guard(verify)
        out["mismatch"] = _guard(lambda: tiers_mismatch(args.as_of))
        out["ledger"] = ledger_summary()
    elif args.command == "expire-sql":
        out = expire_sql(args.as_of)
        out["verify"] = _guard(verify)
        out["ledger"] = ledger_summary()
    else:
        out = _guard(lambda: run_job("expire_points", args.as_of))
        out["verify"] = _guard(verify)
        out["ledger"] = ledger_summary()
    args.out.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
