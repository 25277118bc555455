"""The rewards catalog (PTS-4, BEN-2): staff create, edit, restock and withdraw rewards,
validated field by field and audited."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from patron.core.exceptions import Conflict, PatronError
from patron.core.models import AuditEvent
from patron.loyalty.models import Reward
from patron.loyalty.services import rewards
from patron.loyalty.tests.helpers import NOW
from patron.loyalty.tests.reward_support import STAFF, make_reward, snapshot

pytestmark = pytest.mark.django_db

GOOD = {
    "code": "premiere-ticket",
    "name": "首映礼门票",
    "name_en": "Premiere ticket",
    "kind": "ticket",
    "cost_points": 3000,
    "stock": 50,
    "per_member_limit": 2,
    "limit_period": "year",
    "min_tier": "gold",
    "value": "0",
    "valid_days": 60,
    "available_from": "2026-12-01T00:00:00+08:00",
    "available_until": "2026-12-31T00:00:00+08:00",
}


def _refused(error_type, code, call, *args, **kwargs):
    before = snapshot(Reward)
    rows = list(Reward.objects.order_by("id").values())
    with pytest.raises(error_type) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code
    assert snapshot(Reward) == before
    assert list(Reward.objects.order_by("id").values()) == rows
    return caught.value


@time_machine.travel(NOW, tick=False)
def test_pts4_create_reward_audited_with_defaults():
    reward = rewards.create_reward(GOOD, actor=STAFF)
    assert (reward.kind, reward.cost_points, reward.stock, reward.min_tier) == (
        "ticket",
        3000,
        50,
        "gold",
    )
    assert reward.available_from == dt.datetime(2026, 11, 30, 16, tzinfo=dt.UTC)
    event = AuditEvent.objects.get(action="reward.created")
    assert event.details == {"code": "premiere-ticket", "cost_points": 3000}
    plain = rewards.create_reward({"code": "cola", "name": "可乐", "cost_points": 10}, actor=STAFF)
    assert (plain.kind, plain.limit_period, plain.valid_days, plain.stock, plain.active) == (
        "coupon",
        "month",
        30,
        None,
        True,
    )
    assert plain.value == Decimal("0")


@time_machine.travel(NOW, tick=False)
def test_pts4_every_bad_field_is_reported_and_nothing_is_created():
    bad = {
        **GOOD,
        "code": "Not A Slug",
        "name": "",
        "kind": "gift",
        "cost_points": 0,
        "stock": -1,
        "per_member_limit": 0,
        "limit_period": "week",
        "min_tier": "platinum",
        "value": "-5",
        "min_spend": "abc",
        "valid_days": 0,
        "active": "yes",
        "available_from": "tomorrow",
        "colour": "red",
    }
    error = _refused(PatronError, "validation_failed", rewards.create_reward, bad, actor=STAFF)
    assert {e.field for e in error.errors} == {
        "code",
        "name",
        "kind",
        "cost_points",
        "stock",
        "per_member_limit",
        "limit_period",
        "min_tier",
        "value",
        "min_spend",
        "valid_days",
        "active",
        "available_from",
        "colour",
    }
    assert {e.code for e in error.errors if e.field == "min_tier"} == {"unknown_tier"}
    _refused(
        PatronError,
        "invalid",
        rewards.create_reward,
        {**GOOD, "valid_days": 3651},
        actor=STAFF,
    )
    _refused(
        PatronError,
        "window_not_ordered",
        rewards.create_reward,
        {**GOOD, "available_until": GOOD["available_from"]},
        actor=STAFF,
    )
    rewards.create_reward(GOOD, actor=STAFF)
    _refused(Conflict, "reward_code_taken", rewards.create_reward, GOOD, actor=STAFF)


@time_machine.travel(NOW, tick=False)
def test_pts4_update_changes_only_given_fields_and_audits_their_names():
    reward = make_reward(stock=5)
    updated = rewards.update_reward(
        reward, {"cost_points": 150, "name": "爆米花大份", "min_tier": ""}, actor=STAFF
    )
    assert (updated.cost_points, updated.name, updated.stock) == (150, "爆米花大份", 5)
    assert AuditEvent.objects.get(action="reward.updated").details == {
        "fields": ["cost_points", "name"]
    }
    _refused(
        PatronError, "unknown_field", rewards.update_reward, reward, {"code": "x"}, actor=STAFF
    )
    _refused(
        PatronError,
        "window_not_ordered",
        rewards.update_reward,
        reward,
        {"available_from": NOW, "available_until": NOW - dt.timedelta(seconds=1)},
        actor=STAFF,
    )
    rewards.deactivate(reward, actor=STAFF)
    reward.refresh_from_db()
    assert reward.active is False
    assert AuditEvent.objects.filter(action="reward.updated").count() == 2


@time_machine.travel(NOW, tick=False)
def test_pts4_stock_is_added_and_withdrawn_relative_never_below_zero():
    reward = make_reward(stock=5)
    assert rewards.add_stock(reward, 10, actor=STAFF).stock == 15
    assert rewards.add_stock(reward, -15, actor=STAFF).stock == 0
    assert [e.details for e in AuditEvent.objects.filter(action="reward.stock_added")] == [
        {"quantity": 10, "stock": 15},
        {"quantity": -15, "stock": 0},
    ]
    _refused(Conflict, "out_of_stock", rewards.add_stock, reward, -1, actor=STAFF)
    _refused(PatronError, "invalid", rewards.add_stock, reward, 0, actor=STAFF)
    unlimited = make_reward("free-refill")
    _refused(Conflict, "stock_unlimited", rewards.add_stock, unlimited, 5, actor=STAFF)


@time_machine.travel(NOW, tick=False)
def test_ben2_catalog_lists_what_is_offered_now_and_what_a_tier_may_redeem():
    make_reward("a", cost_points=10)
    make_reward("b", cost_points=20, min_tier="gold")
    make_reward("c", cost_points=30, active=False)
    make_reward("d", cost_points=40, available_until=NOW)
    assert [r.code for r in rewards.catalog()] == ["a", "b"]
    assert [r.code for r in rewards.catalog(tier="silver")] == ["a"]
    assert [r.code for r in rewards.catalog(tier="diamond")] == ["a", "b"]
