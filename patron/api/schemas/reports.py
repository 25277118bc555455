"""Schemas of the reports endpoints (issue 3, PTS-8)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ninja import Schema
from pydantic import ConfigDict, Field


class LiabilityQuery(Schema):
    as_of: dt.date | None = Field(
        None,
        description=(
            "Report for the end of this day (program time zone, YYYY-MM-DD); default now. "
            "A day after today is refused (422 `as_of_in_future`)."
        ),
    )


class FigureOut(Schema):
    points: int
    value: Decimal = Field(..., description="points / points_per_cny, CNY, 2 places.")


class ExpiryMonthOut(Schema):
    month: str = Field(..., description="YYYY-MM of the points' last usable day.")
    points: int
    value: Decimal


class LiabilityOut(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-11-22",
                    "points_per_cny": 100,
                    "currency": "CNY",
                    "available": {"points": 1250000, "value": "12500.00"},
                    "pending": {"points": 84000, "value": "840.00"},
                    "debt": {"points": 1200, "value": "12.00"},
                    "by_expiry_month": [
                        {"month": "2026-12", "points": 90000, "value": "900.00"},
                        {"month": "2027-01", "points": 1160000, "value": "11600.00"},
                    ],
                    "breakage": {"points": 310000, "value": "3100.00"},
                }
            ]
        }
    )

    as_of: dt.date
    points_per_cny: int = Field(..., description="Points worth 1 CNY (the program rules).")
    currency: str
    available: FigureOut = Field(..., description="Points members can spend.")
    pending: FigureOut = Field(..., description="Purchase points in their return window.")
    debt: FigureOut = Field(
        ..., description="Points clawed back after they were spent, not yet repaid."
    )
    by_expiry_month: list[ExpiryMonthOut] = Field(
        ..., description="Available points by the month of their last usable day."
    )
    breakage: FigureOut = Field(..., description="Points expired so far.")
