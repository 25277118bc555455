"""Helpers for the order and tier tests: order states, published rules, balances."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from patron.core.audit import Actor
from patron.loyalty import rules as program
from patron.loyalty.models import Account, ProgramVersion
from patron.loyalty.services.orders import apply_order
from patron.loyalty.tests.helpers import NOW

PLATFORM = Actor.api_key("1")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def state(
    member,
    order_id: str,
    status: str = "paid",
    *,
    amount: str = "1000.00",
    category: str = "ticket",
    paid_at: dt.datetime | None = None,
    delivered_at: dt.datetime | None = None,
    refunded: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": order_id,
        "member": member.number,
        "amount": amount,
        "currency": "CNY",
        "category": category,
        "status": status,
        "paid_at": paid_at or NOW - 3 * DAY,
    }
    if delivered_at is not None:
        data["delivered_at"] = delivered_at
    if refunded is not None:
        data["refunded_amount"] = refunded
    data.update(extra)
    return data


def put(member, order_id: str, status: str = "paid", **kwargs: Any):
    return apply_order(state(member, order_id, status, **kwargs), actor=PLATFORM)


def balances(member) -> tuple[int, int, int]:
    """(available, pending, debt)"""
    account = Account.objects.get(pk=member.pk)
    return account.available, account.pending, account.debt


def tier(member) -> str:
    return Account.objects.get(pk=member.pk).tier


def publish(version: int = 1, *, effective_at: dt.datetime | None = None, **changes: Any):
    """Publish program rules: the defaults with ``changes`` (top-level keys; ``tier_changes``
    maps a tier code to the fields to change)."""
    data = copy.deepcopy(program.DEFAULT_RULES)
    for code, fields in changes.pop("tier_changes", {}).items():
        for tier_data in data["tiers"]:
            if tier_data["code"] == code:
                tier_data.update(fields)
    data.update(changes)
    program.parse(data, version)
    ProgramVersion.objects.create(
        version=version, rules=data, effective_at=effective_at or NOW - dt.timedelta(days=800)
    )
    program.forget()
    return program.current()


# Rules with one metric per tier, so tier tests need few orders: Silver at 2,000 CNY, Gold
# at 10,000 CNY, Diamond at 30,000 CNY.
SPEND_ONLY = {
    "regular": {"any_of": {}, "all_of": {}},
    "silver": {"any_of": {"spend": "2000"}, "all_of": {}},
    "gold": {"any_of": {"spend": "10000"}, "all_of": {}},
    "diamond": {"any_of": {"spend": "30000"}, "all_of": {}},
}
