"""What a member's tier gives (TIER-5, TIER-6, BEN-2) and what an order would cost and earn.

- ``benefits(member)``: the tier's rates, birthday coupon, benefit codes with Chinese and
  English labels, the member-exclusive offers the tier opens (rewards with a ``min_tier``
  the member meets) and whether the member has priority purchase.
- ``quote(member, amount, category)``: the member price (``amount x (1 - discount_rate)``,
  rounded half up to the cent), the discount, and the points an order at that price would
  earn now: purchase points + cash-back rebate, from ``patron.loyalty.earning`` (the same
  function the order service uses).

Both are reads: nothing is written.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.utils.translation import gettext as _

from patron.core import clock
from patron.core.exceptions import FieldError
from patron.loyalty import earning
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Reward
from patron.loyalty.services.coupons import money
from patron.members.services._common import failed

if TYPE_CHECKING:
    from patron.members.models import Member

CENT = Decimal("0.01")

# Labels of the benefit codes the default program uses; a code the console adds without a
# label here is shown as its code.
LABELS: dict[str, tuple[str, str]] = {
    "priority_service": ("优先服务", "Priority service"),
    "dedicated_team": ("专属服务团队", "Dedicated service team"),
    "dedicated_manager": ("专属客户经理", "Dedicated account manager"),
    "priority_purchase": ("新品优先购买", "Priority purchase of new products"),
    "exclusive_events": ("会员专属活动", "Exclusive member events"),
    "cash_back": ("消费返现", "Cash-back rebate"),
    "birthday_coupon": ("生日礼券", "Birthday coupon"),
}
PRIORITY_PURCHASE = "priority_purchase"


def tier_of(member: Member) -> str:
    code = Account.objects.filter(pk=member.pk).values_list("tier", flat=True).first()
    return code or program.current().tiers[0].code


def offers_for(tier_code: str, rules: program.Rules) -> list[Reward]:
    """Active rewards, offered now, restricted to a tier this member reaches (BEN-2)."""
    now = clock.now()
    rank = rules.rank(tier_code)
    allowed = [t.code for t in rules.tiers if 0 < t.rank <= rank]
    if not allowed:
        return []
    return list(
        Reward.objects.filter(active=True, min_tier__in=allowed)
        .filter(Q(available_from__isnull=True) | Q(available_from__lte=now))
        .filter(Q(available_until__isnull=True) | Q(available_until__gt=now))
        .order_by("cost_points", "code")
    )


def benefits(member: Member) -> dict[str, Any]:
    rules = program.current()
    tier = rules.tier(tier_of(member))
    return {
        "tier": tier.code,
        "name": tier.name,
        "name_en": tier.name_en,
        "discount_rate": tier.discount_rate,
        "points_rate": tier.points_rate,
        "rebate_rate": tier.rebate_rate,
        "birthday_coupon": tier.birthday_coupon,
        "benefits": [
            {"code": code, "zh": zh, "en": en}
            for code in tier.benefits
            for zh, en in [LABELS.get(code, (code, code))]
        ],
        "offers": [
            {
                "code": r.code,
                "name": r.name,
                "name_en": r.name_en,
                "kind": r.kind,
                "min_tier": r.min_tier,
                "cost_points": r.cost_points,
                "value": r.value,
                "available_until": r.available_until,
            }
            for r in offers_for(tier.code, rules)
        ],
        "priority_purchase": PRIORITY_PURCHASE in tier.benefits,
    }


def quote(member: Member, amount: Decimal | str | int, category: str) -> dict[str, Any]:
    """``{tier, amount, discount, price, points, purchase_points, rebate_points}``.

    422 for an amount that is not positive money, 422 ``unknown_category`` for a category
    the program does not know.
    """
    rules = program.current()
    errors: list[FieldError] = []
    paid = money(amount, "amount", errors, positive=True)
    if not isinstance(category, str) or category not in rules.categories:
        errors.append(
            FieldError(
                "category",
                "unknown_category",
                _("Use a category of the program: %(list)s.")
                % {"list": ", ".join(sorted(rules.categories))},
            )
        )
    if errors:
        raise failed(errors)
    assert paid is not None
    tier = rules.tier(tier_of(member))
    price = (paid * (Decimal(1) - tier.discount_rate)).quantize(CENT, rounding=ROUND_HALF_UP)
    purchase, rebate = earning.points_for(price, tier, category, rules)
    return {
        "tier": tier.code,
        "amount": paid,
        "discount": paid - price,
        "price": price,
        "points": purchase + rebate,
        "purchase_points": purchase,
        "rebate_points": rebate,
    }
