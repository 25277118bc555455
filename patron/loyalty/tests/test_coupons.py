"""Coupons (BEN-1): issue once per key, validity in the program's time zone, single use with
owner, validity and minimum-spend checks, idempotent retries, and a race for one coupon."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from patron.core.exceptions import Conflict, Forbidden, NotFound, PatronError
from patron.core.models import AuditEvent
from patron.loyalty.models import Coupon, Order
from patron.loyalty.services import coupons
from patron.loyalty.services.coupons import CouponUse
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.reward_support import (
    PLATFORM,
    STAFF,
    SYSTEM,
    at,
    endpoint,  # noqa: F401 - fixture
    in_threads,
    snapshot,
    webhook_events,
)

pytestmark = pytest.mark.django_db


def _issue(member, *, key="c1", value="20.00", min_spend="100.00", valid_days=30, **kw):
    kw.setdefault("actor", SYSTEM)
    return coupons.issue(
        member,
        source=kw.pop("source", Coupon.Source.CAMPAIGN),
        value=value,
        min_spend=min_spend,
        valid_days=valid_days,
        key=key,
        **kw,
    )


def _coupon_state(coupon):
    coupon.refresh_from_db()
    return (coupon.status, coupon.used_order_id, coupon.used_amount, coupon.used_at)


def _refused_use(error_type, code, coupon_code, **kw):
    before = snapshot()
    states = list(Coupon.objects.order_by("id").values_list("status", "used_order_id"))
    kw.setdefault("order_id", "o-x")
    kw.setdefault("amount", "150.00")
    with pytest.raises(error_type) as caught:
        coupons.use(coupon_code, actor=PLATFORM, **kw)
    assert caught.value.code == code
    assert snapshot() == before
    assert list(Coupon.objects.order_by("id").values_list("status", "used_order_id")) == states
    return caught.value


@pytest.mark.usefixtures("endpoint")
@time_machine.travel(NOW, tick=False)
def test_ben1_issue_sets_validity_in_program_days_and_repeats_once_per_key():
    member = make_member()
    coupon = _issue(member, valid_days=1)
    assert (coupon.value, coupon.min_spend, coupon.status) == (Decimal("20.00"), 100, "issued")
    assert len(coupon.code) == 12
    # One day: the day of issue only, to midnight in Shanghai.
    assert coupon.valid_until == at(2026, 11, 23)
    before = snapshot()
    assert _issue(member, valid_days=1).pk == coupon.pk
    assert snapshot() == before
    other = make_member()
    with pytest.raises(Conflict) as caught:
        _issue(other)
    assert caught.value.code == "idempotency_key_reused"
    [event] = webhook_events("coupon.issued")
    assert coupon.code in event.body and member.number in event.body
    assert AuditEvent.objects.filter(action="coupon.issued").count() == 0  # not staff


@time_machine.travel(NOW, tick=False)
def test_ben1_compensation_by_staff_is_audited_and_bad_values_change_nothing():
    member = make_member()
    coupon = _issue(member, key="comp-1", source=Coupon.Source.COMPENSATION, actor=STAFF)
    event = AuditEvent.objects.get(action="coupon.issued")
    assert (event.subject_id, event.details["member_id"]) == (str(coupon.pk), member.pk)
    before = snapshot()
    with pytest.raises(PatronError) as caught:
        coupons.issue(
            member,
            source="lottery",
            value="-1",
            min_spend="1.001",
            valid_days=0,
            key="bad",
            actor=STAFF,
        )
    assert caught.value.status == 422
    assert {e.field for e in caught.value.errors} == {"source", "value", "min_spend", "valid_days"}
    assert snapshot() == before


@time_machine.travel(NOW, tick=False)
def test_ben1_use_once_and_a_retry_for_the_same_order_returns_the_first_result():
    member = make_member()
    coupon = _issue(member)
    used = coupons.use(
        coupon.code.lower(),
        order_id="o-1",
        amount="150.00",
        member_number=member.number,
        actor=PLATFORM,
    )
    assert isinstance(used, CouponUse)
    assert (used.discount, used.replayed) == (Decimal("20.00"), False)
    assert _coupon_state(coupon) == ("used", "o-1", Decimal("150.00"), NOW)

    with time_machine.travel(NOW + dt.timedelta(days=60), tick=False):  # expired by now
        again = coupons.use(coupon.code, order_id="o-1", amount="150.00", actor=PLATFORM)
    assert (again.coupon.pk, again.discount, again.replayed) == (coupon.pk, Decimal("20.00"), True)
    assert _coupon_state(coupon) == ("used", "o-1", Decimal("150.00"), NOW)
    _refused_use(Conflict, "coupon_used", coupon.code, order_id="o-2")


@time_machine.travel(NOW, tick=False)
def test_ben1_discount_is_capped_by_the_amount():
    member = make_member()
    coupon = _issue(member, value="50.00", min_spend="0")
    assert coupons.use(coupon.code, order_id="o", amount="30.00", actor=PLATFORM).discount == 30


@time_machine.travel(NOW, tick=False)
def test_ben1_use_refusals_change_nothing():
    owner, stranger = make_member(), make_member()
    coupon = _issue(owner)
    assert _refused_use(NotFound, "coupon_not_found", "NOSUCHCODE22").status == 404
    _refused_use(NotFound, "coupon_not_found", "x" * 40)
    error = _refused_use(Forbidden, "coupon_not_owned", coupon.code, member_number=stranger.number)
    assert error.status == 403
    # An order Patron knows belongs to its member: another member's coupon cannot pay it.
    Order.objects.create(
        order_id="o-stranger",
        member=stranger,
        amount=Decimal("150.00"),
        category="ticket",
        status="paid",
        paid_at=NOW,
        tier_at_paid="regular",
    )
    _refused_use(Forbidden, "coupon_not_owned", coupon.code, order_id="o-stranger")
    error = _refused_use(PatronError, "below_min_spend", coupon.code, amount="99.99")
    assert error.status == 422
    _refused_use(PatronError, "validation_failed", coupon.code, amount="0", order_id="")
    with time_machine.travel(at(2026, 12, 22), tick=False):  # 30 days counted from 22 Nov
        assert _refused_use(Conflict, "coupon_expired", coupon.code).status == 409
    with time_machine.travel(at(2026, 12, 21, 23, 59), tick=False):
        assert coupons.use(coupon.code, order_id="o-last-day", amount="100", actor=PLATFORM)


@time_machine.travel(NOW, tick=False)
def test_ben1_not_yet_valid_and_void_coupons_are_refused():
    member = make_member()
    later = Coupon.objects.create(
        code="LATER2345678",
        member=member,
        source=Coupon.Source.CAMPAIGN,
        value=Decimal("10"),
        valid_from=NOW + dt.timedelta(days=1),
        valid_until=NOW + dt.timedelta(days=10),
    )
    _refused_use(Conflict, "coupon_not_yet_valid", later.code)
    Coupon.objects.filter(pk=later.pk).update(status=Coupon.Status.VOID)
    _refused_use(Conflict, "coupon_void", later.code)


@time_machine.travel(NOW, tick=False)
def test_ben1_coupons_page_is_newest_first_with_a_cursor():
    member = make_member()
    made = [_issue(member, key=f"p{i}") for i in range(5)]
    page, cursor = coupons.coupons_page(member.pk, limit=2)
    assert [c.pk for c in page] == [made[4].pk, made[3].pk]
    page, cursor = coupons.coupons_page(member.pk, before=cursor, limit=2)
    assert [c.pk for c in page] == [made[2].pk, made[1].pk]
    page, cursor = coupons.coupons_page(member.pk, before=cursor, limit=2)
    assert ([c.pk for c in page], cursor) == ([made[0].pk], None)


@pytest.mark.django_db(transaction=True)
def test_ben1_eight_orders_race_for_one_coupon_exactly_one_wins():
    member = make_member()
    coupon = _issue(member, min_spend="0")

    def work(i: int):
        return coupons.use(coupon.code, order_id=f"race-{i}", amount="80.00", actor=PLATFORM)

    results = in_threads(8, work)
    won = [r for r in results if isinstance(r, CouponUse)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1, results
    assert len(lost) == 7 and {e.code for e in lost} == {"coupon_used"}, results
    coupon.refresh_from_db()
    assert coupon.used_order_id == won[0].coupon.used_order_id
