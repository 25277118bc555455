"""TIER-3 / TIER-4 / OPS-2: the periodic evaluation (``evaluate-tiers``) moves every member to
the highest tier the window qualifies for, records the figures, and ``notify_tier_changes``
tells members and platforms once."""

from __future__ import annotations

import copy
import datetime as dt
import io
import threading
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connections

from patron.loyalty import jobs
from patron.loyalty import rules as program
from patron.loyalty.models import JobRun, LoyaltyEvent, Order, ProgramVersion, TierChange
from patron.loyalty.tests.helpers import counts, make_member
from patron.loyalty.tests.jobkit import account, at_job_time, local, order, set_tier
from patron.loyalty.verify import verify_ledger
from patron.notify import webhooks
from patron.notify.models import OutboxMessage

EVALUATION = dt.date(2027, 1, 1)
MIDNIGHT = local(2027, 1, 1)


def _simple_rules():
    """One metric per tier: Silver 2,000, Gold 10,000, Diamond 30,000 CNY of spend."""
    data = copy.deepcopy(program.DEFAULT_RULES)
    for tier, spend in zip(data["tiers"][1:], ("2000", "10000", "30000"), strict=True):
        tier["any_of"], tier["all_of"] = {"spend": spend}, {}
    ProgramVersion.objects.create(version=7, rules=data, effective_at=local(2020, 1, 1))
    program.forget()


_seq = iter(range(1, 10**6))


def _spent(member, amount: str, *, paid_at: dt.datetime, **fields) -> Order:
    """A delivered order in the window (test data: the order service is tested elsewhere)."""
    return Order.objects.create(
        order_id=f"eval-{next(_seq)}",
        member=member,
        amount=Decimal(amount),
        category="ticket",
        status=fields.pop("status", "delivered"),
        paid_at=paid_at,
        delivered_at=paid_at,
        final_at=paid_at + dt.timedelta(days=7),
        tier_at_paid="regular",
        **fields,
    )


@pytest.mark.django_db
def test_tier3_quarterly_evaluation_moves_to_the_highest_tier_still_qualified():
    _simple_rules()
    falls = make_member()  # Diamond, 3,500 in the window: Silver
    set_tier(falls, "diamond")
    _spent(falls, "3000.00", paid_at=local(2026, 6, 1))
    _spent(falls, "500.00", paid_at=local(2026, 1, 1, 0, 0, 1))  # just inside the window
    _spent(falls, "40000.00", paid_at=local(2025, 12, 31, 23, 0))  # before the window
    _spent(falls, "9000.00", paid_at=local(2027, 1, 1, 0, 0, 1))  # after the evaluation moment
    rises = make_member()  # Regular with 12,000: Gold (an evaluation moves both ways)
    _spent(rises, "12000.00", paid_at=local(2026, 12, 31, 23, 59))
    stays = make_member()
    set_tier(stays, "silver")
    _spent(stays, "2500.00", paid_at=local(2026, 3, 1))
    refunded = make_member()  # Gold whose 11,000 were refunded down to 1,000: Regular
    set_tier(refunded, "gold")
    _spent(refunded, "11000.00", paid_at=local(2026, 5, 1), refunded_amount=Decimal("10000"))

    with at_job_time(EVALUATION):
        result = jobs.evaluate_tiers(EVALUATION)
    assert result == {"changed": 3, "up": 1, "down": 2}
    assert [account(m).tier for m in (falls, rises, stays, refunded)] == [
        "silver",
        "gold",
        "silver",
        "regular",
    ]
    change = TierChange.objects.get(member=falls)
    assert (change.from_tier, change.to_tier, change.kind, change.reason) == (
        "diamond",
        "silver",
        "evaluation",
        "quarterly_evaluation",
    )
    assert (change.spend, change.orders, change.loyalty) == (Decimal("3500.00"), 2, 0)
    assert change.key == f"eval:2027-01-01:{falls.pk}"
    assert change.program_version == 7
    assert change.notified_at is None
    assert not TierChange.objects.filter(member=stays).exists()
    assert account(falls).tier_since == local(2027, 1, 1, 2)
    assert verify_ledger().ok


@pytest.mark.django_db
def test_tier2_loyalty_events_count_in_the_evaluation():
    data = copy.deepcopy(program.DEFAULT_RULES)
    data["tiers"][1]["any_of"] = {"loyalty": 3}
    ProgramVersion.objects.create(version=2, rules=data, effective_at=local(2020, 1, 1))
    program.forget()
    member = make_member()
    LoyaltyEvent.objects.create(
        member=member, kind="referral", score=3, occurred_at=local(2026, 10, 1), key="ref:x"
    )
    with at_job_time(EVALUATION):
        assert jobs.evaluate_tiers(EVALUATION) == {"changed": 1, "up": 1}
    assert account(member).tier == "silver"


