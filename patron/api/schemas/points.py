"""Schemas of the points, activities, benefits and quotes endpoints (issue 3)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ninja import Schema
from pydantic import ConfigDict, Field


class ExpiringOut(Schema):
    date: dt.date = Field(
        ..., description="The last day the points can be used (program time zone)."
    )
    points: int


class PointsOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member": "100000000017",
                    "tier": "silver",
                    "available": 1520,
                    "pending": 240,
                    "debt": 0,
                    "expiring": [{"date": "2027-03-01", "points": 500}],
                }
            ]
        }
    )

    member: str
    tier: str
    available: int = Field(..., description="Points that can be spent now.")
    pending: int = Field(..., description="Purchase points waiting for the return window to close.")
    debt: int = Field(
        ..., description="Points clawed back after they were spent; later earnings repay it first."
    )
    expiring: list[ExpiringOut] = Field(
        ..., description="Available points by the last day they can be used, soonest first."
    )


class EntryOut(Schema):
    id: int
    kind: str = Field(
        ...,
        description=(
            "earn, earn_pending, release, void_pending, clawback, redeem, redeem_cancel, "
            "expire, adjust, debt_repay"
        ),
    )
    points: int = Field(..., description="Change of the available balance.")
    pending_delta: int
    debt_delta: int
    reason: str
    order_id: str | None = Field(None, description="The platform's order id, for order entries.")
    redemption_id: int | None = None
    lot_id: int | None = None
    created_at: dt.datetime


class EntriesOut(Schema):
    items: list[EntryOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class AdjustmentIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"points": 500, "reason": "Compensation for case C-1024"}]}
    )

    points: int = Field(
        ..., description="Positive adds an adjustment lot (available at once); negative deducts."
    )
    reason: str = Field(..., description="Required; 1-200 characters; kept on the ledger entry.")


class AdjustmentOut(Schema):
    entry: EntryOut
    available: int
    pending: int
    debt: int


class ExtensionIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"months": 3, "reason": "Cinema closed for renovation"}]}
    )

    months: int = Field(..., description="1-60 months.")
    reason: str
    lots: list[int] | None = Field(
        None, description="Lot ids to extend; all the member's available lots when omitted."
    )


class ExtensionOut(Schema):
    extended: int = Field(..., description="How many lots moved.")
    expiring: list[ExpiringOut]


class ActivityIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"activity": "premiere_night", "occurred_at": "2026-11-20T19:30:00+08:00"}]
        }
    )

    activity: str = Field(
        ..., description="The activity's name in the program rules (`default` rules otherwise)."
    )
    occurred_at: dt.datetime = Field(..., description="With a time zone; not in the future.")


class ActivityOut(Schema):
    id: int
    activity: str
    score: int = Field(..., description="What the activity adds to the loyalty score.")
    points: int = Field(
        ..., description="Activity points credited (0 when the program gives none)."
    )
    occurred_at: dt.datetime
    tier: str = Field(..., description="The member's tier after the activity.")


class BenefitOut(Schema):
    code: str
    zh: str
    en: str


class OfferOut(Schema):
    code: str
    name: str
    name_en: str
    kind: str
    min_tier: str
    cost_points: int
    value: Decimal
    available_until: dt.datetime | None


class BenefitsOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tier": "gold",
                    "name": "金卡会员",
                    "name_en": "Gold",
                    "discount_rate": "0.05",
                    "points_rate": "1.5",
                    "rebate_rate": "0",
                    "birthday_coupon": "50",
                    "benefits": [
                        {"code": "priority_service", "zh": "优先服务", "en": "Priority service"}
                    ],
                    "offers": [],
                    "priority_purchase": True,
                }
            ]
        }
    )

    tier: str
    name: str
    name_en: str
    discount_rate: Decimal
    points_rate: Decimal
    rebate_rate: Decimal
    birthday_coupon: Decimal = Field(
        ..., description="Value of the birthday coupon in CNY (0: none)."
    )
    benefits: list[BenefitOut]
    offers: list[OfferOut] = Field(
        ..., description="Member-exclusive rewards this member's tier opens (BEN-2)."
    )
    priority_purchase: bool


class QuoteIn(Schema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": "120.00", "category": "ticket"}]}
    )

    amount: Decimal = Field(..., description="The list price in CNY, > 0, at most 2 decimals.")
    category: str


class QuoteOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tier": "silver",
                    "amount": "120.00",
                    "discount": "6.00",
                    "price": "114.00",
                    "points": 136,
                    "purchase_points": 136,
                    "rebate_points": 0,
                }
            ]
        }
    )

    tier: str
    amount: Decimal
    discount: Decimal
    price: Decimal = Field(..., description="amount x (1 - discount rate), rounded half up.")
    points: int = Field(..., description="What an order at `price` earns: purchase + rebate.")
    purchase_points: int
    rebate_points: int
