"""Benefits by tier and member quotes (TIER-5, TIER-6, BEN-2, PTS-1)."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from patron.core.exceptions import PatronError
from patron.loyalty import earning
from patron.loyalty import rules as program
from patron.loyalty.models import ProgramVersion, Reward
from patron.loyalty.services.benefits import benefits, quote
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.reward_support import make_reward, set_tier, snapshot

pytestmark = pytest.mark.django_db


def _publish(**changes) -> None:
    rules = copy.deepcopy(program.DEFAULT_RULES)
    rules.update(changes)
    ProgramVersion.objects.create(version=1, rules=rules, effective_at=NOW - dt.timedelta(days=1))
    program.forget()


def _member(tier: str):
    member = make_member()
    set_tier(member, tier)
    return member


@time_machine.travel(NOW, tick=False)
def test_tier5_benefits_follow_the_tier():
    regular = benefits(make_member())  # no account yet: the base tier
    assert regular["tier"] == "regular" and regular["benefits"] == []
    assert regular["priority_purchase"] is False and regular["offers"] == []
    assert regular["discount_rate"] == 0 and regular["points_rate"] == 1

    gold = benefits(_member("gold"))
    assert (gold["name"], gold["name_en"]) == ("金卡会员", "Gold")
    assert gold["discount_rate"] == Decimal("0.05") and gold["points_rate"] == Decimal("1.5")
    assert gold["birthday_coupon"] == 50 and gold["priority_purchase"] is True
    assert gold["benefits"] == [
        {"code": "priority_service", "zh": "优先服务", "en": "Priority service"},
        {"code": "dedicated_team", "zh": "专属服务团队", "en": "Dedicated service team"},
        {
            "code": "priority_purchase",
            "zh": "新品优先购买",
            "en": "Priority purchase of new products",
        },
    ]
    diamond = benefits(_member("diamond"))
    assert diamond["rebate_rate"] == Decimal("0.02")
    assert "exclusive_events" in [b["code"] for b in diamond["benefits"]]
    silver = benefits(_member("silver"))
    assert silver["priority_purchase"] is False


@time_machine.travel(NOW, tick=False)
def test_ben2_offers_are_the_exclusive_rewards_the_tier_opens():
    make_reward("everyone")  # not exclusive: in the catalog, not an offer
    make_reward("silver-night", min_tier="silver")
    make_reward("gold-premiere", min_tier="gold", cost_points=50)
    make_reward("diamond-gala", min_tier="diamond")
    make_reward("gold-closed", min_tier="gold", active=False)
    make_reward("gold-ended", min_tier="gold", available_until=NOW)
    make_reward("gold-soon", min_tier="gold", available_from=NOW + dt.timedelta(days=1))
    offers = benefits(_member("gold"))["offers"]
    assert [o["code"] for o in offers] == ["gold-premiere", "silver-night"]
    assert offers[0]["min_tier"] == "gold" and offers[0]["kind"] == Reward.Kind.VOUCHER
    assert benefits(_member("regular"))["offers"] == []
    assert len(benefits(_member("diamond"))["offers"]) == 3


@time_machine.travel(NOW, tick=False)
def test_tier6_quote_per_tier():
    members = {tier: _member(tier) for tier in ("regular", "silver", "gold", "diamond")}
    before = snapshot()
    assert quote(members["regular"], "120.00", "ticket") == {
        "tier": "regular",
        "amount": Decimal("120.00"),
        "discount": Decimal("0.00"),
        "price": Decimal("120.00"),
        "points": 120,
        "purchase_points": 120,
        "rebate_points": 0,
    }
    silver = quote(members["silver"], Decimal("120"), "ticket")
    # 120 x 0.95 = 114.00; 114 x 1.2 = 136.8 -> 136 points.
    assert (silver["discount"], silver["price"], silver["points"]) == (6, Decimal("114.00"), 136)
    # Half up to the cent: 10.30 x 0.95 = 9.785 -> 9.79 (half even would give 9.78).
    assert quote(members["gold"], "10.30", "ticket")["price"] == Decimal("9.79")
    diamond = quote(members["diamond"], "1000", "concession")
    # 950 x 2 = 1900 purchase points; rebate 2% of 950 = 19 CNY = 1900 points at 100/CNY.
    assert (diamond["price"], diamond["purchase_points"], diamond["rebate_points"]) == (
        Decimal("950.00"),
        1900,
        1900,
    )
    assert diamond["points"] == 3800
    assert snapshot() == before  # a quote writes nothing


@time_machine.travel(NOW, tick=False)
def test_pts1_quote_uses_the_category_multiplier_of_the_rules_in_force():
    _publish(categories={"ticket": "1", "merchandise": "2.5"})
    member = _member("silver")
    # 200 x 0.95 = 190; 190 x 1.2 x 2.5 = 570.
    assert quote(member, "200", "merchandise")["points"] == 570
    assert quote(member, "200", "ticket")["points"] == 228
    with pytest.raises(PatronError) as caught:
        quote(member, "200", "concession")  # no longer a category
    assert caught.value.code == "unknown_category"


@time_machine.travel(NOW, tick=False)
def test_tier6_quote_refuses_bad_amounts_and_categories():
    member = make_member()
    for amount in ("0", "-5", "1.001", "abc", "1e20", None):
        with pytest.raises(PatronError) as caught:
            quote(member, amount, "ticket")
        assert caught.value.status == 422, amount
    with pytest.raises(PatronError) as caught:
        quote(member, "0", "nope")
    assert {e.field for e in caught.value.errors} == {"amount", "category"}


def test_pts1_points_for_floors_each_part():
    rules = program.parse(program.DEFAULT_RULES)
    assert earning.points_for(Decimal("99.99"), "silver", "ticket", rules) == (119, 0)
    assert earning.points_for(Decimal("1.99"), "diamond", "ticket", rules) == (3, 3)
    assert earning.points_for(Decimal("0"), "diamond", "ticket", rules) == (0, 0)
    with pytest.raises(KeyError):
        earning.points_for(Decimal("1"), "regular", "nope", rules)
