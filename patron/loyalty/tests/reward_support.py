"""Helpers for the rewards, coupons, benefits and points-service tests (H5)."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connections, transaction

from patron.core.audit import Actor
from patron.core.models import AuditEvent
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit
from patron.loyalty.models import Account, Reward
from patron.loyalty.tests.helpers import counts
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

STAFF = Actor("staff", "7")
PLATFORM = Actor.api_key(1)
SYSTEM = Actor.system()
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def at(*args: int) -> dt.datetime:
    """A moment in Asia/Shanghai."""
    return dt.datetime(*args, tzinfo=SHANGHAI)


def give(member, points: int, key: str) -> None:
    """Credit ``points`` available at once (an adjustment lot, straight through the ledger)."""
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        ledger.credit(
            account,
            Credit(points=points, source="adjustment", key=key),
            rules=program.current(),
            actor=SYSTEM,
        )


def set_tier(member, tier: str) -> None:
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        Account.objects.filter(pk=account.pk).update(tier=tier)


def make_reward(code: str = "popcorn", **fields) -> Reward:
    values = {
        "name": "爆米花兑换券",
        "name_en": "Popcorn voucher",
        "kind": Reward.Kind.VOUCHER,
        "cost_points": 100,
        "value": Decimal("25.00"),
        "valid_days": 30,
    }
    values.update(fields)
    return Reward.objects.create(code=code, **values)


def snapshot(*extra) -> dict[str, int]:
    """Row counts of the ledger, redemptions, coupons, outbox and audit trail."""
    return counts(AuditEvent, *extra)


def webhook_events(event: str | None = None) -> list[OutboxMessage]:
    rows = OutboxMessage.objects.filter(channel=OutboxMessage.Channel.WEBHOOK)
    if event:
        rows = rows.filter(template=event)
    return list(rows.order_by("id"))


@pytest.fixture
def endpoint(db):
    """A platform endpoint subscribed to every event (rows only: delivery is not run)."""
    created = webhooks.create_endpoint(
        name="platform", url="https://platform.example/hooks", events=["*"], actor=STAFF
    ).endpoint
    webhooks.forget()
    yield created
    webhooks.forget()


def in_threads(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads started together; each result or exception."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # the test inspects what each thread ended with
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
