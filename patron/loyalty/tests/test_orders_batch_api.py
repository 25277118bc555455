"""The fast paths of POST /orders:batch: items checked by pydantic-core alone (equal to the
schema's own validation), rows inserted with few-valued columns sent once, and the tier an
order earns at when it was paid before the member's last tier change."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from patron.api.schemas.orders import OrderBatchItemIn, OrderBatchOut, checked_batch_items
from patron.loyalty.models import Order
from patron.loyalty.services.orders import OrderResult, _insert_rows, apply_order, apply_orders
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.orderkit import DAY, PLATFORM, state
from patron.loyalty.verify import verify_ledger

FIELDS = list(OrderBatchItemIn.model_fields)


def _schema(item):
    try:
        return OrderBatchItemIn.model_validate(item).model_dump()
    except ValidationError:
        return None


GOOD = {
    "order_id": "G-1",
    "member": "100000000017",
    "amount": "1280.00",
    "currency": "CNY",
    "category": "ticket",
    "status": "delivered",
    "paid_at": "2026-11-20T19:30:00+08:00",
    "delivered_at": "2026-11-21T10:00:00",
    "refunded_amount": 0,
    "store": "s",
}

SAMPLES = [
    GOOD,
    {k: v for k, v in GOOD.items() if k not in ("delivered_at", "refunded_amount", "store")},
    GOOD | {"amount": "abc"},
    GOOD | {"amount": 12.5, "refunded_amount": None, "store": None},
    GOOD | {"amount": True},
    GOOD | {"paid_at": "yesterday"},
    GOOD | {"paid_at": 1764000000},
    GOOD | {"member": 100000000017},
    GOOD | {"order_id": None},
    GOOD | {"unknown": {"nested": [1, 2]}},
    GOOD | {"status": ["paid"]},
    {k: v for k, v in GOOD.items() if k != "member"},
    {},
    ["not", "an", "order"],
    "text",
    None,
    7,
]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
VALUES = (
    JSON
    | st.sampled_from(["1280.00", "0.5", "-1", "1e3", "2026-11-20T19:30:00+08:00", "2026-11-20"])
    | st.sampled_from(list(GOOD.values()))
)


def test_checked_items_are_what_the_schema_gives():
    expected = [_schema(item) for item in SAMPLES]
    assert checked_batch_items(SAMPLES) == [
        None if not isinstance(item, dict) else data
        for item, data in zip(SAMPLES, expected, strict=True)
    ]
    valid = [GOOD | {"order_id": f"G-{n}"} for n in range(5)]
    assert checked_batch_items(valid) == [_schema(item) for item in valid]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from([*FIELDS, "extra"]), VALUES, max_size=len(FIELDS) + 1).map(
            lambda changes: GOOD | changes
        )
        | st.dictionaries(st.sampled_from(FIELDS), VALUES),
        max_size=4,
    )
)
def test_checked_items_equal_the_schema_for_any_items(items):
    assert checked_batch_items(items) == [_schema(item) for item in items]


@pytest.mark.django_db
def test_batch_endpoint_answers_refusals_like_the_schema_and_results_in_shape(platform):
    member = make_member()
    orders = [{**state(member, f"E-{n}"), "paid_at": (NOW - DAY).isoformat()} for n in range(3)] + [
        {**state(member, "E-9"), "paid_at": "soon"},
        {**state(member, "E-8"), "paid_at": (NOW - DAY).isoformat(), "amount": []},
    ]
    with time_machine.travel(NOW, tick=False):
        response = platform.post_json("/api/v1/orders:batch", {"orders": orders})
    assert response.status_code == 200, response.content
    OrderBatchOut.model_validate(response.json())
    results = response.json()["results"]
    assert [r["result"]["points"]["earned"] for r in results[:3]] == [1000, 1000, 1000]
    assert results[3]["problem"]["errors"][0]["field"] == "paid_at"
    assert results[4]["problem"]["errors"][0]["field"] == "amount"
    assert Order.objects.filter(member=member).count() == 3


@pytest.mark.django_db
def test_insert_rows_keeps_every_value_of_repeated_and_distinct_columns():
    member = make_member()
    now = dt.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=dt.UTC)
    odd = "a\"b\\c{d},e NULL 影城's"
    rows = [
        {
            "order_id": f"R-{n}",
            "member_id": member.pk,
            "amount": Decimal("10.00") + n,
            "currency": "CNY",
            "category": "ticket",
            "store": [odd, "", "NULL", odd][n % 4],
            "status": "paid",
            "refunded_amount": Decimal("0.00"),
            "paid_at": now - dt.timedelta(seconds=n % 2),
            "delivered_at": None if n % 3 else now,
            "final_at": None,
            "tier_at_paid": "regular",
            "created_at": now,
            "updated_at": now,
        }
        for n in range(12)
    ]
    written = _insert_rows(Order, rows)
    assert [row["id"] for row in written] == [row["id"] for row in rows]
    stored = {o.pk: o for o in Order.objects.filter(member=member)}
    for row in rows:
        order = stored[row["id"]]
        for name, value in row.items():
            assert getattr(order, name if name != "id" else "pk") == value, name
    one = _insert_rows(Order, [{**rows[0], "order_id": "R-alone"}])
    assert Order.objects.get(pk=one[0]["id"]).store == odd


@pytest.mark.django_db
def test_batch_order_paid_before_a_tier_change_earns_at_the_tier_held_then():
    def scenario(prefix):
        member = make_member()
        with time_machine.travel(NOW - 2 * DAY, tick=False):
            apply_order(
                state(member, f"{prefix}up", amount="3000.00", paid_at=NOW - 2 * DAY),
                actor=PLATFORM,
            )
        return member, [
            state(member, f"{prefix}old", amount="100.00", paid_at=NOW - 3 * DAY),
            state(member, f"{prefix}new", amount="100.00", paid_at=NOW - DAY),
        ]

    with time_machine.travel(NOW, tick=False):
        one_member, one_items = scenario("s")
        one = [apply_order(item, actor=PLATFORM) for item in one_items]
        batch_member, batch_items = scenario("b")
        batch = apply_orders(batch_items, actor=PLATFORM)
    assert all(isinstance(r, OrderResult) for r in batch)
    assert [r.points for r in batch] == [r.points for r in one]
    earned = [r.points["earned"] for r in batch]
    assert earned[0] < earned[1]  # regular then, silver after
    assert list(
        Order.objects.filter(member=batch_member).order_by("paid_at").values_list("tier_at_paid")
    ) == list(
        Order.objects.filter(member=one_member).order_by("paid_at").values_list("tier_at_paid")
    )
    assert verify_ledger().ok


@pytest.mark.django_db
def test_batch_items_of_known_orders_among_new_ones_apply_one_by_one_in_order():
    from patron.members.models import Member

    with time_machine.travel(NOW, tick=False):
        member, other, leaving = make_member(), make_member(), make_member()
        apply_order(state(other, "T-taken"), actor=PLATFORM)
        apply_order(state(leaving, "T-left"), actor=PLATFORM)
        Member.objects.filter(pk=leaving.pk).update(status=Member.Status.CANCELLED)
        results = apply_orders(
            [
                state(member, "T-1"),
                state(member, "T-taken"),  # another member's order
                state(leaving, "T-left", "delivered", delivered_at=NOW - DAY),
                state(leaving, "T-new"),
                state(member, "T-2"),
                state(member, "T-1", "refunded", refunded="500.00"),
            ],
            actor=PLATFORM,
        )
    first, taken, delivered, refused, second, refunded = results
    assert isinstance(first, OrderResult) and first.points["pending"] == 1000
    assert taken.code == "order_conflict"
    assert isinstance(delivered, OrderResult) and delivered.status == "delivered"
    assert refused.code == "member_cancelled"
    assert isinstance(second, OrderResult) and second.changed
    assert isinstance(refunded, OrderResult) and refunded.points["pending"] == 500
    assert Order.objects.get(order_id="T-taken").member_id == other.pk
    assert not Order.objects.filter(order_id="T-new").exists()
    assert verify_ledger().ok
