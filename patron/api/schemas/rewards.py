"""Schemas of the rewards, redemptions and coupons endpoints (issue 3)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ninja import Schema
from pydantic import ConfigDict, Field


class RewardOut(Schema):
    code: str
    name: str
    name_en: str
    description: str
    kind: str = Field(..., description="coupon, voucher, ticket or privilege")
    cost_points: int
    stock: int | None = Field(..., description="Left in stock; null: unlimited.")
    per_member_limit: int | None
    limit_period: str = Field(..., description="day, month, year (program time zone) or ever")
    min_tier: str = Field(..., description="Lowest tier that may redeem; blank: everyone.")
    value: Decimal
    min_spend: Decimal
    valid_days: int
    available_from: dt.datetime | None
    available_until: dt.datetime | None


class RewardsOut(Schema):
    items: list[RewardOut]


class RedemptionIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reward": "popcorn-voucher", "quantity": 2}]}
    )

    reward: str = Field(..., description="The reward's code.")
    quantity: int = Field(1, description="1-100.")


class CouponOut(Schema):
    code: str
    source: str = Field(..., description="redemption, birthday, campaign or compensation")
    status: str = Field(..., description="issued, used or void")
    value: Decimal
    min_spend: Decimal
    currency: str
    valid_from: dt.datetime
    valid_until: dt.datetime = Field(..., description="Expired from this instant.")
    reward: str | None
    redemption_id: int | None
    used_order_id: str
    used_at: dt.datetime | None


class RedemptionOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 41,
                    "member": "100000000017",
                    "reward": "popcorn-voucher",
                    "quantity": 1,
                    "points": 800,
                    "status": "active",
                    "created_at": "2026-11-22T10:00:00+08:00",
                    "cancelled_at": None,
                    "coupons": [
                        {
                            "code": "7KQ2MZP9WX4C",
                            "source": "redemption",
                            "status": "issued",
                            "value": "25.00",
                            "min_spend": "0.00",
                            "currency": "CNY",
                            "valid_from": "2026-11-22T10:00:00+08:00",
                            "valid_until": "2026-12-22T00:00:00+08:00",
                            "reward": "popcorn-voucher",
                            "redemption_id": 41,
                            "used_order_id": "",
                            "used_at": None,
                        }
                    ],
                }
            ]
        }
    )

    id: int
    member: str
    reward: str
    quantity: int
    points: int
    status: str = Field(..., description="active or cancelled")
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    coupons: list[CouponOut]


class CouponsOut(Schema):
    items: list[CouponOut]
    next_cursor: str | None


class CouponUseIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"order_id": "ORD-2026-000123", "amount": "168.00", "member": "100000000017"}
            ]
        }
    )

    order_id: str = Field(..., description="Your order id, 1-64 characters.")
    amount: Decimal = Field(..., description="The order amount in CNY before the coupon.")
    member: str | None = Field(
        None, description="The buyer's member number; when given it must own the coupon."
    )


class CouponUseOut(Schema):
    coupon: CouponOut
    discount: Decimal = Field(..., description="What the coupon takes off: min(value, amount).")
    replayed: bool = Field(..., description="True when this repeats an earlier use for this order.")
