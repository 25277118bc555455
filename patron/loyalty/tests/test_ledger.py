"""The ledger primitives (PTS-3, PTS-5, PTS-7): lots, spending order, restore, debt."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction

from patron.core.audit import Actor
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit, InsufficientPoints
from patron.loyalty.models import Entry, Lot
from patron.loyalty.tests.helpers import NOW, make_member
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()


def _credit(member, points, key, **kw):
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        return ledger.credit(
            account,
            Credit(points=points, source="adjustment", key=key, **kw),
            rules=program.current(),
            actor=SYSTEM,
        )


def _spend(member, points, key):
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        return ledger.spend(account, points, key=key, actor=SYSTEM)


def test_pts5_lot_expires_at_end_of_local_day_one_year_later():
    member = make_member()
    with time_machine.travel(
        dt.datetime(2026, 3, 1, 23, 30, tzinfo=ledger.zoneinfo.ZoneInfo("Asia/Shanghai"))
    ):
        lot = _credit(member, 100, "c1")
    # 23:30 in Shanghai on 1 March: usable through 1 March 2027, gone from midnight.
    assert ledger.last_usable_day(lot.expires_at, program.current()) == dt.date(2027, 3, 1)
    assert lot.expires_at == dt.datetime(
        2027, 3, 2, tzinfo=ledger.zoneinfo.ZoneInfo("Asia/Shanghai")
    )


def test_pts7_spend_takes_nearest_expiry_first_and_restore_puts_back_exactly():
    member = make_member()
    with time_machine.travel(NOW - dt.timedelta(days=200)):
        old = _credit(member, 50, "old")
    with time_machine.travel(NOW):
        new = _credit(member, 100, "new")
        spent = _spend(member, 80, "spend-1")
        taken = {a.lot_id: a.points for a in spent.allocations.all()}
        assert taken == {old.pk: -50, new.pk: -30}
        with transaction.atomic():
            account = ledger.lock_account(member.pk)
            ledger.restore(account, spent, key="restore-1", actor=SYSTEM)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.remaining, new.remaining) == (50, 100)
    member.loyalty.refresh_from_db()
    assert member.loyalty.available == 150
    assert verify_ledger().ok


def test_pts7_overspend_is_refused_and_changes_nothing():
    member = make_member()
    _credit(member, 10, "c")
    before = Entry.objects.count()
    with pytest.raises(InsufficientPoints):
        _spend(member, 11, "too-much")
    assert Entry.objects.count() == before
    assert Lot.objects.get().remaining == 10


def test_pts3_clawback_of_spent_points_becomes_debt_repaid_by_next_credit():
    member = make_member()
    lot = _credit(member, 100, "earn")
    _spend(member, 70, "spend")
    with transaction.atomic():
        account = ledger.lock_account(member.pk)
        ledger.take_back(account, lot, 100, key="refund", actor=SYSTEM, reason="refund")
    account = member.loyalty
    account.refresh_from_db()
    assert (account.available, account.debt) == (0, 70)
    _credit(member, 50, "next")
    account.refresh_from_db()
    assert (account.available, account.debt) == (0, 20)
    _credit(member, 50, "after")
    account.refresh_from_db()
    assert (account.available, account.debt) == (30, 0)
    report = verify_ledger()
    assert report.ok, report.problems


def test_pts7_verify_finds_a_tampered_balance():
    member = make_member()
    _credit(member, 10, "c")
    member.loyalty.__class__.objects.filter(pk=member.pk).update(available=11)
    report = verify_ledger()
    assert not report.ok
    assert report.problems["account_vs_entries"] == [member.pk]