@pytest.mark.django_db
def test_ops2_evaluation_twice_writes_nothing_and_resumes_after_a_stop():
    _simple_rules()
    members = [make_member() for _ in range(3)]
    for member in members:
        set_tier(member, "gold")
        _spent(member, "2500.00", paid_at=local(2026, 9, 1))
    with at_job_time(EVALUATION):
        assert jobs.evaluate_tiers(EVALUATION, chunk=1, max_chunks=2) == {
            "changed": 2,
            "down": 2,
        }
        assert [account(m).tier for m in members] == ["silver", "silver", "gold"]
        assert jobs.evaluate_tiers(EVALUATION, chunk=1) == {"changed": 3, "down": 3}
        before = counts()
        assert jobs.evaluate_tiers(EVALUATION) == {"already_done": 1}
        JobRun.objects.all().delete()
        assert jobs.evaluate_tiers(EVALUATION) == {}
        assert counts() == before
    assert TierChange.objects.count() == 3


@pytest.mark.django_db
def test_tier4_every_change_is_told_once_by_notice_and_webhook(django_capture_on_commit_callbacks):
    _simple_rules()
    webhooks.create_endpoint(
        name="platform",
        url="https://platform.example.com/h",
        events=["tier.changed"],
        actor=jobs.SYSTEM,
    )
    webhooks.forget()
    member = make_member(language="en")
    set_tier(member, "gold")
    _spent(member, "2500.00", paid_at=local(2026, 9, 1))
    with at_job_time(EVALUATION), django_capture_on_commit_callbacks(execute=True):
        jobs.evaluate_tiers(EVALUATION)  # enqueues the notice task (run at once in tests)
    change = TierChange.objects.get()
    assert change.notified_at is not None
    notices = OutboxMessage.objects.filter(template="loyalty_tier_changed")
    assert sorted(notices.values_list("channel", flat=True)) == ["inapp", "sms"]
    sms = notices.get(channel="sms").body
    assert "from Gold to Silver" in sms and "periodic tier evaluation" in sms
    hook = OutboxMessage.objects.get(channel="webhook", template="tier.changed")
    assert hook.dedupe_key.endswith(f"tier:{change.pk}")
    assert jobs.notify_tier_changes() == 0
    assert OutboxMessage.objects.count() == 3
    webhooks.forget()


@pytest.mark.django_db
def test_tier4_chinese_notice_names_the_tiers_and_figures():
    _simple_rules()
    member = make_member()
    _spent(member, "12000.00", paid_at=local(2026, 9, 1))
    with at_job_time(EVALUATION):
        jobs.evaluate_tiers(EVALUATION)
        assert jobs.notify_tier_changes() == 1
    body = OutboxMessage.objects.get(template="loyalty_tier_changed", channel="inapp").body
    assert "由普通会员升级为金卡会员" in body and "消费 12000.00 元" in body


@pytest.mark.django_db
def test_ops2_evaluate_tiers_command_output():
    _simple_rules()
    member = make_member()
    set_tier(member, "silver")
    out = io.StringIO()
    with at_job_time(EVALUATION):
        call_command("evaluate_tiers", "--as-of", "2027-01-01", stdout=out)
    assert out.getvalue().strip() == "evaluate-tiers 2027-01-01: done: changed=1, down=1"


@pytest.mark.django_db(transaction=True)
def test_ops2_two_evaluations_at_once_change_each_member_once():
    """Two workers running the same evaluation: each chunk is done by exactly one of them
    (SQLite serialises them; on PostgreSQL they race on the run's row lock)."""
    _simple_rules()
    members = [make_member() for _ in range(6)]
    for member in members:
        set_tier(member, "diamond")
        _spent(member, "2500.00", paid_at=local(2026, 9, 1))
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def run(index: int) -> None:
        try:
            barrier.wait()
            with at_job_time(EVALUATION):
                results[index] = jobs.evaluate_tiers(EVALUATION, chunk=1)
        except Exception as exc:  # the test looks at what each thread ended with
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(r, dict) for r in results), results
    assert TierChange.objects.count() == 6
    assert {account(m).tier for m in members} == {"silver"}
    assert JobRun.objects.get(job="evaluate_tiers").counts == {"changed": 6, "down": 6}
    assert verify_ledger().ok


@pytest.mark.django_db
def test_tier3_an_orders_upgrade_after_the_aggregate_wins(monkeypatch):
    """The aggregate (taken first) finds a Gold member qualifies only for Silver; before
    the member's chunk runs, a paid order upgrades them to Diamond. The evaluation leaves
    Diamond alone, records no change for them, and counts only the others."""
    _simple_rules()
    upgraded, falls = make_member(), make_member()
    for member in (upgraded, falls):
        set_tier(member, "gold")
        _spent(member, "2500.00", paid_at=local(2026, 9, 1))
    real_run_chunks = jobs.runner.run_chunks

    def order_between(progress, ids, work, **kwargs):
        assert sorted(ids) == sorted([upgraded.pk, falls.pk])  # both in the aggregate's list
        order(upgraded, "eval-upgrade", when=local(2027, 1, 1, 2), amount="40000.00")
        assert account(upgraded).tier == "diamond"
        return real_run_chunks(progress, ids, work, **kwargs)

    monkeypatch.setattr(jobs.runner, "run_chunks", order_between)
    with at_job_time(EVALUATION):
        assert jobs.evaluate_tiers(EVALUATION) == {"changed": 1, "down": 1}
    assert (account(upgraded).tier, account(falls).tier) == ("diamond", "silver")
    assert not TierChange.objects.filter(member=upgraded, kind="evaluation").exists()
    assert TierChange.objects.get(member=falls).key == f"eval:2027-01-01:{falls.pk}"
    assert verify_ledger().ok
