"""PTS-8: the points liability report (``reports.points_liability`` and
``GET /reports/points-liability``), figures worked out by hand, today and for a past day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from patron.core.exceptions import ValidationFailed
from patron.loyalty import jobs, ledger, reports
from patron.loyalty import rules as program
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.tests.jobkit import SYSTEM, at_job_time, credit, local, order, spend
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/points-liability"


def _scenario():
    """A: 1,000 + 250 earned, 100 spent; B: 500 pending; C: 120 of debt; D: 300 expired."""
    a, b, c, d = (make_member() for _ in range(4))
    credit(a, 1000, "a1", when=local(2026, 3, 1, 10))  # usable through 1 March 2027
    credit(a, 250, "a2", when=local(2026, 4, 10, 10))  # through 10 April 2027
    spend(a, 100, "a-spend", when=local(2026, 6, 1))  # from the lot expiring first
    order(b, "b-order", when=local(2026, 11, 1), amount="500.00")  # pending until delivered
    lot = credit(c, 300, "c1", when=local(2026, 2, 1, 10))
    spend(c, 300, "c-spend", when=local(2026, 2, 2))
    with time_machine.travel(local(2026, 11, 1, 12), tick=False), transaction.atomic():
        account = ledger.lock_account(c.pk)
        ledger.take_back(account, lot, 120, key="c-claw", actor=SYSTEM, reason="order_refunded")
    credit(d, 300, "d1", when=local(2025, 10, 1, 10))  # usable through 1 October 2026
    with at_job_time(dt.date(2026, 10, 2)):
        jobs.expire_points(dt.date(2026, 10, 2))


def test_pts8_liability_today_by_hand():
    _scenario()
    with time_machine.travel(NOW, tick=False):
        report = reports.points_liability()
    assert report == {
        "as_of": dt.date(2026, 11, 22),
        "points_per_cny": 100,
        "currency": "CNY",
        "available": {"points": 1150, "value": Decimal("11.50")},
        "pending": {"points": 500, "value": Decimal("5.00")},
        "debt": {"points": 120, "value": Decimal("1.20")},
        "by_expiry_month": [
            {"month": "2027-03", "points": 900, "value": Decimal("9.00")},
            {"month": "2027-04", "points": 250, "value": Decimal("2.50")},
        ],
        "breakage": {"points": 300, "value": Decimal("3.00")},
    }
    assert verify_ledger().ok


def test_pts8_liability_for_past_days_from_the_ledger_history():
    _scenario()
    with time_machine.travel(NOW, tick=False):
        before_expiry = reports.points_liability(dt.date(2026, 9, 30))
        after_expiry = reports.points_liability(dt.date(2026, 10, 15))
    assert before_expiry["available"] == {"points": 1450, "value": Decimal("14.50")}
    assert before_expiry["pending"]["points"] == 0 and before_expiry["debt"]["points"] == 0
    assert before_expiry["by_expiry_month"] == [
        {"month": "2026-10", "points": 300, "value": Decimal("3.00")},
        {"month": "2027-03", "points": 900, "value": Decimal("9.00")},
        {"month": "2027-04", "points": 250, "value": Decimal("2.50")},
    ]
    assert before_expiry["breakage"]["points"] == 0
    assert after_expiry["available"]["points"] == 1150
    assert [m["month"] for m in after_expiry["by_expiry_month"]] == ["2027-03", "2027-04"]
    assert after_expiry["breakage"] == {"points": 300, "value": Decimal("3.00")}


def test_pts8_points_per_cny_comes_from_the_rules_and_rounds_half_up():
    rules = program.parse({**program.DEFAULT_RULES, "points_per_cny": 8})
    assert reports.value_of(1, rules) == Decimal("0.13")  # 0.125
    assert reports.value_of(0, rules) == Decimal("0.00")


def test_pts8_no_report_for_a_future_day():
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationFailed) as refused:
        reports.points_liability(dt.date(2026, 11, 23))
    assert refused.value.code == "as_of_in_future"


def test_pts8_empty_program():
    with time_machine.travel(NOW, tick=False):
        report = reports.points_liability()
    assert report["available"] == {"points": 0, "value": Decimal("0.00")}
    assert report["by_expiry_month"] == []


def test_pts8_api_points_liability(platform, api_key_factory):
    from tests.fixtures import PlatformClient

    _scenario()
    with time_machine.travel(NOW, tick=False):
        response = platform.get(URL)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["available"] == {"points": 1150, "value": "11.50"}
        assert body["by_expiry_month"][0] == {"month": "2027-03", "points": 900, "value": "9.00"}
        assert body["breakage"] == {"points": 300, "value": "3.00"}
        assert body["as_of"] == "2026-11-22"

        past = platform.get(URL, {"as_of": "2026-09-30"}).json()
        assert past["available"]["points"] == 1450

        future = platform.get(URL, {"as_of": "2026-11-23"})
        assert future.status_code == 422
        assert future.json()["code"] == "as_of_in_future"
        assert platform.get(URL, {"as_of": "yesterday"}).status_code == 422

        reader = PlatformClient(api_key_factory(["loyalty:read"]).secret)
        assert reader.get(URL).status_code == 403
        assert PlatformClient("ptn_wrong_key").get(URL).status_code == 401
