"""The qualifying figures of the rolling window (TIER-2), one definition for both uses.

- ``for_member``: one member's spend, orders and loyalty score now (order events, the tier API),
  and ``member_sql``, the same as SQL (the one-statement order path);
- ``window_sql`` + ``tier_case_sql``: the same figures and the tier they reach for every
  member at once, as SQL (the periodic evaluation, the console's dry run).

Definitions: the window is ``(at - window_months, at]`` on ``paid_at`` (orders) and
``occurred_at`` (loyalty events). Qualifying spend is the paid amount net of refunds of
orders not cancelled; qualifying orders are those not cancelled and not fully refunded;
the loyalty score is the sum of the scores of loyalty events (activities, referrals).
A test (``test_figures``) holds the Python and SQL forms to the same answers.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Case, DecimalField, F, Q, Sum, Value, When

from patron.loyalty.ledger import add_months
from patron.loyalty.models import LoyaltyEvent, Order
from patron.loyalty.rules import Rules, Tier


@dataclass(frozen=True)
class Figures:
    spend: Decimal
    orders: int
    loyalty: int

    def as_dict(self) -> dict[str, str | int]:
        return {"spend": str(self.spend), "orders": self.orders, "loyalty": self.loyalty}


def window_start(at: dt.datetime, rules: Rules) -> dt.datetime:
    """``at`` minus the window's months (same wall time; month ends clamp)."""
    day = add_months(at.date(), -rules.window_months)
    return at.replace(year=day.year, month=day.month, day=day.day)


def order_sums() -> dict[str, Sum]:
    """The window's order figures as ORM aggregates: ``spend`` (paid net of refunds, not
    cancelled) and ``orders`` (not cancelled, not refunded in full). Both are sums over the
    columns of the ``order_window`` index, so the database reads them from the index alone
    (a ``Count("id")`` would send every row to the table: the id is not in the index)."""
    counted = ~Q(status=Order.Status.CANCELLED)
    return {
        "spend": Sum(
            Case(
                When(counted, then=F("amount") - F("refunded_amount")),
                default=Value(Decimal(0)),
                output_field=DecimalField(max_digits=16, decimal_places=2),
            )
        ),
        "orders": Sum(
            Case(
                When(counted & Q(refunded_amount__lt=F("amount")), then=Value(1)),
                default=Value(0),
            )
        ),
    }


def for_member(member_id: int, at: dt.datetime, rules: Rules) -> Figures:
    start = window_start(at, rules)
    orders = Order.objects.filter(member_id=member_id, paid_at__gt=start, paid_at__lte=at)
    row = orders.aggregate(**order_sums())
    loyalty = LoyaltyEvent.objects.filter(
        member_id=member_id, occurred_at__gt=start, occurred_at__lte=at
    ).aggregate(s=Sum("score"))["s"]
    return Figures(
        spend=Decimal(row["spend"] or 0).quantize(Decimal("0.01")),
        orders=row["orders"] or 0,
        loyalty=loyalty or 0,
    )


def member_sql(member_id: int, at: dt.datetime, rules: Rules) -> tuple[str, list]:
    """``(sql, params)`` selecting one row ``spend, orders, loyalty``: ``for_member`` as SQL,
    for the order path, which reads it in the statement that writes the order."""
    start, end = _db_times(window_start(at, rules), at)
    sql = """
        SELECT o.spend, o.orders, e.loyalty FROM (
            SELECT COALESCE(SUM(CASE WHEN status <> 'cancelled'
                                     THEN amount - refunded_amount ELSE 0 END), 0) AS spend,
                   COALESCE(SUM(CASE WHEN status <> 'cancelled' AND refunded_amount < amount
                                     THEN 1 ELSE 0 END), 0) AS orders
            FROM loyalty_order WHERE member_id = %s AND paid_at > %s AND paid_at <= %s
        ) o, (
            SELECT COALESCE(SUM(score), 0) AS loyalty FROM loyalty_loyaltyevent
            WHERE member_id = %s AND occurred_at > %s AND occurred_at <= %s
        ) e
    """
    return sql, [member_id, start, end, member_id, start, end]


def _db_times(*moments: dt.datetime) -> list:
    # Raw SQL gets the values the backend stores: SQLite keeps UTC text and would compare
    # an aware local time ("...+08:00") as text, off by the offset.
    return [connection.ops.adapt_datetimefield_value(moment) for moment in moments]


