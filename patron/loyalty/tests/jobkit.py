"""Helpers for the batch-job tests: credits at a moment, orders, runs at 02:00 local time."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import time_machine
from django.db import transaction

from patron.core.audit import Actor
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit
from patron.loyalty.models import Account, Lot
from patron.loyalty.services.orders import apply_order

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
SYSTEM = Actor.system()
PLATFORM = Actor.api_key("jobs-tests")
DAY = dt.timedelta(days=1)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def at_job_time(day: dt.date):
    """Travel to 02:00 program time on ``day`` (when the scheduler runs the day's jobs)."""
    return time_machine.travel(dt.datetime.combine(day, dt.time(2), tzinfo=SHANGHAI), tick=False)


def credit(member, points: int, key: str, *, when: dt.datetime, source: str = "adjustment") -> Lot:
    """An available lot credited at ``when`` (expires at the end of that local day one
    expiry period later)."""
    with time_machine.travel(when, tick=False), transaction.atomic():
        account = ledger.lock_account(member.pk)
        return ledger.credit(
            account,
            Credit(points=points, source=source, key=key),
            rules=program.current(),
            actor=SYSTEM,
        )


def spend(member, points: int, key: str, *, when: dt.datetime):
    with time_machine.travel(when, tick=False), transaction.atomic():
        account = ledger.lock_account(member.pk)
        return ledger.spend(account, points, key=key, actor=SYSTEM)


def order(member, order_id: str, *, when: dt.datetime, **fields: Any):
    """Send an order state at ``when`` through the real order service."""
    data = {
        "order_id": order_id,
        "member": member.number,
        "amount": "1000.00",
        "currency": "CNY",
        "category": "ticket",
        "status": "paid",
        "paid_at": when,
        **fields,
    }
    with time_machine.travel(when, tick=False):
        return apply_order(data, actor=PLATFORM)


def account(member) -> Account:
    return Account.objects.get(pk=member.pk)


def set_tier(member, tier: str) -> None:
    """Put a member on a tier directly (the setting of a test, not a behaviour under test)."""
    ledger_account = Account.objects.get_or_create(member_id=member.pk)[0]
    ledger_account.tier = tier
    ledger_account.save(update_fields=["tier"])
