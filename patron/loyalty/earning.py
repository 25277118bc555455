"""How many points an amount earns (PTS-1, TIER-5): one definition for orders and quotes.

``points_for(amount, tier, category, rules) -> (purchase, rebate)``:

- purchase points = floor(amount x the tier's points rate x the category's multiplier);
- rebate points (the cash-back benefit) = floor(amount x the tier's rebate rate x the value
  of a point, ``points_per_cny``): a 2% rebate on 1,000.00 CNY is 20 CNY, credited as 2,000
  points at 100 points per CNY.

``amount`` is what the member pays (net of any member discount and refunds). The order
service and ``benefits.quote`` both call this, so a quote always says what the order earns.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from patron.loyalty.rules import Rules, Tier

ONE = Decimal(1)


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def rule_for(tier: Tier | str, category: str, rules: Rules) -> dict[str, str | int]:
    """The rule that earns on this tier and category, as kept on each lot."""
    tier = rules.tier(tier) if isinstance(tier, str) else tier
    return {
        "version": rules.version,
        "tier": tier.code,
        "rate": str(tier.points_rate),
        "multiplier": str(rules.multiplier(category)),
        "rebate_rate": str(tier.rebate_rate),
        "points_per_cny": rules.points_per_cny,
    }


def points_for(amount: Decimal, tier: Tier | str, category: str, rules: Rules) -> tuple[int, int]:
    """``(purchase, rebate)`` points for paying ``amount`` CNY on ``tier`` in ``category``.

    Raises ``KeyError`` for a category the rules do not know (callers validate first).
    A non-positive amount earns nothing.
    """
    tier = rules.tier(tier) if isinstance(tier, str) else tier
    multiplier = rules.multiplier(category)
    amount = Decimal(amount)
    if amount <= 0:
        return 0, 0
    purchase = _floor(amount * tier.points_rate * multiplier)
    rebate = _floor(amount * tier.rebate_rate * rules.points_per_cny)
    return max(purchase, 0), max(rebate, 0)
