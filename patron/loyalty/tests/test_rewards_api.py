"""Issue 3 contract over HTTP: points, adjustments, activities, benefits, quotes, rewards,
redemptions, coupons (PTS-2, PTS-4, PTS-7, TIER-6, BEN-1, BEN-2)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patron.core.models import AuditEvent
from patron.loyalty.models import Account, Coupon, Entry, Redemption, Reward
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.reward_support import give, in_threads, make_reward, set_tier, snapshot
from patron.loyalty.verify import verify_ledger
from tests.fixtures import PlatformClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    return make_member()


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    return body


@time_machine.travel(NOW, tick=False)
def test_points_balance_and_entries_with_cursor(platform, member):
    for i in range(3):
        give(member, 100 * (i + 1), f"g{i}")
    response = platform.get(f"/api/v1/members/{member.number}/points")
    assert response.status_code == 200
    assert response.json() == {
        "member": member.number,
        "tier": "regular",
        "available": 600,
        "pending": 0,
        "debt": 0,
        "expiring": [{"date": "2027-11-22", "points": 600}],
    }
    page = platform.get(f"/api/v1/members/{member.number}/points/entries?limit=2").json()
    assert [e["points"] for e in page["items"]] == [300, 200]
    assert page["items"][0]["kind"] == "adjust" and page["items"][0]["order_id"] is None
    rest = platform.get(
        f"/api/v1/members/{member.number}/points/entries?limit=2&cursor={page['next_cursor']}"
    ).json()
    assert ([e["points"] for e in rest["items"]], rest["next_cursor"]) == ([100], None)
    _problem(
        platform.get(f"/api/v1/members/{member.number}/points/entries?cursor=abc"),
        422,
        "invalid_cursor",
    )
    _problem(platform.get("/api/v1/members/000000000000/points"), 404, "member_not_found")


@time_machine.travel(NOW, tick=False)
def test_pts7_adjustment_needs_scope_and_idempotency_key(platform, api_key_factory, member):
    url = f"/api/v1/members/{member.number}/points/adjustments"
    body = {"points": 250, "reason": "Goodwill"}
    reader = PlatformClient(api_key_factory(["loyalty:read"]).secret)
    before = snapshot()
    assert reader.post_json(url, body, idempotency_key="a").status_code == 403
    _problem(platform.post_json(url, body), 428, "idempotency_key_required")
    assert snapshot() == before

    first = platform.post_json(url, body, idempotency_key="adj-1")
    assert first.status_code == 201, first.content
    data = first.json()
    assert (data["entry"]["points"], data["entry"]["kind"], data["available"]) == (
        250,
        "adjust",
        250,
    )
    again = platform.post_json(url, body, idempotency_key="adj-1")
    assert again.json() == data
    assert Entry.objects.filter(member=member).count() == 1
    assert AuditEvent.objects.filter(action="points.adjusted").count() == 1
    _problem(
        platform.post_json(url, {"points": -251, "reason": "x"}, idempotency_key="adj-2"),
        409,
        "insufficient_points",
    )
    _problem(
        platform.post_json(url, {"points": 5, "reason": ""}, idempotency_key="adj-3"),
        422,
        "required",
    )
    assert Account.objects.get(pk=member.pk).available == 250
    extended = platform.post_json(
        f"/api/v1/members/{member.number}/points/extensions", {"months": 2, "reason": "Works"}
    )
    assert extended.status_code == 200, extended.content
    assert extended.json() == {"extended": 1, "expiring": [{"date": "2028-01-22", "points": 250}]}
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_pts2_activity_over_http_counts_once(platform, member):
    url = f"/api/v1/members/{member.number}/activities"
    body = {"activity": "premiere_night", "occurred_at": "2026-11-21T19:30:00+08:00"}
    first = platform.post_json(url, body)
    assert first.status_code == 201, first.content
    assert first.json()["score"] == 1 and first.json()["points"] == 0
    assert first.json()["tier"] == "regular"
    # Sent again (another key, or none): the same member, activity and moment count once.
    again = platform.post_json(url, body, idempotency_key="other")
    assert again.json()["id"] == first.json()["id"]
    _problem(
        platform.post_json(url, {**body, "occurred_at": "2026-11-23T10:00:00+08:00"}),
        422,
        "in_future",
    )


@time_machine.travel(NOW, tick=False)
def test_tier6_benefits_and_quote_over_http(platform, member):
    set_tier(member, "silver")
    benefits = platform.get(f"/api/v1/members/{member.number}/benefits").json()
    assert benefits["tier"] == "silver" and benefits["discount_rate"] == "0.05"
    assert benefits["benefits"][0] == {
        "code": "priority_service",
        "zh": "优先服务",
        "en": "Priority service",
    }
    response = platform.post_json(
        f"/api/v1/members/{member.number}/quotes", {"amount": "120.00", "category": "ticket"}
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "tier": "silver",
        "amount": "120.00",
        "discount": "6.00",
        "price": "114.00",
        "points": 136,
        "purchase_points": 136,
        "rebate_points": 0,
    }
    _problem(
        platform.post_json(
            f"/api/v1/members/{member.number}/quotes", {"amount": "10", "category": "nope"}
        ),
        422,
        "unknown_category",
    )


@time_machine.travel(NOW, tick=False)
def test_pts4_redeem_cancel_and_use_over_http(platform, member):
    give(member, 1000, "g")
    make_reward(stock=3, min_spend="50.00")
    make_reward("gold-only", min_tier="gold")
    catalog = platform.get("/api/v1/rewards").json()["items"]
    assert [r["code"] for r in catalog] == ["gold-only", "popcorn"]
    mine = platform.get(f"/api/v1/rewards?member={member.number}").json()["items"]
    assert [r["code"] for r in mine] == ["popcorn"]

    url = f"/api/v1/members/{member.number}/redemptions"
    before = snapshot()
    _problem(platform.post_json(url, {"reward": "popcorn"}), 428, "idempotency_key_required")
    _problem(
        platform.post_json(url, {"reward": "gold-only"}, idempotency_key="r0"),
        403,
        "tier_too_low",
    )
    assert snapshot() == before

    first = platform.post_json(url, {"reward": "popcorn", "quantity": 2}, idempotency_key="r1")
    assert first.status_code == 201, first.content
    redemption = first.json()
    assert (redemption["points"], redemption["status"], len(redemption["coupons"])) == (
        200,
        "active",
        2,
    )
    assert redemption["coupons"][0]["valid_until"] == "2026-12-21T16:00:00Z"
    replay = platform.post_json(url, {"reward": "popcorn", "quantity": 2}, idempotency_key="r1")
    assert replay.json() == redemption
    assert Redemption.objects.count() == 1 and Reward.objects.get(code="popcorn").stock == 1

    coupons = platform.get(f"/api/v1/members/{member.number}/coupons?status=issued").json()
    assert len(coupons["items"]) == 2 and coupons["next_cursor"] is None
    code = redemption["coupons"][0]["code"]
    use_url = f"/api/v1/coupons/{code}/use"
    _problem(
        platform.post_json(use_url, {"order_id": "o-1", "amount": "49.99"}),
        422,
        "below_min_spend",
    )
    used = platform.post_json(use_url, {"order_id": "o-1", "amount": "80", "member": member.number})
    assert used.status_code == 200, used.content
    assert (used.json()["discount"], used.json()["replayed"]) == ("25.00", False)
    assert used.json()["coupon"]["status"] == "used"
    retry = platform.post_json(use_url, {"order_id": "o-1", "amount": "80"})
    assert retry.json()["replayed"] is True
    _problem(platform.post_json(use_url, {"order_id": "o-2", "amount": "80"}), 409, "coupon_used")
    _problem(
        platform.post_json("/api/v1/coupons/NOPE/use", {"order_id": "o", "amount": "1"}),
        404,
        "coupon_not_found",
    )

    cancel_url = f"/api/v1/redemptions/{redemption['id']}/cancel"
    _problem(platform.post_json(cancel_url), 409, "coupon_used")
    other = platform.post_json(url, {"reward": "popcorn"}, idempotency_key="r2").json()
    cancelled = platform.post_json(f"/api/v1/redemptions/{other['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["coupons"][0]["status"] == "void"
    _problem(
        platform.post_json(f"/api/v1/redemptions/{other['id']}/cancel"), 409, "already_cancelled"
    )
    _problem(platform.post_json("/api/v1/redemptions/999999/cancel"), 404, "redemption_not_found")
    assert Account.objects.get(pk=member.pk).available == 800
    assert Coupon.objects.filter(status="void").count() == 1
    assert verify_ledger().ok


@time_machine.travel(NOW, tick=False)
def test_api_scopes_are_enforced(api_key_factory, member):
    reader = PlatformClient(api_key_factory(["loyalty:read"]).secret)
    make_reward()
    assert reader.get("/api/v1/rewards").status_code == 200
    assert (
        reader.post_json(
            f"/api/v1/members/{member.number}/redemptions",
            {"reward": "popcorn"},
            idempotency_key="x",
        ).status_code
        == 403
    )
    assert (
        reader.post_json("/api/v1/coupons/X/use", {"order_id": "o", "amount": "1"}).status_code
        == 403
    )
    assert (
        reader.post_json(
            f"/api/v1/members/{member.number}/activities",
            {"activity": "a", "occurred_at": "2026-11-21T19:30:00+08:00"},
        ).status_code
        == 403
    )
    assert Redemption.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_pts7_parallel_requests_with_one_idempotency_key_redeem_once(api_key_factory):
    member = make_member()
    give(member, 1000, "g")
    make_reward(stock=10)
    secret = api_key_factory().secret
    url = f"/api/v1/members/{member.number}/redemptions"

    def work(i: int):
        return PlatformClient(secret).post_json(url, {"reward": "popcorn"}, idempotency_key="p1")

    responses = in_threads(4, work)
    assert sorted(r.status_code for r in responses) == [201] * 4, responses
    assert len({r.json()["id"] for r in responses}) == 1
    assert Redemption.objects.count() == 1
    assert Account.objects.get(pk=member.pk).available == 900
    assert verify_ledger().ok


def test_openapi_documents_the_loyalty_operations(platform):
    spec = platform.get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/members/{number}/points",
        "/api/v1/members/{number}/points/entries",
        "/api/v1/members/{number}/points/adjustments",
        "/api/v1/members/{number}/activities",
        "/api/v1/members/{number}/benefits",
        "/api/v1/members/{number}/quotes",
        "/api/v1/rewards",
        "/api/v1/members/{number}/redemptions",
        "/api/v1/redemptions/{redemption_id}/cancel",
        "/api/v1/members/{number}/coupons",
        "/api/v1/coupons/{code}/use",
    ):
        assert path in paths, path
    redeem = paths["/api/v1/members/{number}/redemptions"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in redeem["parameters"])
    assert dt  # keep the import for readers of the time-travel tests


@time_machine.travel(NOW, tick=False)
def test_odd_input_gets_a_problem_never_a_500(platform, member):
    number = member.number
    odd = [
        platform.post_json(f"/api/v1/redemptions/{2**70}/cancel"),
        platform.post_json("/api/v1/coupons/AB%00CD/use", {"order_id": "o", "amount": "1"}),
        platform.post_json("/api/v1/coupons/ABCD/use", {"order_id": "o", "amount": "NaN"}),
        platform.post_json("/api/v1/coupons/ABCD/use", {"order_id": "o", "amount": 1e300}),
        platform.post_json(
            f"/api/v1/members/{number}/activities",
            {"activity": "a", "occurred_at": "0001-01-01T00:00:00+08:00"},
        ),
        platform.post_json(
            f"/api/v1/members/{number}/points/extensions",
            {"months": 1, "reason": "r", "lots": [2**70]},
        ),
        platform.post_json(
            f"/api/v1/members/{number}/redemptions",
            {"reward": "x", "quantity": 2**70},
            idempotency_key="odd",
        ),
        platform.post_json(
            f"/api/v1/members/{number}/points/adjustments",
            {"points": 2**70, "reason": "r"},
            idempotency_key="odd",
        ),
        platform.post_json(f"/api/v1/members/{number}/quotes", {"amount": "1e-9", "category": 1}),
        platform.get(f"/api/v1/members/{number}/points/entries?cursor={'9' * 30}"),
        platform.get(f"/api/v1/members/{number}/coupons?status=%00"),
    ]
    for response in odd:
        assert 400 <= response.status_code < 500, (response.status_code, response.content)
        assert response["Content-Type"].startswith("application/problem+json")
