"""Console loyalty pages (issue 3 "Portal and console"; TIER-1, TIER-2, PTS-4, PTS-5, PTS-7,
PTS-8): program rules with a dry run and publishing, the rewards catalog and stock, a
member's ledger with manual adjustments and expiry extensions, the liability report.

Every page checks its permission; every refused change leaves the database as it was.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.conf import settings

from patron.console.loyalty_forms import ProgramForm
from patron.console.loyalty_views import bar_chart
from patron.console.tests.helpers import csrf_post, make_staff, signed_in
from patron.core.audit import Actor
from patron.core.models import AuditEvent
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Entry, Lot, ProgramVersion, Reward
from patron.loyalty.services import points, redemptions, rewards
from patron.loyalty.services import program as program_service
from patron.loyalty.services.orders import apply_order
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.verify import verify_ledger
from patron.members.roles import ensure_roles

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()
RULES = ("loyalty.view_programversion", "loyalty.add_programversion")
CATALOG = ("loyalty.view_reward", "loyalty.change_reward")
LEDGER = ("loyalty.view_entry", "loyalty.add_entry")


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _order(member, order_id: str, amount: str, *, days_ago: int = 20):
    paid = NOW - dt.timedelta(days=days_ago)
    return apply_order(
        {
            "order_id": order_id,
            "member": member.number,
            "amount": amount,
            "currency": "CNY",
            "category": "ticket",
            "status": "delivered",
            "paid_at": paid.isoformat(),
            "delivered_at": (paid + dt.timedelta(hours=1)).isoformat(),
        },
        actor=SYSTEM,
    )


def _signed_in(staff):
    """A console client reading English (the console defaults to Chinese like the portal)."""
    client = signed_in(staff)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    return client


def _state(*extra) -> dict:
    return {**counts(ProgramVersion, Reward, AuditEvent, *extra)}


def _program_data(**changes) -> dict[str, str]:
    """What the program form posts when submitted unchanged, with ``changes`` applied."""
    based_on, base = program_service.latest_document()
    form = ProgramForm(base=base, based_on=based_on)
    data = {}
    for name in form.fields:
        value = form.initial.get(name)
        data[name] = "" if value is None else str(value)
    data.update({k: str(v) for k, v in changes.items()})
    return data


# --- access --------------------------------------------------------------------------------

PAGES = {
    "/console/loyalty/program/": RULES[:1],
    "/console/loyalty/rewards/": CATALOG[:1],
    "/console/loyalty/rewards/new/": CATALOG,
    "/console/loyalty/liability/": LEDGER[:1],
}


@pytest.mark.parametrize("path", [*PAGES, "/console/loyalty/"])
def test_auth_6_anonymous_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", [*PAGES, "/console/loyalty/", "/console/loyalty/program/1/"])
def test_auth_6_staff_without_the_permission_get_403(path):
    assert _signed_in(make_staff("members.view_member")).get(path).status_code == 403


def test_auth_6_catalog_viewers_cannot_open_the_new_reward_form():
    client = _signed_in(make_staff(CATALOG[0]))
    assert client.get("/console/loyalty/rewards/new/").status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_auth_6_staff_with_the_permission_see_the_page(path):
    assert _signed_in(make_staff(*PAGES[path])).get(path).status_code == 200


def test_auth_6_roles_grant_the_loyalty_permissions():
    groups = ensure_roles()
    manager = set(groups["program manager"].permissions.values_list("codename", flat=True))
    assert {"add_programversion", "change_reward", "add_entry", "view_entry"} <= manager
    auditor = set(groups["auditor"].permissions.values_list("codename", flat=True))
    assert {"view_programversion", "view_reward", "view_entry"} <= auditor
    assert not {"add_programversion", "change_reward", "add_entry"} & auditor


def test_console_nav_links_to_loyalty_only_with_a_loyalty_permission():
    assert (
        "/console/loyalty/" in _signed_in(make_staff(*RULES[:1])).get("/console/").content.decode()
    )
    assert "/console/loyalty/" not in _signed_in(make_staff()).get("/console/").content.decode()


# --- program rules --------------------------------------------------------------------------


@pytest.fixture
def population():
    """Members whose tiers a Silver threshold of 3,000 judges differently."""
    a, b, c = make_member(), make_member(), make_member()
    _order(a, "a-1", "2500.00")  # Silver now (>= 2,000), Regular at 3,000
    _order(b, "b-1", "2800.00")  # likewise
    _order(c, "c-1", "3500.00")  # Silver either way
    assert list(Account.objects.order_by("pk").values_list("tier", flat=True)) == ["silver"] * 3
    return a, b, c


def test_tier_1_program_page_shows_the_rules_and_a_form_per_tier():
    page = _signed_in(make_staff(*RULES)).get("/console/loyalty/program/").content.decode()
    assert "The default rules (no version published yet)." in page
    for code in ("regular", "silver", "gold", "diamond"):
        assert f"<code>{code}</code>" in page
    assert 'name="tier1_any_spend" value="2000"' in page
    assert 'name="tier3_rebate_rate" value="0.02"' in page
    assert 'name="categories"' in page and "ticket = 1" in page
    assert 'value="dry_run"' in page and 'value="publish"' in page


def test_tier_1_viewers_see_the_rules_but_no_form_and_cannot_post():
    client = _signed_in(make_staff(RULES[0]))
    page = client.get("/console/loyalty/program/").content.decode()
    assert "tier1_any_spend" not in page
    before = _state()
    response = csrf_post(client, "/console/loyalty/program/", _program_data(action="publish"))
    assert response.status_code == 403
    assert _state() == before


def test_tier_2_dry_run_shows_how_many_would_move_and_saves_nothing(population):
    client = _signed_in(make_staff(*RULES))
    before = _state()
    response = csrf_post(
        client, "/console/loyalty/program/", _program_data(tier1_any_spend="3000", action="dry_run")
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert (
        "If these rules applied today, <strong>0</strong> members would move up and "
        "<strong>2</strong> would move down; 1 would keep their tier." in page
    )
    result = response.context["dry_run"]
    assert (result["up"], result["down"], result["same"]) == (0, 2, 1)
    assert result["by_tier"]["silver"] == {"from": 3, "to": 1}
    # The form keeps the edit, ready to publish.
    assert 'name="tier1_any_spend" value="3000"' in page
    assert _state() == before


def test_tier_1_publish_creates_an_audited_version():
    staff = make_staff(*RULES)
    client = _signed_in(staff)
    response = csrf_post(
        client,
        "/console/loyalty/program/",
        _program_data(
            tier1_any_spend="3000",
            tier2_points_rate="1.6",
            categories="ticket = 1\nconcession = 1\nmerchandise = 1.5",
            note="Silver from 3,000; merchandise earns more",
            action="publish",
        ),
    )
    assert (response.status_code, response["Location"]) == (302, "/console/loyalty/program/")
    version = ProgramVersion.objects.get()
    assert (version.version, version.created_by_id) == (1, staff.pk)
    assert version.rules["tiers"][1]["any_of"] == {"spend": "3000", "orders": 10}
    assert version.rules["tiers"][2]["points_rate"] == "1.6"
    assert version.rules["categories"] == {"ticket": "1", "concession": "1", "merchandise": "1.5"}
    assert version.rules["tiers"][3] == program.DEFAULT_RULES["tiers"][3]  # untouched
    event = AuditEvent.objects.get(action="loyalty.program_published")
    assert (event.actor_type, event.actor_id) == ("staff", str(staff.pk))
    assert event.details["changed"] == ["categories", "tiers.gold", "tiers.silver"]
    assert program.current().tier("silver").any_of["spend"] == 3000
    page = client.get("/console/loyalty/program/").content.decode()
    assert "Silver from 3,000; merchandise earns more" in page
    assert _signed_in(staff).get("/console/loyalty/program/1/").status_code == 200


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"note": ""}, "note", "Say what changed and why."),
        ({"tier3_discount_rate": "1.5"}, "tier3_discount_rate", "A discount is below 1."),
        ({"tier1_points_rate": "abc"}, "tier1_points_rate", "Enter a number."),
        ({"categories": "ticket 1.5"}, "categories", "Write each line as"),
        ({"reminder_days": "30, 400"}, "reminder_days", "Enter numbers from 1 to 365"),
        ({"effective_at": "2020-01-01 00:00"}, "effective_at", "never in the past"),
    ],
)
def test_tier_1_refused_publish_shows_the_error_and_changes_nothing(changes, field, message):
    client = _signed_in(make_staff(*RULES))
    before = _state()
    data = _program_data(note="an edit", action="publish")
    data.update(changes)
    response = csrf_post(client, "/console/loyalty/program/", data)
    assert response.status_code in (409, 422)
    assert any(message in str(e) for e in response.context["form"].errors[field])
    assert _state() == before


def test_tier_1_publish_over_a_version_published_meanwhile_is_refused():
    client = _signed_in(make_staff(*RULES))
    data = _program_data(note="mine", action="publish")  # based on the defaults (0)
    program_service.publish(program.DEFAULT_RULES, note="theirs", actor=SYSTEM)
    before = _state()
    response = csrf_post(client, "/console/loyalty/program/", data)
    assert response.status_code == 409
    assert "Version 1 was published while you were editing." in response.content.decode()
    assert _state() == before


# --- rewards catalog ---------------------------------------------------------------------


def test_pts_4_create_edit_and_restock_a_reward():
    staff = make_staff(*CATALOG)
    client = _signed_in(staff)
    response = csrf_post(
        client,
        "/console/loyalty/rewards/new/",
        {
            "code": "cinema10",
            "name": "十元观影券",
            "name_en": "CNY 10 cinema coupon",
            "kind": "coupon",
            "cost_points": "300",
            "stock": "5",
            "per_member_limit": "2",
            "limit_period": "month",
            "min_tier": "silver",
            "value": "10",
            "min_spend": "50",
            "valid_days": "30",
            "active": "on",
        },
    )
    assert (response.status_code, response["Location"]) == (
        302,
        "/console/loyalty/rewards/cinema10/edit/",
    )
    reward = Reward.objects.get()
    assert (reward.stock, reward.min_tier, reward.per_member_limit) == (5, "silver", 2)
    page = client.get("/console/loyalty/rewards/").content.decode()
    assert "十元观影券" in page and ">5<" in page

    edit = client.get("/console/loyalty/rewards/cinema10/edit/")
    data = {k: v for k, v in edit.context["form"].initial.items() if v is not None}
    data.update(cost_points="250", active="")
    response = csrf_post(client, "/console/loyalty/rewards/cinema10/edit/", data)
    assert response.status_code == 302
    reward.refresh_from_db()
    assert (reward.cost_points, reward.active, reward.stock) == (250, False, 5)

    response = csrf_post(client, "/console/loyalty/rewards/cinema10/stock/", {"quantity": "-2"})
    assert response.status_code == 302
    reward.refresh_from_db()
    assert reward.stock == 3
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor_id"))
    assert actions == [
        ("reward.created", str(staff.pk)),
        ("reward.updated", str(staff.pk)),
        ("reward.stock_added", str(staff.pk)),
    ]


def test_pts_4_refused_catalog_changes_change_nothing():
    client = _signed_in(make_staff(*CATALOG))
    rewards.create_reward(
        {"code": "c10", "name": "券", "cost_points": 100, "stock": 1}, actor=SYSTEM
    )
    before = _state()
    taken = csrf_post(
        client,
        "/console/loyalty/rewards/new/",
        {
            "code": "c10",
            "name": "again",
            "kind": "coupon",
            "cost_points": "1",
            "limit_period": "month",
            "value": "0",
            "min_spend": "0",
            "valid_days": "3",
        },
    )
    assert taken.status_code == 409
    assert "A reward with this code exists." in taken.content.decode()
    too_many = csrf_post(client, "/console/loyalty/rewards/c10/stock/", {"quantity": "-5"})
    assert too_many.status_code == 409
    assert "Not that much stock is left." in too_many.content.decode()
    assert _state() == before
    assert Reward.objects.get().stock == 1


def test_pts_4_viewers_cannot_change_the_catalog():
    rewards.create_reward(
        {"code": "c10", "name": "券", "cost_points": 100, "stock": 1}, actor=SYSTEM
    )
    client = _signed_in(make_staff(CATALOG[0]))
    page = client.get("/console/loyalty/rewards/").content.decode()
    assert "c10" in page and "/console/loyalty/rewards/new/" not in page
    before = _state()
    assert (
        csrf_post(client, "/console/loyalty/rewards/c10/stock/", {"quantity": "5"}).status_code
        == 403
    )
    assert _state() == before


# --- a member's ledger, adjustments, extensions ----------------------------------------------


@pytest.fixture
def member_with_history():
    member = make_member()
    _order(member, "ord-1", "2500.00")  # Silver; 2,500 points released
    rewards.create_reward({"code": "c10", "name": "券", "cost_points": 300}, actor=SYSTEM)
    redemptions.redeem(member, "c10", 1, key="r1", actor=SYSTEM)
    return member


def test_pts_7_member_ledger_shows_balances_lots_allocations_and_tier_history(
    member_with_history,
):
    member = member_with_history
    client = _signed_in(make_staff("loyalty.view_entry"))
    response = client.get(f"/console/loyalty/members/{member.number}/")
    assert response.status_code == 200
    page = response.content.decode()
    lot = Lot.objects.get(member=member)
    redeem = Entry.objects.get(member=member, kind=Entry.Kind.REDEEM)
    assert "<strong>2200</strong>" in page
    assert f"lot {lot.pk}: -300" in page
    assert "<code>ord-1</code>" in page
    assert "regular → silver" in page
    assert f"<td>{redeem.pk}</td>" in page
    assert "Manual adjustment" not in page  # view only
    assert response["Cache-Control"] == "no-store"


def test_pts_7_adjustment_needs_a_reason_and_changes_nothing_without_one(member_with_history):
    member = member_with_history
    client = _signed_in(make_staff(*LEDGER))
    page = client.get(f"/console/loyalty/members/{member.number}/").content.decode()
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    before = _state(Entry)
    response = csrf_post(
        client,
        f"/console/loyalty/members/{member.number}/adjust/",
        {"points": "500", "reason": "", "token": token},
    )
    assert response.status_code == 422
    assert "Give a reason." in response.content.decode()
    assert _state(Entry) == before
    assert Account.objects.get(pk=member.pk).available == 2200


def test_pts_7_adjustment_is_audited_and_a_double_submit_counts_once(member_with_history):
    member = member_with_history
    staff = make_staff(*LEDGER)
    client = _signed_in(staff)
    page = client.get(f"/console/loyalty/members/{member.number}/").content.decode()
    data = {
        "points": "-200",
        "reason": "duplicate order compensation reversed",
        "token": re.search(r'name="token" value="([^"]+)"', page).group(1),
    }
    url = f"/console/loyalty/members/{member.number}/adjust/"
    first = csrf_post(client, url, data)
    again = csrf_post(client, url, data)
    assert first.status_code == again.status_code == 302
    entry = Entry.objects.get(member=member, kind=Entry.Kind.ADJUST)
    assert (entry.points, entry.reason, entry.actor_id) == (
        -200,
        "duplicate order compensation reversed",
        str(staff.pk),
    )
    assert Account.objects.get(pk=member.pk).available == 2000
    event = AuditEvent.objects.get(action="points.adjusted")
    assert (event.actor_type, event.actor_id, event.details["points"]) == (
        "staff",
        str(staff.pk),
        -200,
    )
    assert "duplicate" not in str(event.details)  # the reason stays on the entry
    assert verify_ledger().ok


def test_pts_7_staff_without_add_entry_cannot_adjust(member_with_history):
    member = member_with_history
    client = _signed_in(make_staff("loyalty.view_entry"))
    before = _state(Entry)
    response = csrf_post(
        client,
        f"/console/loyalty/members/{member.number}/adjust/",
        {"points": "500", "reason": "why not", "token": "t" * 24},
    )
    assert response.status_code == 403
    assert _state(Entry) == before


def test_pts_5_staff_extend_expiry_with_a_reason(member_with_history):
    member = member_with_history
    lot = Lot.objects.get(member=member)
    expires = lot.expires_at
    client = _signed_in(make_staff(*LEDGER))
    url = f"/console/loyalty/members/{member.number}/extend/"
    before = _state()
    refused = csrf_post(client, url, {"months": "3", "reason": ""})
    assert refused.status_code == 422
    assert _state() == before
    response = csrf_post(
        client, url, {"months": "3", "reason": "system outage", "lots": str(lot.pk)}
    )
    assert response.status_code == 302
    lot.refresh_from_db()
    assert lot.extended_months == 3 and lot.expires_at > expires + dt.timedelta(days=85)
    assert AuditEvent.objects.filter(action="points.expiry_extended").count() == 1
    assert verify_ledger().ok


def test_member_lookup_opens_the_ledger_or_says_no_such_member(member_with_history):
    client = _signed_in(make_staff("loyalty.view_entry"))
    found = client.get(f"/console/loyalty/members/?number={member_with_history.number}")
    assert found["Location"] == f"/console/loyalty/members/{member_with_history.number}/"
    assert client.get("/console/loyalty/members/?number=000000000000")["Location"] == (
        "/console/loyalty/"
    )
    assert client.get("/console/loyalty/members/000000000000/").status_code == 404


# --- liability report ------------------------------------------------------------------------


def test_pts_8_liability_report_with_a_bar_per_expiry_month(_clock):
    member = make_member()
    with time_machine.travel(NOW - dt.timedelta(days=60), tick=False):
        points.adjust(member, 400, reason="older", key="l1", actor=SYSTEM)
    points.adjust(member, 1000, reason="newer", key="l2", actor=SYSTEM)
    client = _signed_in(make_staff("loyalty.view_entry"))
    response = client.get("/console/loyalty/liability/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<rect class="bar"') == 2
    assert "<title>2027-09: 400</title>" in page
    assert "<title>2027-11: 1000</title>" in page
    assert "available points · ¥14.00" in page
    assert "<strong>1400</strong>" in page
    future = client.get("/console/loyalty/liability/?as_of=2030-01-01")
    assert future.status_code == 422
    assert "The report cannot be for a day after today." in future.content.decode()


def test_pts_8_bar_chart_scales_to_a_round_top():
    chart = bar_chart([("2027-01", 1234), ("2027-02", 5)])
    assert [t["value"] for t in chart["ticks"]] == [0, 500, 1000, 1500, 2000]
    tallest = max(chart["bars"], key=lambda b: b["h"])
    assert tallest["label"] == "2027-01"
    assert tallest["y"] + tallest["h"] == chart["base"]
    assert bar_chart([])["bars"] == []


def test_member_record_links_to_the_points_ledger_for_ledger_viewers(member_with_history):
    number = member_with_history.number
    with_ledger = _signed_in(make_staff("members.view_member", "loyalty.view_entry"))
    without = _signed_in(make_staff("members.view_member"))
    link = f'href="/console/loyalty/members/{number}/"'
    assert link in with_ledger.get(f"/console/members/{number}/").content.decode()
    assert link not in without.get(f"/console/members/{number}/").content.decode()
