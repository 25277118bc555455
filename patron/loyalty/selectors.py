"""Reads of the points ledger: balances, what expires when, the entry history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from patron.core import clock
from patron.loyalty import rules as program
from patron.loyalty.ledger import last_usable_day
from patron.loyalty.models import Account, Entry, Lot

PAGE_MAX = 200


@dataclass(frozen=True)
class Expiring:
    date: dt.date
    points: int


@dataclass(frozen=True)
class PointsSummary:
    available: int
    pending: int
    debt: int
    tier: str
    expiring: list[Expiring] = field(default_factory=list)


def account(member_id: int) -> Account | None:
    return Account.objects.filter(pk=member_id).first()


def points_summary(member_id: int, *, limit: int = 24) -> PointsSummary:
    """Balances and the next ``limit`` expiry dates with the points that lapse on each."""
    rules = program.current()
    acct = account(member_id)
    if acct is None:
        return PointsSummary(0, 0, 0, rules.tiers[0].code)
    lots = (
        Lot.objects.filter(
            member_id=member_id,
            status=Lot.Status.AVAILABLE,
            remaining__gt=0,
            expires_at__gt=clock.now(),
        )
        .order_by("expires_at")
        .values_list("expires_at", "remaining")
    )
    by_day: dict[dt.date, int] = {}
    for expires_at, remaining in lots.iterator(chunk_size=500):
        day = last_usable_day(expires_at, rules)
        if day not in by_day and len(by_day) >= limit:
            break
        by_day[day] = by_day.get(day, 0) + remaining
    return PointsSummary(
        available=acct.available,
        pending=acct.pending,
        debt=acct.debt,
        tier=acct.tier,
        expiring=[Expiring(day, points) for day, points in by_day.items()],
    )


def expiring_within(member_id: int, days: int) -> int:
    """Points that lapse within ``days`` days (portal banner)."""
    until = clock.now() + dt.timedelta(days=days)
    lots = Lot.objects.filter(
        member_id=member_id,
        status=Lot.Status.AVAILABLE,
        remaining__gt=0,
        expires_at__gt=clock.now(),
        expires_at__lte=until,
    )
    return sum(lots.values_list("remaining", flat=True))


def entries_page(
    member_id: int, *, before: int | None = None, limit: int = 50
) -> tuple[list[Entry], int | None]:
    """Newest first; keyset pagination on the entry id (``before`` = the last id seen).
    Returns the page and the cursor for the next one (None at the end)."""
    limit = max(1, min(limit, PAGE_MAX))
    qs = Entry.objects.filter(member_id=member_id)
    if before is not None:
        qs = qs.filter(id__lt=before)
    page = list(qs.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)
