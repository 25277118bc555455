"""The member's loyalty pages in a real browser (issue 3 "Portal and console"): the tier page
with its progress bars (desktop and phone widths), redeeming a reward by clicking, and the
coupon it issued. Screenshots go to var/e2e/loyalty-*.png.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.test import Client

from patron.core.audit import Actor
from patron.loyalty.models import Coupon, Redemption
from patron.loyalty.services import rewards
from patron.loyalty.services.orders import apply_order
from patron.loyalty.tests.helpers import make_member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_tier_page_and_redeeming_in_the_browser(live_server, browser, screenshot_dir):
    member = make_member()
    paid = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    apply_order(
        {
            "order_id": "e2e-1",
            "member": member.number,
            "amount": "2600.00",
            "currency": "CNY",
            "category": "ticket",
            "status": "delivered",
            "paid_at": paid.isoformat(),
            "delivered_at": (paid + dt.timedelta(hours=2)).isoformat(),
        },
        actor=Actor.system(),
    )
    rewards.create_reward(
        {"code": "cinema10", "name": "十元观影券", "cost_points": 500, "value": "10"},
        actor=Actor.system(),
    )
    # Signed in by session cookie: signing in itself is the signup flow's test.
    client = Client()
    client.force_login(member.user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    for name, viewport in (("desktop", (1024, 900)), ("phone", (390, 844))):
        context = browser.new_context(
            locale="zh-CN", viewport={"width": viewport[0], "height": viewport[1]}
        )
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
        )
        page = context.new_page()
        page.goto(f"{live_server.url}/loyalty/")
        assert page.locator("p.tier-name").inner_text() == "银卡会员"
        assert page.locator("progress.bar").count() >= 3
        page.screenshot(path=str(screenshot_dir / f"loyalty-tier-{name}.png"), full_page=True)
        if name == "desktop":
            page.goto(f"{live_server.url}/loyalty/rewards/")
            with page.expect_navigation():
                page.locator("form[action$='/cinema10/redeem/'] button[type=submit]").click()
            assert page.url.endswith("/loyalty/coupons/")
            coupon = Coupon.objects.get(member=member)
            assert page.locator(".coupon-code").first.inner_text() == coupon.code
            page.screenshot(path=str(screenshot_dir / "loyalty-coupons.png"), full_page=True)
        context.close()
    assert Redemption.objects.count() == 1