def window_sql(at: dt.datetime, rules: Rules, *, lo: int | None = None, hi: int | None = None):
    """``(sql, params)`` selecting ``member_id, spend, orders, loyalty`` for every account
    (optionally those with ``lo <= member_id <= hi``), one aggregate pass over each table."""
    start = window_start(at, rules)
    rng, rng_params = "", []
    if lo is not None and hi is not None:
        rng, rng_params = " AND member_id BETWEEN %s AND %s", [lo, hi]
    sql = f"""
        SELECT a.member_id, COALESCE(o.spend, 0) AS spend, COALESCE(o.orders, 0) AS orders,
               COALESCE(e.loyalty, 0) AS loyalty, a.tier
        FROM loyalty_account a
        LEFT JOIN (
            SELECT member_id,
                   SUM(CASE WHEN status <> 'cancelled' THEN amount - refunded_amount ELSE 0 END)
                       AS spend,
                   SUM(CASE WHEN status <> 'cancelled' AND refunded_amount < amount
                            THEN 1 ELSE 0 END) AS orders
            FROM loyalty_order
            WHERE paid_at > %s AND paid_at <= %s{rng}
            GROUP BY member_id
        ) o ON o.member_id = a.member_id
        LEFT JOIN (
            SELECT member_id, SUM(score) AS loyalty
            FROM loyalty_loyaltyevent
            WHERE occurred_at > %s AND occurred_at <= %s{rng}
            GROUP BY member_id
        ) e ON e.member_id = a.member_id
        WHERE 1 = 1{rng.replace("member_id", "a.member_id")}
    """  # noqa: S608 - only fixed fragments are interpolated; values are parameters
    start_db, at_db = _db_times(start, at)
    params = [start_db, at_db, *rng_params, start_db, at_db, *rng_params, *rng_params]
    return sql, params


def _condition(tier: Tier, spend: str, orders: str, loyalty: str) -> tuple[str, list]:
    # Thresholds go in as floats: SQLite compares an affinity-less expression (a COALESCE of
    # sums) with a text parameter as text, and Django passes Decimals to SQLite as text.
    columns = {"spend": spend, "orders": orders, "loyalty": loyalty}
    parts: list[str] = []
    params: list = []
    for metric, threshold in tier.all_of.items():
        parts.append(f"{columns[metric]} >= %s")
        params.append(float(threshold))
    if tier.any_of:
        any_parts = []
        for metric, threshold in tier.any_of.items():
            any_parts.append(f"{columns[metric]} >= %s")
            params.append(float(threshold))
        parts.append("(" + " OR ".join(any_parts) + ")")
    return (" AND ".join(parts) or "1 = 1"), params


def tier_case_sql(rules: Rules, spend: str, orders: str, loyalty: str) -> tuple[str, list]:
    """A SQL ``CASE`` naming the highest tier the given columns qualify for."""
    whens: list[str] = []
    params: list = []
    for tier in reversed(rules.tiers[1:]):
        condition, condition_params = _condition(tier, spend, orders, loyalty)
        whens.append(f"WHEN {condition} THEN %s")
        params += [*condition_params, tier.code]
    params.append(rules.tiers[0].code)
    return "CASE " + " ".join(whens) + " ELSE %s END", params


def tier_rank_case_sql(rules: Rules, column: str) -> tuple[str, list]:
    """A SQL ``CASE`` giving a tier code column's rank (unknown codes rank 0)."""
    whens = " ".join("WHEN %s THEN %s" for _ in rules.tiers)
    params: list = []
    for tier in rules.tiers:
        params += [tier.code, tier.rank]
    return f"CASE {column} {whens} ELSE 0 END", params


def next_evaluation(at: dt.datetime, rules: Rules) -> dt.datetime:
    """The next periodic evaluation after ``at``: midnight, program time zone, on the first
    day of the next evaluation month (default Jan/Apr/Jul/Oct)."""
    tz = zoneinfo.ZoneInfo(rules.time_zone)
    local = at.astimezone(tz)
    for months_ahead in range(1, 13):
        day = add_months(local.date().replace(day=1), months_ahead)
        if day.month in rules.evaluation_months:
            return dt.datetime.combine(day, dt.time(), tzinfo=tz)
    raise ValueError("the rules name no evaluation month")


def last_evaluation(at: dt.datetime, rules: Rules) -> dt.datetime:
    """The most recent evaluation at or before ``at``."""
    tz = zoneinfo.ZoneInfo(rules.time_zone)
    local = at.astimezone(tz)
    for months_back in range(0, 13):
        day = add_months(local.date().replace(day=1), -months_back)
        if day.month in rules.evaluation_months:
            return dt.datetime.combine(day, dt.time(), tzinfo=tz)
    raise ValueError("the rules name no evaluation month")
