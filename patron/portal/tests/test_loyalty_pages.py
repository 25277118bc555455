"""The member's loyalty pages (issue 3 "Portal and console"; TIER-2, TIER-5, TIER-6, PTS-4,
PTS-5, PTS-7, BEN-1): tier progress, benefits, points, rewards, redeeming, coupons.

Data is made through the real services (orders, adjustments, the catalog); redeeming goes
through the page's form with its CSRF token and per-form idempotency token.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from patron.console.tests.helpers import make_staff
from patron.core.audit import Actor
from patron.loyalty.models import Account, Coupon, Entry, Redemption, Reward
from patron.loyalty.services import points, rewards
from patron.loyalty.services.orders import apply_order
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()
PAGES = ["/loyalty/", "/loyalty/points/", "/loyalty/rewards/", "/loyalty/coupons/"]


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _order(member, order_id: str, amount: str, *, days_ago: int = 20, category="ticket"):
    """A delivered order whose return window has closed: its points are available."""
    paid = NOW - dt.timedelta(days=days_ago)
    return apply_order(
        {
            "order_id": order_id,
            "member": member.number,
            "amount": amount,
            "currency": "CNY",
            "category": category,
            "status": "delivered",
            "paid_at": paid.isoformat(),
            "delivered_at": (paid + dt.timedelta(hours=1)).isoformat(),
        },
        actor=SYSTEM,
    )


def _client(member, *, language: str | None = None, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(member.user)
    if language:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def _reward(code="cinema10", **fields):
    data = {"code": code, "name": "十元观影券", "name_en": "CNY 10 cinema coupon"}
    data.update({"cost_points": 300, "value": "10", "valid_days": 30, **fields})
    return rewards.create_reward(data, actor=SYSTEM)


def _token(page: str, code: str) -> str:
    form = page.split(f"/loyalty/rewards/{code}/redeem/", 1)[1]
    return re.search(r'name="token" value="([^"]+)"', form).group(1)


def _csrf(client: Client) -> str:
    client.get("/loyalty/rewards/")
    return client.cookies["csrftoken"].value


# --- access --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/loyalty/rewards/x/redeem/"])
def test_pages_need_a_signed_in_member(client, path):
    response = client.get(path)
    assert response.status_code in (302, 405)
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", PAGES)
def test_staff_are_sent_to_the_console(path):
    client = Client()
    client.force_login(make_staff())
    response = client.get(path)
    assert (response.status_code, response["Location"]) == (302, "/console/")


def test_member_centre_links_to_the_loyalty_pages():
    page = _client(make_member()).get("/").content.decode()
    assert 'href="/loyalty/"' in page


# --- my tier: progress, what keeps it, benefits --------------------------------------------


def test_tier_6_progress_bars_toward_the_next_tier():
    member = make_member()
    _order(member, "p-1", "1500.00")
    _order(member, "p-2", "100.00")
    page = _client(member, language="en").get("/loyalty/").content.decode()
    assert "Regular" in page or "普通会员" in page
    assert "Toward" in page
    # Silver: spend 2,000 or 10 orders; the member has 1,600 and 2 orders.
    assert 'id="bar-any-spend">Spend' in page
    assert "¥1,600.00 / ¥2,000.00" in page
    assert '<progress class="bar" max="100" value="80" aria-labelledby="bar-any-spend">' in page
    assert "Still to go: ¥400.00" in page
    assert "2 / 10" in page
    assert '<progress class="bar" max="100" value="20" aria-labelledby="bar-any-orders">' in page
    # Points: 1 per CNY at Regular, available once the return window closed.
    assert "<strong>1,600</strong><span>available</span>" in page
    assert "Keeping" not in page  # the base tier needs nothing to keep


def test_tier_5_silver_member_sees_benefits_and_what_keeps_the_tier():
    member = make_member()
    _order(member, "s-1", "2500.00")  # Silver at once (spend >= 2,000)
    assert Account.objects.get(pk=member.pk).tier == "silver"
    page = _client(member, language="en").get("/loyalty/").content.decode()
    assert "Toward" in page and "¥2,500.00 / ¥10,000.00" in page  # toward Gold
    # Gold also needs all of spend >= 2,000 and orders >= 10: 1 order so far.
    assert "And each of these" in page
    assert "1 / 10" in page
    assert "Keeping" in page
    assert "You already meet what keeps your tier at the review on 2027-01-01." in page
    assert "5% off" in page
    assert "Priority service" in page
    assert "¥20" in page  # birthday coupon


def test_tier_6_retain_lists_what_is_missing_once_orders_leave_the_window():
    member = make_member()
    _order(member, "old-1", "2500.00", days_ago=340)  # leaves the window before 2027-01-01
    page = _client(member, language="en").get("/loyalty/").content.decode()
    assert "Tiers are reviewed on 2027-01-01. To keep yours, before then add:" in page
    assert "Spend: ¥2,000.00" in page
    assert "Orders: 10" in page


def test_tier_page_is_chinese_by_default():
    member = make_member()
    _order(member, "zh-1", "2500.00")
    page = _client(member).get("/loyalty/").content.decode()
    assert '<html lang="zh-Hans">' in page
    assert "银卡会员" in page


# --- points --------------------------------------------------------------------------------


def test_pts_7_points_history_pages_newest_first():
    member = make_member()
    for i in range(25):
        points.adjust(member, 10 + i, reason=f"goodwill {i}", key=f"h-{i}", actor=SYSTEM)
    client = _client(member, language="en")
    first = client.get("/loyalty/points/").content.decode()
    assert "goodwill 24" in first and "goodwill 5" in first and "goodwill 4" not in first
    assert "+34" in first
    cursor = re.search(r'href="\?before=(\d+)"', first).group(1)
    second = client.get(f"/loyalty/points/?before={cursor}").content.decode()
    assert "goodwill 4" in second and "goodwill 5" not in second
    assert 'href="?before=' not in second
    assert f"<strong>{sum(range(10, 35)):,}</strong>" in first


def test_pts_5_points_expiring_soon_are_announced(_clock):
    member = make_member()
    with time_machine.travel(NOW - dt.timedelta(days=350), tick=False):
        points.adjust(member, 120, reason="old", key="old", actor=SYSTEM)
    points.adjust(member, 80, reason="new", key="new", actor=SYSTEM)
    page = _client(member, language="en").get("/loyalty/points/").content.decode()
    assert "120 points expire within 30 days." in page
    # Usable through the day a year after they became available (Asia/Shanghai).
    assert "2026-12-07" in page
    tier_page = _client(member, language="en").get("/loyalty/").content.decode()
    assert "120 points expire within 30 days." in tier_page


# --- rewards and redeeming -----------------------------------------------------------------


def test_pts_4_catalog_shows_rewards_with_tier_and_stock_limits():
    member = make_member()
    points.adjust(member, 1000, reason="welcome", key="w", actor=SYSTEM)
    _reward()
    _reward("gold-lounge", name="金卡休息室", name_en="Gold lounge", min_tier="gold")
    _reward("gone", name="售罄", name_en="Sold-out item", stock=0)
    _reward("withdrawn", name="下架", name_en="Withdrawn item", active=False)
    page = _client(member, language="en").get("/loyalty/rewards/").content.decode()
    assert "CNY 10 cinema coupon" in page
    assert 'action="/loyalty/rewards/cinema10/redeem/"' in page
    assert "For Gold members and above" in page
    assert 'action="/loyalty/rewards/gold-lounge/redeem/"' not in page
    assert "Sold out" in page
    assert "Withdrawn item" not in page


def test_pts_4_redeem_twice_with_one_form_redeems_once():
    member = make_member()
    points.adjust(member, 1000, reason="welcome", key="w", actor=SYSTEM)
    _reward()
    client = _client(member, language="en", csrf=True)
    page = client.get("/loyalty/rewards/").content.decode()
    data = {
        "token": _token(page, "cinema10"),
        "quantity": "2",
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
    }
    first = client.post("/loyalty/rewards/cinema10/redeem/", data)
    again = client.post("/loyalty/rewards/cinema10/redeem/", data)  # double click
    assert (first.status_code, first["Location"]) == (302, "/loyalty/coupons/")
    assert (again.status_code, again["Location"]) == (302, "/loyalty/coupons/")
    redemption = Redemption.objects.get()
    assert (redemption.quantity, redemption.points) == (2, 600)
    assert Coupon.objects.filter(member=member).count() == 2
    assert Account.objects.get(pk=member.pk).available == 400
    assert Entry.objects.filter(member=member, kind=Entry.Kind.REDEEM).count() == 1
    coupons_page = client.get("/loyalty/coupons/").content.decode()
    for coupon in Coupon.objects.all():
        assert coupon.code in coupons_page
    assert "Ready to use" in coupons_page
    assert "Redeemed 2 × CNY 10 cinema coupon for 600 points." in coupons_page
    # A new page view gives a new token: a second, deliberate redemption goes through.
    page = client.get("/loyalty/rewards/").content.decode()
    client.post(
        "/loyalty/rewards/cinema10/redeem/",
        {**data, "token": _token(page, "cinema10"), "quantity": "1"},
    )
    assert Redemption.objects.count() == 2
    assert Account.objects.get(pk=member.pk).available == 100
    assert verify_ledger().ok


@pytest.mark.django_db(transaction=True)
def test_pts_7_double_submit_in_parallel_redeems_once():
    """Two submissions of one form at the same moment (threads, both databases): exactly
    one redemption, points taken once."""
    from patron.members.tests.test_idempotency import _in_threads

    member = make_member()
    points.adjust(member, 1000, reason="welcome", key="w", actor=SYSTEM)
    _reward()
    client = _client(member, csrf=True)
    page = client.get("/loyalty/rewards/").content.decode()
    data = {
        "token": _token(page, "cinema10"),
        "quantity": "1",
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
    }
    cookies = client.cookies

    def submit(_index: int) -> int:
        racer = Client(enforce_csrf_checks=True)
        racer.cookies = cookies
        return racer.post("/loyalty/rewards/cinema10/redeem/", data).status_code

    assert _in_threads(2, submit) == [302, 302]
    assert Redemption.objects.count() == 1
    assert Account.objects.get(pk=member.pk).available == 700
    assert verify_ledger().ok


def test_pts_4_redeem_without_csrf_token_is_refused_and_changes_nothing():
    member = make_member()
    points.adjust(member, 1000, reason="welcome", key="w", actor=SYSTEM)
    _reward()
    client = _client(member, csrf=True)
    page = client.get("/loyalty/rewards/").content.decode()
    before = counts(Reward)
    response = client.post(
        "/loyalty/rewards/cinema10/redeem/", {"token": _token(page, "cinema10"), "quantity": "1"}
    )
    assert response.status_code == 403
    assert counts(Reward) == before


@pytest.mark.parametrize(
    ("setup", "quantity", "status", "message"),
    [
        ("poor", "1", 409, "Not enough points: 100 available, 300 needed."),
        ("rich", "0", 422, "Ensure this value is greater than or equal to 1."),
        ("rich", "1", 409, "This reward is out of stock."),
    ],
)
def test_pts_4_refused_redemption_shows_why_and_changes_nothing(setup, quantity, status, message):
    member = make_member()
    points.adjust(member, 100 if setup == "poor" else 1000, reason="r", key="r", actor=SYSTEM)
    _reward(stock=0 if "stock" in message else None)
    client = _client(member, language="en", csrf=True)
    page = client.get("/loyalty/rewards/").content.decode()
    token = re.search(r'name="token" value="([^"]+)"', page)
    before = counts(Reward)
    stock_before = list(Reward.objects.values_list("stock", flat=True))
    response = client.post(
        "/loyalty/rewards/cinema10/redeem/",
        {
            "token": token.group(1) if token else "t" * 24,
            "quantity": quantity,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == status
    assert f'<p class="errorlist" role="alert" id="error-cinema10">{message}</p>' in (
        response.content.decode()
    )
    assert counts(Reward) == before
    assert list(Reward.objects.values_list("stock", flat=True)) == stock_before


def test_pts_4_a_forged_token_cannot_touch_another_members_redemption():
    alice, bob = make_member(), make_member()
    for m in (alice, bob):
        points.adjust(m, 1000, reason="welcome", key=f"w{m.pk}", actor=SYSTEM)
    _reward()
    token = "shared-token-123456789"
    for m in (alice, bob):
        client = _client(m, csrf=True)
        client.post(
            "/loyalty/rewards/cinema10/redeem/",
            {"token": token, "quantity": "1", "csrfmiddlewaretoken": _csrf(client)},
        )
    assert sorted(Redemption.objects.values_list("member_id", flat=True)) == sorted(
        [alice.pk, bob.pk]
    )
    assert Account.objects.get(pk=alice.pk).available == 700
    assert Account.objects.get(pk=bob.pk).available == 700


# --- coupons -------------------------------------------------------------------------------


def test_ben_1_coupons_page_lists_usable_coupons_first(_clock):
    from patron.loyalty.services import coupons

    member = make_member()
    old = coupons.issue(
        member,
        source="compensation",
        value="5",
        min_spend="0",
        valid_days=3,
        key="comp-old",
        actor=SYSTEM,
    )
    _clock.shift(dt.timedelta(days=10))
    fresh = coupons.issue(
        member,
        source="compensation",
        value="20",
        min_spend="100",
        valid_days=30,
        key="comp-new",
        actor=SYSTEM,
    )
    page = _client(member, language="en").get("/loyalty/coupons/").content.decode()
    assert page.index(fresh.code) < page.index(old.code)
    assert "Expired" in page and "Ready to use" in page
    assert "orders of ¥100 or more" in page
