"""Redemptions (PTS-4, PTS-7, BEN-1, BEN-2): checks, limits per period, stock, points,
coupons, idempotency, cancellation, and races on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patron.core.exceptions import Conflict, Forbidden, NotFound, PatronError
from patron.loyalty.ledger import InsufficientPoints
from patron.loyalty.models import Account, Allocation, Coupon, Entry, Lot, Redemption, Reward
from patron.loyalty.services import coupons as coupon_services
from patron.loyalty.services.redemptions import cancel, redeem
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.reward_support import (
    PLATFORM,
    at,
    endpoint,  # noqa: F401 - fixture
    give,
    in_threads,
    make_reward,
    set_tier,
    snapshot,
    webhook_events,
)
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db


def _refused(error_type, code, member, reward_code, quantity=1, key="r-refused"):
    before = snapshot()
    stock = list(Reward.objects.order_by("id").values_list("stock", flat=True))
    balance = Account.objects.filter(pk=member.pk).values_list("available", flat=True).first()
    with pytest.raises(error_type) as caught:
        redeem(member, reward_code, quantity, key=key, actor=PLATFORM)
    assert caught.value.code == code
    assert snapshot() == before
    assert list(Reward.objects.order_by("id").values_list("stock", flat=True)) == stock
    assert (
        Account.objects.filter(pk=member.pk).values_list("available", flat=True).first() == balance
    )
    return caught.value


@pytest.mark.usefixtures("endpoint")
@time_machine.travel(NOW, tick=False)
def test_pts4_redeem_spends_points_issues_coupons_and_announces_them():
    member = make_member()
    give(member, 500, "g1")
    reward = make_reward(stock=10, min_spend="100.00", valid_days=30)

    redemption = redeem(member, "popcorn", 2, key="k1", actor=PLATFORM)

    assert (redemption.quantity, redemption.points, redemption.status) == (2, 200, "active")
    assert redemption.key == "redeem:k1"
    account = Account.objects.get(pk=member.pk)
    assert account.available == 300
    spent = Entry.objects.get(redemption=redemption)
    assert (spent.kind, spent.points, spent.key) == ("redeem", -200, "redeem:k1")
    reward.refresh_from_db()
    assert reward.stock == 8
    issued = list(redemption.coupons.order_by("id"))
    assert len(issued) == 2
    assert len({c.code for c in issued}) == 2
    for coupon in issued:
        assert (coupon.value, coupon.min_spend, coupon.status) == (25, 100, "issued")
        assert coupon.source == "redemption" and coupon.member_id == member.pk
        assert coupon.valid_from == NOW
        # 30 days counting 22 November: usable through 21 December, Shanghai time.
        assert coupon.valid_until == at(2026, 12, 22)
    assert [m.template for m in webhook_events()] == [
        "coupon.issued",
        "coupon.issued",
        "redemption.created",
    ]
    notice = OutboxMessage.objects.get(channel="inapp", template="rewards_redeemed")
    assert notice.member_id == member.pk
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_pts7_same_key_twice_makes_one_redemption():
    member = make_member()
    give(member, 500, "g1")
    make_reward(stock=5)
    first = redeem(member, "popcorn", 1, key="same", actor=PLATFORM)
    before = snapshot()
    again = redeem(member, "popcorn", 1, key="same", actor=PLATFORM)
    assert again.pk == first.pk
    assert snapshot() == before
    assert Account.objects.get(pk=member.pk).available == 400
    assert Reward.objects.get().stock == 4
    # The same key for something else is refused, not silently replayed.
    with pytest.raises(Conflict) as caught:
        redeem(member, "popcorn", 2, key="same", actor=PLATFORM)
    assert caught.value.code == "idempotency_key_reused"
    assert snapshot() == before


@time_machine.travel(NOW, tick=False)
def test_pts4_refusals_change_nothing():
    member = make_member()
    give(member, 1000, "g1")
    make_reward("gone", active=False)
    make_reward("later", available_from=NOW + dt.timedelta(hours=1))
    make_reward("over", available_until=NOW)
    make_reward("gold-only", min_tier="gold")
    make_reward("empty", stock=0)
    make_reward("dear", cost_points=1001)
    make_reward("few", stock=1)

    error = _refused(PatronError, "invalid", member, "gold-only", quantity=0)
    assert error.status == 422
    _refused(PatronError, "invalid", member, "gold-only", quantity=101)
    _refused(NotFound, "reward_not_found", member, "nope")
    _refused(Conflict, "reward_not_available", member, "gone")
    _refused(Conflict, "reward_not_available", member, "later")
    _refused(Conflict, "reward_not_available", member, "over")
    assert _refused(Forbidden, "tier_too_low", member, "gold-only").status == 403
    _refused(Conflict, "out_of_stock", member, "empty")
    _refused(Conflict, "out_of_stock", member, "few", quantity=2)
    assert _refused(InsufficientPoints, "insufficient_points", member, "dear").status == 409
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    member.refresh_from_db()
    _refused(Conflict, "member_not_active", member, "few")
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_ben2_tier_restricted_reward_opens_at_its_tier_and_above():
    silver, gold, diamond = make_member(), make_member(), make_member()
    make_reward("gold-lounge", min_tier="gold", kind=Reward.Kind.PRIVILEGE, value=0)
    for member, tier in ((silver, "silver"), (gold, "gold"), (diamond, "diamond")):
        give(member, 500, f"g-{tier}")
        set_tier(member, tier)
    _refused(Forbidden, "tier_too_low", silver, "gold-lounge")
    assert redeem(gold, "gold-lounge", 1, key="g", actor=PLATFORM).points == 100
    assert redeem(diamond, "gold-lounge", 1, key="d", actor=PLATFORM).points == 100
    assert verify_ledger().ok


def test_pts4_monthly_limit_follows_the_shanghai_calendar_across_a_month_end():
    member = make_member()
    give(member, 1000, "g1")
    make_reward("monthly", per_member_limit=1, limit_period=Reward.Period.MONTH)
    with time_machine.travel(at(2026, 11, 30, 23, 50), tick=False):
        redeem(member, "monthly", 1, key="nov", actor=PLATFORM)
    with time_machine.travel(at(2026, 11, 30, 23, 59), tick=False):
        _refused(Conflict, "limit_reached", member, "monthly", key="nov-2")
    # 00:01 on 1 December in Shanghai is still 30 November in UTC: the program's calendar
    # decides, so a new month (and a new allowance) has begun.
    with time_machine.travel(at(2026, 12, 1, 0, 1), tick=False):
        assert redeem(member, "monthly", 1, key="dec", actor=PLATFORM).points == 100
        _refused(Conflict, "limit_reached", member, "monthly", key="dec-2")
    assert verify_ledger().ok


def test_pts4_daily_yearly_and_lifetime_limits_count_quantities_of_active_redemptions():
    member = make_member()
    give(member, 5000, "g1")
    make_reward("daily", per_member_limit=3, limit_period=Reward.Period.DAY)
    make_reward("yearly", per_member_limit=2, limit_period=Reward.Period.YEAR)
    make_reward("once", per_member_limit=1, limit_period=Reward.Period.EVER)
    with time_machine.travel(at(2026, 12, 31, 23, 0), tick=False):
        redeem(member, "daily", 2, key="d1", actor=PLATFORM)
        _refused(Conflict, "limit_reached", member, "daily", quantity=2)
        redeem(member, "daily", 1, key="d2", actor=PLATFORM)
        redeem(member, "yearly", 2, key="y1", actor=PLATFORM)
        _refused(Conflict, "limit_reached", member, "yearly")
        first_once = redeem(member, "once", 1, key="o1", actor=PLATFORM)
    with time_machine.travel(at(2027, 1, 1, 0, 30), tick=False):
        redeem(member, "daily", 3, key="d3", actor=PLATFORM)
        redeem(member, "yearly", 1, key="y2", actor=PLATFORM)
        _refused(Conflict, "limit_reached", member, "once")
        # A cancelled redemption no longer counts against the limit.
        cancel(first_once.pk, key="c", actor=PLATFORM)
        redeem(member, "once", 1, key="o2", actor=PLATFORM)
    assert verify_ledger().ok


def test_pts7_cancel_restores_exactly_the_spent_lots_and_the_stock():
    member = make_member()
    with time_machine.travel(NOW - dt.timedelta(days=300), tick=False):
        give(member, 60, "old")
    with time_machine.travel(NOW - dt.timedelta(days=10), tick=False):
        give(member, 100, "mid")
    with time_machine.travel(NOW, tick=False):
        give(member, 100, "new")
        make_reward(stock=3, cost_points=70)
        redemption = redeem(member, "popcorn", 2, key="r", actor=PLATFORM)
        old, mid, _new = Lot.objects.order_by("id")
        spent = Entry.objects.get(redemption=redemption, kind="redeem")
        taken = {a.lot_id: a.points for a in spent.allocations.all()}
        assert taken == {old.pk: -60, mid.pk: -80}  # nearest expiry first
        assert Reward.objects.get().stock == 1

        cancelled = cancel(redemption.pk, key="c1", actor=PLATFORM)

        assert cancelled.status == "cancelled" and cancelled.cancelled_at == NOW
        back = Entry.objects.get(redemption=redemption, kind="redeem_cancel")
        assert {a.lot_id: a.points for a in back.allocations.all()} == {old.pk: 60, mid.pk: 80}
        assert [lot.remaining for lot in Lot.objects.order_by("id")] == [60, 100, 100]
        assert Account.objects.get(pk=member.pk).available == 260
        assert Reward.objects.get().stock == 3
        assert set(Coupon.objects.values_list("status", flat=True)) == {"void"}
        # A retry with the same key returns the cancelled redemption; another is refused.
        before = snapshot()
        assert cancel(redemption.pk, key="c1", actor=PLATFORM).pk == redemption.pk
        with pytest.raises(Conflict) as caught:
            cancel(redemption.pk, key="c2", actor=PLATFORM)
        assert caught.value.code == "already_cancelled"
        assert snapshot() == before
        assert Allocation.objects.filter(entry__kind="redeem_cancel").count() == 2
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_pts4_cancel_is_refused_once_a_coupon_was_used():
    member = make_member()
    give(member, 500, "g1")
    make_reward(stock=5)
    redemption = redeem(member, "popcorn", 2, key="r", actor=PLATFORM)
    first = redemption.coupons.order_by("id").first()
    coupon_services.use(first.code, order_id="o-1", amount="50.00", actor=PLATFORM)
    before = snapshot()
    with pytest.raises(Conflict) as caught:
        cancel(redemption.pk, key="c", actor=PLATFORM)
    assert caught.value.code == "coupon_used"
    assert snapshot() == before
    assert sorted(Coupon.objects.values_list("status", flat=True)) == ["issued", "used"]
    assert Reward.objects.get().stock == 3
    assert Account.objects.get(pk=member.pk).available == 300
    assert Redemption.objects.get().status == "active"
    with pytest.raises(NotFound):
        cancel(999999, key="c", actor=PLATFORM)
    assert verify_ledger().ok


# --- races (threads; on PostgreSQL they contend on row locks, on SQLite they serialise) --


@pytest.mark.django_db(transaction=True)
def test_pts4_eight_members_race_for_the_last_item_exactly_one_wins():
    members = [make_member() for _ in range(8)]
    for i, member in enumerate(members):
        give(member, 100, f"g{i}")
    make_reward("last-one", stock=1)

    def work(i: int):
        return redeem(members[i], "last-one", 1, key=f"race-{i}", actor=PLATFORM)

    results = in_threads(8, work)
    won = [r for r in results if isinstance(r, Redemption)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1, results
    assert len(lost) == 7 and {e.code for e in lost} == {"out_of_stock"}, results
    assert Reward.objects.get().stock == 0
    assert Redemption.objects.count() == 1
    assert Coupon.objects.count() == 1
    assert list(Entry.objects.filter(kind="redeem").values_list("points", flat=True)) == [-100]
    assert sum(Account.objects.values_list("available", flat=True)) == 700
    assert verify_ledger().ok


@pytest.mark.django_db(transaction=True)
def test_pts7_eight_redemptions_of_the_same_points_exactly_one_wins():
    member = make_member()
    give(member, 150, "g")
    make_reward(cost_points=100)

    def work(i: int):
        return redeem(member, "popcorn", 1, key=f"same-points-{i}", actor=PLATFORM)

    results = in_threads(8, work)
    won = [r for r in results if isinstance(r, Redemption)]
    lost = [r for r in results if isinstance(r, PatronError)]
    assert len(won) == 1, results
    assert len(lost) == 7 and {e.code for e in lost} == {"insufficient_points"}, results
    assert Account.objects.get(pk=member.pk).available == 50
    assert Entry.objects.filter(kind="redeem").count() == 1
    assert Redemption.objects.count() == 1
    assert verify_ledger().ok


@pytest.mark.django_db(transaction=True)
def test_pts7_eight_retries_with_one_key_make_one_redemption():
    member = make_member()
    give(member, 1000, "g")
    make_reward(stock=10)

    def work(i: int):
        return redeem(member, "popcorn", 1, key="retry", actor=PLATFORM)

    results = in_threads(8, work)
    assert all(isinstance(r, Redemption) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert Redemption.objects.count() == 1
    assert Reward.objects.get().stock == 9
    assert Account.objects.get(pk=member.pk).available == 900
    assert verify_ledger().ok


@pytest.mark.django_db(transaction=True)
def test_ben1_cancel_racing_a_coupon_use_leaves_one_consistent_outcome():
    member = make_member()
    give(member, 100, "g")
    make_reward(stock=1)
    redemption = redeem(member, "popcorn", 1, key="r", actor=PLATFORM)
    code = redemption.coupons.get().code

    def work(i: int):
        if i == 0:
            return cancel(redemption.pk, key="c", actor=PLATFORM)
        return coupon_services.use(code, order_id="o-1", amount="30", actor=PLATFORM)

    cancelled, used = in_threads(2, work)
    coupon = Coupon.objects.get()
    redemption.refresh_from_db()
    if isinstance(cancelled, Redemption):  # the cancel won: the coupon is void, points back
        assert isinstance(used, Conflict) and used.code == "coupon_void", used
        assert (coupon.status, redemption.status) == ("void", "cancelled")
        assert Account.objects.get(pk=member.pk).available == 100
        assert Reward.objects.get().stock == 1
    else:  # the use won: the redemption stands
        assert isinstance(cancelled, Conflict) and cancelled.code == "coupon_used", cancelled
        assert isinstance(used, coupon_services.CouponUse), used
        assert (coupon.status, redemption.status) == ("used", "active")
        assert Account.objects.get(pk=member.pk).available == 0
        assert Reward.objects.get().stock == 0
    assert verify_ledger().ok
