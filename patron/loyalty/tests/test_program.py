"""Program rule versions (TIER-1, TIER-2, TIER-5): publishing, refusals, and the console's
dry run ("if these rules applied today, N members would move up/down")."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from itertools import count

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patron.core.audit import Actor
from patron.core.exceptions import Conflict, ValidationFailed
from patron.core.models import AuditEvent
from patron.loyalty import rules as program
from patron.loyalty.models import Account, LoyaltyEvent, Order, ProgramVersion
from patron.loyalty.services import program as program_service
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db
STAFF = Actor("staff", "1")
_orders = count(1)


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _member(tier: str = "regular"):
    member = make_member()
    # The account may exist already (saving a member keeps its birthday index on it).
    Account.objects.update_or_create(
        member=member, defaults={"tier": tier, "tier_since": NOW - dt.timedelta(days=400)}
    )
    return member


def _order(member, amount, *, days_ago=10, status="delivered", refunded="0", category="ticket"):
    paid_at = NOW - dt.timedelta(days=days_ago)
    return Order.objects.create(
        order_id=f"prog-{next(_orders)}",
        member=member,
        amount=Decimal(amount),
        category=category,
        status=status,
        refunded_amount=Decimal(refunded),
        paid_at=paid_at,
        delivered_at=paid_at,
        tier_at_paid="regular",
    )


def _rules(**changes) -> dict:
    """The default document with the Silver tier's thresholds (and more) changed."""
    document = copy.deepcopy(program.DEFAULT_RULES)
    silver = changes.pop("silver", None)
    if silver is not None:
        document["tiers"][1]["any_of"] = silver
    document.update(changes)
    return document


def _state() -> dict:
    return {
        "versions": list(ProgramVersion.objects.values_list("version", "effective_at")),
        "audit": AuditEvent.objects.count(),
    }


# --- dry run ----------------------------------------------------------------------------


@pytest.fixture
def population():
    """Six members whose tiers the default rules and a stricter Silver judge differently."""
    m = {
        "a": _member(),  # 2,500 spend: Silver by default, not at Silver >= 3,000
        "b": _member("silver"),  # 2,500 spend: keeps Silver by default, loses it at 3,000
        "c": _member("gold"),  # 500 spend: falls to Regular either way
        "d": _member(),  # nothing
        "e": _member(),  # 5,000 spend 13 months ago: outside a 12-month window
        "f": _member(),  # 12 small orders: Silver on orders
    }
    _order(m["a"], "2500")
    _order(m["b"], "2000")
    _order(m["b"], "700", refunded="200")  # net 500
    _order(m["b"], "9000", status="cancelled")  # never counts
    _order(m["c"], "500")
    _order(m["e"], "5000", days_ago=395)
    for _ in range(12):
        _order(m["f"], "10")
    _order(m["f"], "10", refunded="10")  # fully refunded: not a qualifying order
    LoyaltyEvent.objects.create(
        member=m["d"], kind="activity", score=50, occurred_at=NOW - dt.timedelta(days=3), key="ev"
    )
    return m


def test_tier_2_dry_run_counts_moves_under_new_thresholds(population):
    result = program_service.dry_run(_rules(silver={"spend": "3000", "orders": 10}))
    assert (result["up"], result["down"], result["same"]) == (1, 2, 3)  # f up; b, c down
    assert result["by_tier"] == {
        "regular": {"from": 4, "to": 5},
        "silver": {"from": 1, "to": 1},
        "gold": {"from": 1, "to": 0},
        "diamond": {"from": 0, "to": 0},
    }
    # Under the rules in force, a and f would rise and c fall at an evaluation today anyway.
    assert result["baseline"] == {"up": 2, "down": 1, "same": 3}
    assert result["at"] == NOW


def test_tier_2_dry_run_of_the_rules_in_force_matches_the_baseline(population):
    result = program_service.dry_run(program.DEFAULT_RULES)
    assert (result["up"], result["down"], result["same"]) == (2, 1, 3)
    assert result["baseline"] == {"up": 2, "down": 1, "same": 3}
    assert result["by_tier"]["silver"] == {"from": 1, "to": 3}


def test_tier_2_dry_run_with_a_longer_window_counts_older_orders(population):
    result = program_service.dry_run(_rules(window_months=24))
    # e's 5,000 from 13 months ago now counts: Silver; a and f rise too, c falls.
    assert (result["up"], result["down"], result["same"]) == (3, 1, 2)
    assert result["by_tier"]["silver"] == {"from": 1, "to": 4}
    assert result["baseline"] == {"up": 2, "down": 1, "same": 3}


def test_tier_1_dry_run_when_a_tier_is_removed_counts_its_members_at_the_base(population):
    document = _rules()
    document["tiers"] = [t for t in document["tiers"] if t["code"] != "gold"]
    document["tiers"][2]["all_of"] = {"spend": "2000", "orders": 10, "loyalty": 10}
    result = program_service.dry_run(document)
    assert result["by_tier"]["gold"] == {"from": 1, "to": 0}
    assert result["by_tier"]["regular"] == {"from": 4, "to": 3}
    # c held a tier the new rules drop, which ranks as the base tier, where c stays: "same".
    assert (result["up"], result["down"], result["same"]) == (2, 0, 4)


def test_tier_2_dry_run_is_one_statement_whatever_the_population(population):
    for _ in range(5):
        _order(_member(), "3000")
    program.current()  # the rules in force, read (and cached) before measuring
    with CaptureQueriesContext(connection) as queries:
        result = program_service.dry_run(_rules(silver={"spend": "3000", "orders": 10}))
    assert len(queries) == 1
    assert result["up"] == 6


