"""Helpers for the loyalty tests: members without the cost of registration, row counts."""

from __future__ import annotations

import datetime as dt
from itertools import count

import pytest

from patron.core import ids
from patron.loyalty import rules as program
from patron.loyalty.models import (
    Account,
    Allocation,
    Coupon,
    Entry,
    Lot,
    LoyaltyEvent,
    Order,
    OrderState,
    Redemption,
    TierChange,
)
from patron.members.models import Member, User
from patron.notify.models import OutboxMessage

_seq = count(1)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=SHANGHAI)

LEDGER_MODELS = (Account, Lot, Entry, Allocation, Order, OrderState, TierChange, LoyaltyEvent)


def make_member(*, referrer: Member | None = None, birth_date: str = "", **fields) -> Member:
    """An active individual member, created directly (registration is tested elsewhere)."""
    n = next(_seq)
    user = User.objects.create(username=f"loyal{n}_{ids.random_token(3)}")
    return Member.objects.create(
        user=user,
        number=ids.random_member_number(),
        kind=Member.Kind.INDIVIDUAL,
        status=Member.Status.ACTIVE,
        name=f"会员{n}",
        phone=f"+8613800{n:06d}",
        referrer=referrer,
        birth_date=birth_date,
        **fields,
    )


def counts(*extra) -> dict[str, int]:
    models = (*LEDGER_MODELS, Redemption, Coupon, OutboxMessage, *extra)
    return {model.__name__: model.objects.count() for model in models}


@pytest.fixture(autouse=True)
def _fresh_rules():
    """Each test starts from the rules in its own database, not a cached earlier version."""
    program.forget()
    yield
    program.forget()
