"""Demo loyalty data for ``patron demo``: a small rewards catalog and a purchase history
for the demo members, made through the same services the API uses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from patron.core import clock
from patron.core.audit import Actor
from patron.loyalty.models import Reward
from patron.loyalty.services import orders, rewards

REWARDS = [
    {
        "code": "coupon-10",
        "name": "10元优惠券",
        "name_en": "CNY 10 coupon",
        "kind": "coupon",
        "cost_points": 1000,
        "value": "10",
        "min_spend": "50",
        "valid_days": 30,
        "per_member_limit": 5,
        "limit_period": "month",
    },
    {
        "code": "popcorn",
        "name": "爆米花兑换券",
        "name_en": "Popcorn voucher",
        "kind": "voucher",
        "cost_points": 1500,
        "value": "0",
        "min_spend": "0",
        "valid_days": 60,
        "stock": 200,
    },
    {
        "code": "premiere",
        "name": "首映礼门票",
        "name_en": "Premiere ticket",
        "kind": "ticket",
        "cost_points": 5000,
        "value": "0",
        "min_spend": "0",
        "valid_days": 90,
        "stock": 20,
        "min_tier": "gold",
        "per_member_limit": 1,
        "limit_period": "year",
    },
]


def seed(members: list, *, actor: Actor | None = None) -> int:
    """The catalog (once) and, per member, a few orders of the last months: delivered ones
    whose return window has closed (their points are available) and a recent paid one
    (pending). Returns the number of orders applied."""
    actor = actor or Actor.system()
    for data in REWARDS:
        if not Reward.objects.filter(code=data["code"]).exists():
            rewards.create_reward(dict(data), actor=actor)
    now = clock.now()
    applied = 0
    for index, member in enumerate(members):
        for n, (days_ago, amount, category) in enumerate(
            [
                (120, "680.00", "merchandise"),
                (60, "1450.00", "ticket"),
                (20, "320.50", "concession"),
                (2, "88.00", "ticket"),
            ][: 2 + index]
        ):
            paid = now - dt.timedelta(days=days_ago)
            state = {
                "member": member.number,
                "amount": str(Decimal(amount) * (index + 1)),
                "currency": "CNY",
                "category": category,
                "status": "paid" if days_ago < 7 else "delivered",
                "paid_at": paid.isoformat(),
            }
            if days_ago >= 7:
                state["delivered_at"] = (paid + dt.timedelta(days=1)).isoformat()
            orders.apply_order({**state, "order_id": f"demo-{member.number}-{n}"}, actor=actor)
            applied += 1
    return applied
