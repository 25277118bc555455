"""The points liability (PTS-8): outstanding points and their value, by expiry month.

``points_liability(as_of)`` answers for the end of ``as_of`` (program time zone), or for
now when ``as_of`` is today or not given:

- ``available``: points members can spend; ``pending``: purchase points waiting for their
  return window; ``debt``: points clawed back after they were spent, still owed;
- ``by_expiry_month``: the available points by the month of their last usable day (points
  already past expiry but not yet swept by ``expire-points`` count in their own month);
- ``breakage``: points expired so far.

Values are ``points / points_per_cny`` CNY as Decimals with 2 places (half up).

Today's figures come from the cached balances and the lots. A past date's come from the
append-only ledger: balances are the sums of the entries written before the end of that
day, and each lot's available points then are what its crediting entries (earn, adjust,
release) and the allocations of later entries (spends, clawbacks, restores, expiry) had
made of it by that moment. Expiry months use each lot's expiry as it is now (an
extension granted since moves its points to the later month).
"""

# Raw SQL here interpolates only fixed fragments and placeholders; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils.translation import gettext as _

from patron.core import clock
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.jobs_runner import aware, fetchall, fetchone
from patron.loyalty.rules import Rules
from patron.members.services._common import refuse

CENT = Decimal("0.01")

# Each lot's available points at a moment (two %s: the moment, twice).
_LOTS_AT = """
    SELECT l.expires_at AS expires_at, COALESCE(c.p, 0) + COALESCE(x.p, 0) AS points
    FROM loyalty_lot l
    LEFT JOIN (
        SELECT e.lot_id, SUM(e.points) AS p FROM loyalty_entry e
        WHERE e.kind IN ('earn', 'adjust', 'release') AND e.lot_id IS NOT NULL
          AND e.created_at < %s
        GROUP BY e.lot_id
    ) c ON c.lot_id = l.id
    LEFT JOIN (
        SELECT a.lot_id, SUM(a.points) AS p FROM loyalty_allocation a
        JOIN loyalty_entry e ON e.id = a.entry_id
        WHERE e.kind <> 'void_pending' AND e.created_at < %s
        GROUP BY a.lot_id
    ) x ON x.lot_id = l.id
    WHERE l.expires_at IS NOT NULL
"""

_LOTS_NOW = """
    SELECT l.expires_at AS expires_at, l.remaining AS points
    FROM loyalty_lot l WHERE l.status = 'available' AND l.remaining > 0
"""


def value_of(points: int, rules: Rules) -> Decimal:
    return (Decimal(points) / Decimal(rules.points_per_cny)).quantize(CENT, ROUND_HALF_UP)


def _figure(points: int, rules: Rules) -> dict[str, Any]:
    return {"points": int(points), "value": value_of(int(points), rules)}


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _by_month(lots_sql: str, params: list[Any], rules: Rules) -> list[dict[str, Any]]:
    """Sum ``lots_sql``'s points by the month of each lot's last usable day: the month
    boundaries (program time zone) are computed here and joined as a small derived table,
    so the database only compares instants."""
    first, last = fetchone(
        f"SELECT MIN(s.expires_at), MAX(s.expires_at) FROM ({lots_sql}) s WHERE s.points > 0",
        params,
    )
    if first is None:
        return []
    month = _month_start(ledger.last_usable_day(aware(first), rules))
    end = _month_start(ledger.last_usable_day(aware(last), rules))
    months: list[tuple[str, dt.datetime, dt.datetime]] = []
    while month <= end:
        following = ledger.add_months(month, 1)
        # last usable day in [month, following) <=> expires_at in (start(month), start(following)]
        months.append(
            (
                month.strftime("%Y-%m"),
                ledger.end_of_day(month - dt.timedelta(days=1), rules),
                ledger.end_of_day(following - dt.timedelta(days=1), rules),
            )
        )
        month = following
    table = " UNION ALL ".join(["SELECT %s AS month, %s AS lo, %s AS hi"] * len(months))
    table_params = [value for row in months for value in row]
    rows = fetchall(
        f"SELECT m.month, SUM(s.points) FROM ({lots_sql}) s"
        f" JOIN ({table}) m ON s.expires_at > m.lo AND s.expires_at <= m.hi"
        " WHERE s.points > 0 GROUP BY m.month ORDER BY m.month",
        [*params, *table_params],
    )
    return [
        {"month": month, "points": int(points), "value": value_of(int(points), rules)}
        for month, points in rows
    ]


def points_liability(as_of: dt.date | None = None) -> dict[str, Any]:
    """The liability report (see the module doc). Raises ``ValidationFailed``
    (``as_of_in_future``) for a date after today."""
    rules = program.current()
    now = clock.now()
    today = ledger.local_date(now, rules)
    as_of = as_of or today
    if as_of > today:
        raise refuse("as_of", "as_of_in_future", _("The report cannot be for a day after today."))
    if as_of == today:
        available, pending, debt = fetchone(
            "SELECT COALESCE(SUM(available), 0), COALESCE(SUM(pending), 0),"
            " COALESCE(SUM(debt), 0) FROM loyalty_account"
        )
        (breakage,) = fetchone(
            "SELECT COALESCE(-SUM(points), 0) FROM loyalty_entry WHERE kind = 'expire'"
        )
        months = _by_month(_LOTS_NOW, [], rules)
    else:
        moment = ledger.end_of_day(as_of, rules)
        available, pending, debt, breakage = fetchone(
            "SELECT COALESCE(SUM(points), 0), COALESCE(SUM(pending_delta), 0),"
            " COALESCE(SUM(debt_delta), 0),"
            " COALESCE(-SUM(CASE WHEN kind = 'expire' THEN points ELSE 0 END), 0)"
            " FROM loyalty_entry WHERE created_at < %s",
            [moment],
        )
        months = _by_month(_LOTS_AT, [moment, moment], rules)
    return {
        "as_of": as_of,
        "points_per_cny": rules.points_per_cny,
        "currency": "CNY",
        "available": _figure(available, rules),
        "pending": _figure(pending, rules),
        "debt": _figure(debt, rules),
        "by_expiry_month": months,
        "breakage": _figure(breakage, rules),
    }
