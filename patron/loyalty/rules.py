"""Program rules: tiers, earning, expiry, referrals, benefits (TIER-1..5, PTS-1..6).

Rules are a JSON document stored in ``ProgramVersion`` and read through ``Rules`` so every
service sees typed values. ``DEFAULT_RULES`` are the seeds' defaults; where the seeds leave
a figure open ("[X]") the default is our decision, listed in docs/loyalty.md.

A tier qualifies when *at least one* of its ``any_of`` thresholds is met and *all* of its
``all_of`` thresholds are met: Gold is "spend >= 10,000 or orders >= 30" (any_of) "and both
above Silver's thresholds" (all_of: spend >= 2,000 and orders >= 10).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

from patron.core.exceptions import FieldError, ValidationFailed

METRICS = ("spend", "orders", "loyalty")

DEFAULT_RULES: dict[str, Any] = {
    "time_zone": "Asia/Shanghai",
    "window_months": 12,
    "evaluation_months": [1, 4, 7, 10],
    "return_window_days": 7,
    "expiry_months": 12,
    "reminder_days": [30, 7],
    "points_per_cny": 100,  # value of a point for liability reporting: 100 points = 1 CNY
    "categories": {"ticket": "1", "concession": "1", "merchandise": "1"},
    "referral": {"referrer": 500, "referee": 200, "loyalty": 3},
    "activities": {"default": {"points": 0, "loyalty": 1}},
    "birthday_coupon_valid_days": 30,
    "tiers": [
        {
            "code": "regular",
            "name": "普通会员",
            "name_en": "Regular",
            "any_of": {},
            "all_of": {},
            "points_rate": "1",
            "discount_rate": "0",
            "rebate_rate": "0",
            "birthday_coupon": "0",
            "expiry_extension_months": 0,
            "benefits": [],
        },
        {
            "code": "silver",
            "name": "银卡会员",
            "name_en": "Silver",
            "any_of": {"spend": "2000", "orders": 10},
            "all_of": {},
            "points_rate": "1.2",
            "discount_rate": "0.05",
            "rebate_rate": "0",
            "birthday_coupon": "20",
            "expiry_extension_months": 0,
            "benefits": ["priority_service"],
        },
        {
            "code": "gold",
            "name": "金卡会员",
            "name_en": "Gold",
            "any_of": {"spend": "10000", "orders": 30},
            "all_of": {"spend": "2000", "orders": 10},
            "points_rate": "1.5",
            "discount_rate": "0.05",
            "rebate_rate": "0",
            "birthday_coupon": "50",
            "expiry_extension_months": 0,
            "benefits": ["priority_service", "dedicated_team", "priority_purchase"],
        },
        {
            "code": "diamond",
            "name": "钻石会员",
            "name_en": "Diamond",
            "any_of": {"spend": "30000", "orders": 80},
            "all_of": {"spend": "10000", "orders": 30, "loyalty": 10},
            "points_rate": "2",
            "discount_rate": "0.05",
            "rebate_rate": "0.02",
            "birthday_coupon": "100",
            "expiry_extension_months": 6,
            "benefits": [
                "priority_service",
                "dedicated_manager",
                "priority_purchase",
                "exclusive_events",
                "cash_back",
            ],
        },
    ],
}


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    name_en: str
    rank: int
    any_of: dict[str, Decimal]
    all_of: dict[str, Decimal]
    points_rate: Decimal
    discount_rate: Decimal
    rebate_rate: Decimal
    birthday_coupon: Decimal
    expiry_extension_months: int
    benefits: tuple[str, ...]

    def qualifies(self, spend: Decimal, orders: int, loyalty: int) -> bool:
        figures = {"spend": Decimal(spend), "orders": Decimal(orders), "loyalty": Decimal(loyalty)}
        if any(figures[m] < v for m, v in self.all_of.items()):
            return False
        return not self.any_of or any(figures[m] >= v for m, v in self.any_of.items())

    def missing(self, spend: Decimal, orders: int, loyalty: int) -> dict[str, Decimal | int]:
        """What is still missing per metric (0 where met). An ``any_of`` metric counts as met
        when any one of them is; otherwise each shows its own gap."""
        figures = {"spend": Decimal(spend), "orders": Decimal(orders), "loyalty": Decimal(loyalty)}
        gaps: dict[str, Decimal] = {m: Decimal(0) for m in METRICS}
        for m, v in self.all_of.items():
            gaps[m] = max(gaps[m], v - figures[m])
        if self.any_of and not any(figures[m] >= v for m, v in self.any_of.items()):
            for m, v in self.any_of.items():
                gaps[m] = max(gaps[m], v - figures[m])
        return {
            "spend": max(gaps["spend"], Decimal(0)),
            "orders": int(max(gaps["orders"], Decimal(0))),
            "loyalty": int(max(gaps["loyalty"], Decimal(0))),
        }


@dataclass(frozen=True)
class Rules:
    version: int
    time_zone: str
    window_months: int
    evaluation_months: tuple[int, ...]
    return_window_days: int
    expiry_months: int
    reminder_days: tuple[int, ...]
    points_per_cny: int
    categories: dict[str, Decimal]
    referral_referrer: int
    referral_referee: int
    referral_loyalty: int
    activities: dict[str, dict[str, int]]
    birthday_coupon_valid_days: int
    tiers: tuple[Tier, ...]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def tier(self, code: str) -> Tier:
        for tier in self.tiers:
            if tier.code == code:
                return tier
        return self.tiers[0]  # a tier removed from the rules counts as the base tier

    def rank(self, code: str) -> int:
        return self.tier(code).rank

    def qualified_tier(self, spend: Decimal, orders: int, loyalty: int) -> Tier:
        """The highest tier the figures qualify for."""
        best = self.tiers[0]
        for tier in self.tiers:
            if tier.qualifies(spend, orders, loyalty):
                best = tier
        return best

    def next_tier(self, code: str) -> Tier | None:
        rank = self.rank(code)
        return self.tiers[rank + 1] if rank + 1 < len(self.tiers) else None

    def multiplier(self, category: str) -> Decimal:
        return self.categories[category]

    def activity(self, name: str) -> dict[str, int]:
        return self.activities.get(name) or self.activities["default"]


def _refuse(errors: list[FieldError]) -> ValidationFailed:
    failed = ValidationFailed(errors)
    failed.code = "invalid_rules"
    return failed


def parse(data: dict[str, Any], version: int = 0) -> Rules:
    """Typed rules from a JSON document, or ``ValidationFailed`` naming every bad field."""
    errors: list[FieldError] = []

    def dec(path: str, value: Any, minimum: Decimal = Decimal(0)) -> Decimal:
        try:
            number = Decimal(str(value))
            if not number.is_finite() or number < minimum:
                raise ValueError
            return number
        except Exception:
            errors.append(FieldError(path, "invalid", _("Enter a number ≥ %s.") % minimum))
            return Decimal(0)

    def integer(path: str, value: Any, minimum: int = 0, maximum: int = 10**9) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            errors.append(
                FieldError(
                    path,
                    "invalid",
                    _("Enter a whole number from %(lo)s to %(hi)s.")
                    % {"lo": minimum, "hi": maximum},
                )
            )
            return minimum
        return value

    merged = {**DEFAULT_RULES, **(data or {})}
    tiers: list[Tier] = []
    raw_tiers = merged.get("tiers")
    if not isinstance(raw_tiers, list) or not raw_tiers:
        errors.append(FieldError("tiers", "required", _("At least one tier is required.")))
        raw_tiers = []
    codes: set[str] = set()
    for i, t in enumerate(raw_tiers):
        p = f"tiers[{i}]"
        if not isinstance(t, dict):
            errors.append(FieldError(p, "invalid", _("A tier is an object.")))
            continue
        code = str(t.get("code", "")).strip()
        if not code or len(code) > 16 or code in codes:
            errors.append(
                FieldError(f"{p}.code", "invalid", _("Codes are unique, 1-16 characters."))
            )
        codes.add(code)

        def thresholds(name: str, t: dict[str, Any] = t, p: str = p) -> dict[str, Decimal]:
            value = t.get(name) or {}
            if not isinstance(value, dict) or set(value) - set(METRICS):
                errors.append(
                    FieldError(f"{p}.{name}", "invalid", _("Use spend, orders, loyalty."))
                )
                return {}
            return {m: dec(f"{p}.{name}.{m}", v) for m, v in value.items()}

        benefits = t.get("benefits") or []
        tiers.append(
            Tier(
                code=code,
                name=str(t.get("name", code))[:50],
                name_en=str(t.get("name_en", code))[:50],
                rank=i,
                any_of=thresholds("any_of"),
                all_of=thresholds("all_of"),
                points_rate=dec(f"{p}.points_rate", t.get("points_rate", "1")),
                discount_rate=dec(f"{p}.discount_rate", t.get("discount_rate", "0")),
                rebate_rate=dec(f"{p}.rebate_rate", t.get("rebate_rate", "0")),
                birthday_coupon=dec(f"{p}.birthday_coupon", t.get("birthday_coupon", "0")),
                expiry_extension_months=integer(
                    f"{p}.expiry_extension_months", t.get("expiry_extension_months", 0), 0, 60
                ),
                benefits=tuple(str(b)[:40] for b in benefits if isinstance(b, str)),
            )
        )
        if tiers[-1].discount_rate >= 1:
            errors.append(FieldError(f"{p}.discount_rate", "invalid", _("A discount is below 1.")))
    categories = merged.get("categories")
    if not isinstance(categories, dict) or not categories:
        errors.append(FieldError("categories", "required", _("At least one category is required.")))
        categories = {}
    referral = merged.get("referral") or {}
    activities = merged.get("activities") or {}
    if not isinstance(activities, dict) or "default" not in activities:
        errors.append(FieldError("activities", "invalid", _("A 'default' activity is required.")))
        activities = {"default": {"points": 0, "loyalty": 1}}
    eval_months = merged.get("evaluation_months") or []
    reminder_days = merged.get("reminder_days") or []
    rules = Rules(
        version=version,
        time_zone=str(merged.get("time_zone")),
        window_months=integer("window_months", merged.get("window_months"), 1, 60),
        evaluation_months=tuple(
            sorted({integer("evaluation_months", m, 1, 12) for m in eval_months})
        ),
        return_window_days=integer("return_window_days", merged.get("return_window_days"), 0, 365),
        expiry_months=integer("expiry_months", merged.get("expiry_months"), 1, 120),
        reminder_days=tuple(
            sorted({integer("reminder_days", d, 1, 365) for d in reminder_days}, reverse=True)
        ),
        points_per_cny=integer("points_per_cny", merged.get("points_per_cny"), 1, 10**6),
        categories={str(k)[:32]: dec(f"categories.{k}", v) for k, v in categories.items()},
        referral_referrer=integer("referral.referrer", referral.get("referrer", 0)),
        referral_referee=integer("referral.referee", referral.get("referee", 0)),
        referral_loyalty=integer("referral.loyalty", referral.get("loyalty", 0)),
        activities={
            str(k)[:64]: {
                "points": integer(f"activities.{k}.points", (v or {}).get("points", 0)),
                "loyalty": integer(f"activities.{k}.loyalty", (v or {}).get("loyalty", 0)),
            }
            for k, v in activities.items()
        },
        birthday_coupon_valid_days=integer(
            "birthday_coupon_valid_days", merged.get("birthday_coupon_valid_days"), 1, 366
        ),
        tiers=tuple(tiers),
        raw=merged,
    )
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(rules.time_zone)
    except Exception:
        errors.append(FieldError("time_zone", "invalid", _("Unknown time zone.")))
    if errors:
        raise _refuse(errors)
    return rules


# Rules are read on every order event; a short in-process cache saves the query. Publishing
# a version clears this process's cache at once; other processes see it within the TTL.
CACHE_SECONDS = 5.0
_cache_lock = threading.Lock()
_cached: tuple[float, Rules] | None = None


def current() -> Rules:
    """The rules in force now (the newest effective version, or the defaults)."""
    global _cached
    from patron.core import clock
    from patron.loyalty.models import ProgramVersion

    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    row = (
        ProgramVersion.objects.filter(effective_at__lte=clock.now())
        .order_by("-version")
        .values_list("version", "rules")
        .first()
    )
    rules = parse(row[1], row[0]) if row else parse(DEFAULT_RULES, 0)
    with _cache_lock:
        _cached = (now, rules)
    return rules


def forget() -> None:
    """Drop this process's cached rules (after publishing a version; in tests)."""
    global _cached
    with _cache_lock:
        _cached = None
