"""Reads for the console's loyalty pages: a member's ledger (balances, lots, entries with
their allocations, tier history) and the rewards catalog. Reads only; ids and figures."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet

from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty import selectors as loyalty_selectors
from patron.loyalty.models import Allocation, Entry, Lot, ProgramVersion, Reward, TierChange

ENTRIES_PER_PAGE = 50
TIER_HISTORY = 50


@dataclass(frozen=True)
class LotRow:
    lot: Lot
    last_usable_day: dt.date | None


def value_cny(points: int, rules: program.Rules) -> Decimal:
    return (Decimal(points) / Decimal(rules.points_per_cny)).quantize(Decimal("0.01"))


def lots(member_id: int) -> QuerySet[Lot]:
    """Newest first: the lots a member's points came in."""
    return Lot.objects.filter(member_id=member_id).select_related("order").order_by("-id")


def lot_rows(page_of_lots: Any, rules: program.Rules) -> list[LotRow]:
    return [
        LotRow(lot, ledger.last_usable_day(lot.expires_at, rules) if lot.expires_at else None)
        for lot in page_of_lots
    ]


def entries(member_id: int, *, before: int | None) -> tuple[list[Entry], int | None]:
    """One page of entries, newest first, each with its allocations (one more query)."""
    page, cursor = loyalty_selectors.entries_page(member_id, before=before, limit=ENTRIES_PER_PAGE)
    ids = [e.pk for e in page]
    with_allocations = {
        e.pk: e
        for e in Entry.objects.filter(pk__in=ids)
        .select_related("order")
        .prefetch_related(Prefetch("allocations", queryset=Allocation.objects.order_by("lot_id")))
    }
    return [with_allocations[i] for i in ids], cursor


def tier_history(member_id: int) -> list[TierChange]:
    return list(
        TierChange.objects.filter(member_id=member_id)
        .select_related("order")
        .order_by("-changed_at", "-id")[:TIER_HISTORY]
    )


def rewards() -> QuerySet[Reward]:
    return Reward.objects.order_by("-active", "cost_points", "code")


def versions(limit: int = 50) -> list[ProgramVersion]:
    return list(ProgramVersion.objects.select_related("created_by").order_by("-version")[:limit])


def latest_version() -> ProgramVersion | None:
    """The newest version, in force or scheduled: the one a new edit supersedes."""
    return ProgramVersion.objects.order_by("-version").first()
