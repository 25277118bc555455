"""Activities (PTS-2, TIER-2, TIER-3): loyalty score, activity points, immediate upgrade."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import time_machine

from patron.core.exceptions import Conflict, PatronError
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Lot, LoyaltyEvent, ProgramVersion, TierChange
from patron.loyalty.services.activities import record_activity
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.reward_support import (
    PLATFORM,
    endpoint,  # noqa: F401 - fixture
    snapshot,
    webhook_events,
)
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member

pytestmark = pytest.mark.django_db


def _publish(**changes) -> None:
    rules = copy.deepcopy(program.DEFAULT_RULES)
    rules.update(changes)
    ProgramVersion.objects.create(version=1, rules=rules, effective_at=NOW - dt.timedelta(days=1))
    program.forget()


@time_machine.travel(NOW, tick=False)
def test_pts2_default_activity_adds_loyalty_once_per_key():
    member = make_member()
    event = record_activity(
        member, "premiere_night", NOW - dt.timedelta(hours=2), key="a1", actor=PLATFORM
    )
    assert (event.kind, event.name, event.score, event.key) == (
        "activity",
        "premiere_night",
        1,
        "activity:a1",
    )
    assert Lot.objects.count() == 0  # the default activity gives no points
    before = snapshot()
    assert record_activity(member, "premiere_night", NOW, key="a1", actor=PLATFORM) == event
    assert snapshot() == before
    with pytest.raises(Conflict) as caught:
        record_activity(member, "other", NOW, key="a1", actor=PLATFORM)
    assert caught.value.code == "idempotency_key_reused"


@pytest.mark.usefixtures("endpoint")
@time_machine.travel(NOW, tick=False)
def test_pts2_activity_points_are_credited_with_their_rule():
    _publish(
        activities={
            "default": {"points": 0, "loyalty": 1},
            "charity_screening": {"points": 50, "loyalty": 2},
        }
    )
    member = make_member()
    event = record_activity(member, "charity_screening", NOW, key="c1", actor=PLATFORM)
    assert event.score == 2
    lot = Lot.objects.get()
    assert (lot.source, lot.amount, lot.status) == ("activity", 50, "available")
    assert lot.rule["activity"] == "charity_screening" and lot.rule["version"] == 1
    assert Account.objects.get(pk=member.pk).available == 50
    assert len(webhook_events("points.earned")) == 1
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_tier3_an_activity_that_completes_the_loyalty_score_upgrades_at_once():
    rules = copy.deepcopy(program.DEFAULT_RULES["tiers"])
    rules[1]["any_of"] = {"loyalty": 2}  # Silver: two activities in the window
    _publish(tiers=rules)
    member = make_member()
    record_activity(member, "a", NOW - dt.timedelta(days=400), key="old", actor=PLATFORM)
    record_activity(member, "a", NOW - dt.timedelta(days=30), key="k1", actor=PLATFORM)
    assert Account.objects.get(pk=member.pk).tier == "regular"  # the old one is outside
    record_activity(member, "b", NOW - dt.timedelta(days=1), key="k2", actor=PLATFORM)
    assert Account.objects.get(pk=member.pk).tier == "silver"
    change = TierChange.objects.get()
    assert (change.kind, change.from_tier, change.to_tier, change.loyalty) == (
        "upgrade",
        "regular",
        "silver",
        2,
    )


@time_machine.travel(NOW, tick=False)
def test_pts2_activity_refusals_change_nothing():
    member = make_member()
    before = snapshot()
    for activity, when, field in (
        ("", NOW, "activity"),
        ("bad name!", NOW, "activity"),
        ("ok", NOW + dt.timedelta(hours=1), "occurred_at"),
        ("ok", NOW.replace(tzinfo=None), "occurred_at"),
    ):
        with pytest.raises(PatronError) as caught:
            record_activity(member, activity, when, key="k", actor=PLATFORM)
        assert caught.value.status == 422 and caught.value.errors[0].field == field
    Member.objects.filter(pk=member.pk).update(status=Member.Status.PENDING)
    member.refresh_from_db()
    with pytest.raises(Conflict) as caught:
        record_activity(member, "ok", NOW, key="k", actor=PLATFORM)
    assert caught.value.code == "member_not_active"
    assert snapshot() == before
    assert LoyaltyEvent.objects.count() == 0