def test_tier_2_dry_run_of_bad_rules_is_refused_and_writes_nothing(population):
    before = _state()
    bad = _rules()
    bad["tiers"][1]["points_rate"] = "-1"
    with pytest.raises(ValidationFailed) as refused:
        program_service.dry_run(bad)
    assert refused.value.code == "invalid_rules"
    assert [e.field for e in refused.value.errors] == ["tiers[1].points_rate"]
    assert _state() == before


def test_tier_2_dry_run_without_accounts_is_all_zero():
    result = program_service.dry_run(program.DEFAULT_RULES)
    assert (result["up"], result["down"], result["same"]) == (0, 0, 0)
    assert all(v == {"from": 0, "to": 0} for v in result["by_tier"].values())


# --- publish ----------------------------------------------------------------------------


def test_tier_1_publish_creates_numbered_audited_versions_in_force_at_once():
    assert program.current().version == 0
    first = program_service.publish(
        _rules(silver={"spend": "3000", "orders": 10}), note="Silver from 3,000", actor=STAFF
    )
    assert (first.version, first.note, first.effective_at) == (1, "Silver from 3,000", NOW)
    # The complete document is stored, defaults filled in, as plain JSON.
    assert first.rules["tiers"][1]["any_of"] == {"spend": "3000", "orders": 10}
    assert first.rules["expiry_months"] == 12
    rules = program.current()  # no stale cache in this process
    assert rules.version == 1
    assert rules.tier("silver").any_of == {"spend": Decimal(3000), "orders": Decimal(10)}

    second = program_service.publish(_rules(expiry_months=18), note="Longer expiry", actor=STAFF)
    assert second.version == 2
    assert program.current().expiry_months == 18
    events = list(AuditEvent.objects.filter(action="loyalty.program_published").order_by("id"))
    assert [e.subject_id for e in events] == [str(first.pk), str(second.pk)]
    assert events[0].details["changed"] == ["tiers.silver"]
    assert events[1].details["changed"] == ["expiry_months", "tiers.silver"]
    assert (events[1].actor_type, events[1].actor_id) == ("staff", "1")
    assert verify_ledger().ok


def test_tier_1_publish_takes_form_decimals_as_strings():
    document = _rules()
    document["tiers"][2]["points_rate"] = Decimal("1.75")
    version = program_service.publish(document, note="Gold earns more", actor=STAFF)
    assert version.rules["tiers"][2]["points_rate"] == "1.75"
    assert program.current().tier("gold").points_rate == Decimal("1.75")


def test_tier_1_version_with_a_future_start_applies_from_then(_clock):
    later = NOW + dt.timedelta(days=10)
    program_service.publish(
        _rules(return_window_days=14), note="From next week", effective_at=later, actor=STAFF
    )
    assert program.current().version == 0
    _clock.move_to(later + dt.timedelta(seconds=1))
    program.forget()
    assert program.current().return_window_days == 14


@pytest.mark.parametrize(
    ("note", "code"),
    [("", "note_required"), ("   ", "note_required"), ("x" * 201, "note_too_long")],
)
def test_tier_1_publish_needs_a_note(note, code):
    before = _state()
    with pytest.raises(ValidationFailed) as refused:
        program_service.publish(_rules(), note=note, actor=STAFF)
    assert refused.value.code == code
    assert refused.value.errors[0].field == "note"
    assert _state() == before


def test_tier_1_publish_of_invalid_rules_names_every_bad_field():
    bad = _rules(expiry_months=0, time_zone="Mars/Olympus")
    bad["tiers"][0]["code"] = ""
    bad["tiers"][3]["discount_rate"] = "1.2"
    before = _state()
    with pytest.raises(ValidationFailed) as refused:
        program_service.publish(bad, note="broken", actor=STAFF)
    assert refused.value.code == "invalid_rules"
    assert {e.field for e in refused.value.errors} == {
        "tiers[0].code",
        "tiers[3].discount_rate",
        "expiry_months",
        "time_zone",
    }
    assert _state() == before


def test_tier_1_publish_in_the_past_or_before_a_scheduled_version_is_refused():
    with pytest.raises(ValidationFailed) as refused:
        program_service.publish(
            _rules(), note="back-dated", effective_at=NOW - dt.timedelta(hours=1), actor=STAFF
        )
    assert refused.value.code == "effective_in_past"
    program_service.publish(
        _rules(), note="scheduled", effective_at=NOW + dt.timedelta(days=5), actor=STAFF
    )
    before = _state()
    with pytest.raises(Conflict) as conflict:
        program_service.publish(_rules(), note="sooner", actor=STAFF)
    assert conflict.value.code == "effective_before_latest"
    assert conflict.value.errors[0].field == "effective_at"
    assert _state() == before


@pytest.mark.django_db(transaction=True)
def test_tier_1_concurrent_publishers_get_distinct_versions():
    """Threads on both databases: on PostgreSQL they queue on the publishers' advisory lock;
    every publish that succeeds gets its own number, with no gap and no duplicate."""
    from patron.members.tests.test_idempotency import _in_threads

    program_service.publish(_rules(), note="start", actor=STAFF)
    size = 4
    results = _in_threads(
        size,
        lambda i: program_service.publish(
            _rules(expiry_months=12 + i), note=f"racer {i}", actor=STAFF
        ),
    )
    published = [r for r in results if isinstance(r, ProgramVersion)]
    assert len(published) == size, results
    assert sorted(v.version for v in published) == [2, 3, 4, 5]
    assert list(ProgramVersion.objects.order_by("version").values_list("version", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert AuditEvent.objects.filter(action="loyalty.program_published").count() == 5
