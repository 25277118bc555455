"""The order and tier API (issue 3 contract): PUT /orders/{order_id}, POST /orders:batch,
GET /members/{number}/tier; scopes, problem+json refusals, Idempotency-Key on a PUT."""

from __future__ import annotations

import json

import pytest
import time_machine

from patron.api.models import IdempotencyRecord
from patron.api.schemas.orders import OrderBatchOut
from patron.loyalty.models import Order
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.tests.orderkit import DAY
from patron.loyalty.verify import verify_ledger
from tests.fixtures import PlatformClient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def body(who, **changes):
    data = {
        "member": who.number,
        "amount": "2500.00",
        "currency": "CNY",
        "category": "ticket",
        "status": "paid",
        "paid_at": (NOW - DAY).isoformat(),
    }
    data.update(changes)
    return data


def put(client, order_id, data, **extra):
    return client.put(
        f"/api/v1/orders/{order_id}", json.dumps(data), content_type="application/json", **extra
    )


def test_put_order_answers_points_and_tier_and_a_retry_answers_the_same(platform):
    member = make_member()
    first = put(platform, "API-1", body(member))
    assert first.status_code == 200, first.content
    assert first.json() == {
        "order_id": "API-1",
        "member": member.number,
        "status": "paid",
        "refunded_amount": "0.00",
        "points": {"earned": 2500, "pending": 2500, "available": 0, "clawed_back": 0},
        "tier": "silver",
        "changed": True,
        "tier_change": {
            "from_tier": "regular",
            "to_tier": "silver",
            "kind": "upgrade",
            "reason": "order_paid",
        },
    }
    before = counts()
    again = put(platform, "API-1", body(member, amount=2500))  # a number is fine too
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["points"] == first.json()["points"]
    assert counts() == before


def test_put_order_refusals_are_problem_json_and_change_nothing(platform):
    member = make_member()
    put(platform, "API-2", body(member))
    before = counts()
    cases = [
        ("API-3", body(member, category="popcorn", currency="USD"), 422, "validation_failed"),
        ("API-3", body(member, amount="abc"), 422, "validation_failed"),
        ("API-3", body(member, member="000000000000"), 404, "member_not_found"),
        ("API-2", body(member, amount="2400.00"), 409, "order_conflict"),
        ("bad id!", body(member), 422, "invalid"),
    ]
    for order_id, data, status, code in cases:
        response = put(platform, order_id, data)
        assert response.status_code == status, (order_id, response.content)
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == code
    response = put(platform, "API-3", body(member, category="popcorn", currency="USD"))
    assert {e["field"]: e["code"] for e in response.json()["errors"]} == {
        "category": "unknown_category",
        "currency": "unsupported_currency",
    }
    put(platform, "API-2", body(member, status="delivered", delivered_at=NOW.isoformat()))
    response = put(platform, "API-2", body(member))
    assert (response.status_code, response.json()["code"]) == (409, "stale_order_state")
    assert counts()["Order"] == before["Order"]


def test_put_order_needs_the_orders_scope(api_key_factory):
    member = make_member()
    client = PlatformClient(api_key_factory(["loyalty:read"]).secret)
    response = put(client, "API-4", body(member))
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert not Order.objects.exists()
    anonymous = put(PlatformClient("nope"), "API-4", body(member))
    assert anonymous.status_code == 401


def test_put_order_with_an_idempotency_key_replays_and_guards_the_key(platform):
    member = make_member()
    first = put(platform, "API-5", body(member), HTTP_IDEMPOTENCY_KEY="k-1")
    replay = put(platform, "API-5", body(member), HTTP_IDEMPOTENCY_KEY="k-1")
    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    other = put(platform, "API-5", body(member, status="cancelled"), HTTP_IDEMPOTENCY_KEY="k-1")
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    assert IdempotencyRecord.objects.count() == 1
    assert Order.objects.get(order_id="API-5").status == "paid"


def test_batch_answers_each_item_with_a_result_or_a_problem(platform):
    member = make_member()
    orders = [
        {"order_id": "BAT-1", **body(member, amount="100.00")},
        {"order_id": "BAT-2", **body(member, amount="oops")},
        {"order_id": "BAT-3", **body(member, category="popcorn")},
        {"order_id": "BAT-1", **body(member, amount="100.00", status="cancelled")},
        ["not", "an", "order"],
        {"order_id": "BAT-4", **body(member, member="000000000000")},
    ]
    response = platform.post_json("/api/v1/orders:batch", {"orders": orders})
    assert response.status_code == 200, response.content
    OrderBatchOut.model_validate(response.json())  # the documented shape
    results = response.json()["results"]
    assert [r["order_id"] for r in results] == ["BAT-1", "BAT-2", "BAT-3", "BAT-1", None, "BAT-4"]
    assert results[0]["result"]["points"]["pending"] == 100 and results[0]["problem"] is None
    assert results[1]["problem"]["errors"][0]["field"] == "amount"
    assert results[2]["problem"]["code"] == "unknown_category"
    assert results[3]["result"]["status"] == "cancelled"
    assert results[4]["problem"]["status"] == 422
    assert (results[5]["problem"]["status"], results[5]["problem"]["code"]) == (
        404,
        "member_not_found",
    )
    assert verify_ledger().ok


def test_batch_over_1000_items_is_422(platform):
    member = make_member()
    orders = [{"order_id": f"M-{n}", **body(member)} for n in range(1001)]
    response = platform.post_json("/api/v1/orders:batch", {"orders": orders})
    assert (response.status_code, response.json()["code"]) == (422, "too_many_orders")
    assert not Order.objects.exists()


def test_get_member_tier(platform):
    member = make_member()
    put(platform, "T-1", body(member))
    response = platform.get(f"/api/v1/members/{member.number}/tier")
    assert response.status_code == 200
    data = response.json()
    assert data["member"] == member.number
    assert (data["tier"], data["name_en"]) == ("silver", "Silver")
    assert data["window"] == {"spend": "2500.00", "orders": 1, "loyalty": 0}
    assert data["next"]["tier"] == "gold"
    assert data["retain"]["until"].startswith("2027-01-01T00:00:00")
    assert data["retain"]["missing"] == {"spend": "0.00", "orders": 0, "loyalty": 0}
    missing = platform.get("/api/v1/members/000000000000/tier")
    assert (missing.status_code, missing.json()["code"]) == (404, "member_not_found")


def test_openapi_documents_the_order_operations(platform):
    schema = platform.get("/api/v1/openapi.json").json()
    assert {"put"} <= set(schema["paths"]["/api/v1/orders/{order_id}"])
    assert "post" in schema["paths"]["/api/v1/orders:batch"]
    assert "get" in schema["paths"]["/api/v1/members/{number}/tier"]
    assert schema["components"]["schemas"]["OrderIn"]["examples"]
