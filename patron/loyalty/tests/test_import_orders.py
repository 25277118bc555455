"""``patron import-orders`` (OPS-3 with PTS-1, PTS-3) and ``patron ledger verify`` (PTS-7)."""

from __future__ import annotations

import csv
import datetime as dt
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command

from patron.loyalty.management.commands.import_orders import ORDER_COLUMNS
from patron.loyalty.models import Account, Lot, Order
from patron.loyalty.tests.helpers import NOW, counts, make_member
from patron.loyalty.verify import verify_ledger

pytestmark = pytest.mark.django_db
PAID = (NOW - dt.timedelta(days=40)).isoformat()
DELIVERED = (NOW - dt.timedelta(days=38)).isoformat()


@pytest.fixture(autouse=True)
def _at_now():
    with time_machine.travel(NOW, tick=False):
        yield


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ORDER_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def order(member, order_id: str, **fields) -> dict:
    return {
        "order_id": order_id,
        "member": member.number,
        "amount": "100.00",
        "currency": "CNY",
        "category": "ticket",
        "status": "paid",
        "paid_at": PAID,
        **fields,
    }


def history(member) -> list[dict]:
    """Three orders: one delivered long ago, one paid, one delivered then half refunded."""
    return [
        order(member, "A-1", status="delivered", delivered_at=DELIVERED),
        order(member, "A-2", paid_at=NOW.isoformat()),
        order(member, "A-3"),
        order(member, "A-3", status="delivered", delivered_at=DELIVERED),
        order(
            member,
            "A-3",
            status="refunded",
            delivered_at=DELIVERED,
            refunded_amount="50.00",
        ),
    ]


@pytest.mark.parametrize("batch_size", ["1000", "2"])
def test_ops3_import_orders_earns_releases_and_refunds_like_live_orders(tmp_path, batch_size):
    member = make_member()
    source = write_csv(tmp_path / "orders.csv", history(member))
    out = run("import_orders", str(source), "--batch-size", batch_size)
    assert "5 rows: 5 applied, 0 unchanged (already recorded), 0 refused" in out
    assert read_csv(tmp_path / "orders.report.csv") == []
    states = dict(Order.objects.values_list("order_id", "status"))
    assert states == {"A-1": "delivered", "A-2": "paid", "A-3": "refunded"}
    account = Account.objects.get(pk=member.pk)
    # window closed long ago -> 100 available; A-2: 100 pending; A-3: 100 earned,
    # released, 50 clawed back by the half refund.
    assert (account.available, account.pending, account.debt) == (150, 100, 0)
    a3 = Lot.objects.get(order__order_id="A-3")
    assert (a3.amount, a3.clawed, a3.remaining) == (100, 50, 50)
    assert verify_ledger().ok


def test_ops3_import_orders_rerun_changes_nothing(tmp_path):
    member = make_member()
    source = write_csv(tmp_path / "orders.csv", history(member))
    run("import_orders", str(source))
    before = counts()
    out = run("import_orders", str(source))
    # The rows before an order's last state are older than what is recorded now: refused
    # as stale, with nothing written; the last states are unchanged.
    assert "5 rows: 0 applied, 3 unchanged (already recorded), 2 refused" in out
    assert {r["code"] for r in read_csv(tmp_path / "orders.report.csv")} == {"stale_order_state"}
    assert counts() == before
    assert verify_ledger().ok


def test_ops3_import_orders_refused_rows_are_reported_and_write_nothing(tmp_path):
    member = make_member()
    rows = [
        order(member, "B-1", amount="-5"),
        {**order(member, "B-2"), "member": "100000000008"},  # nobody has this number
        order(member, "B-3", category="cars"),
        order(member, "B-4", status="shipped"),
        order(member, "B-5", paid_at="yesterday"),
    ]
    source = write_csv(tmp_path / "bad.csv", rows)
    before = counts()
    out = run("import_orders", str(source))
    assert "5 rows: 0 applied, 0 unchanged (already recorded), 5 refused" in out
    assert counts() == before
    report = {
        (r["row"], r["field"], r["code"], r["id"]) for r in read_csv(tmp_path / "bad.report.csv")
    }
    assert report == {
        ("2", "amount", "must_be_positive", "B-1"),
        ("3", "", "member_not_found", "B-2"),
        ("4", "category", "unknown_category", "B-3"),
        ("5", "status", "invalid_status", "B-4"),
        ("6", "paid_at", "invalid", "B-5"),
    }


def test_ops3_import_orders_good_rows_beside_bad_ones(tmp_path):
    member = make_member()
    rows = [order(member, "C-1"), order(member, "C-2", amount="x"), order(member, "C-3")]
    out = run("import_orders", str(write_csv(tmp_path / "mixed.csv", rows)))
    assert "3 rows: 2 applied, 0 unchanged (already recorded), 1 refused" in out
    assert set(Order.objects.values_list("order_id", flat=True)) == {"C-1", "C-3"}
    assert verify_ledger().ok


def test_ops3_import_orders_dry_run_writes_nothing(tmp_path):
    member = make_member()
    rows = [*history(member), order(member, "D-1", amount="0")]
    before = counts()
    out = run("import_orders", str(write_csv(tmp_path / "orders.csv", rows)), "--dry-run")
    assert "6 rows: 5 valid, 1 refused" in out and "dry run" in out
    assert counts() == before


def test_ops3_import_orders_bad_header_stops_before_anything(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,member,amount\nX,1,2\n")
    with pytest.raises(CommandError, match="missing column"):
        run("import_orders", str(path))
    with pytest.raises(CommandError, match="batch-size"):
        run("import_orders", str(path), "--batch-size", "1001")


# --- patron ledger verify -------------------------------------------------------------


def test_pts7_ledger_verify_passes_then_names_a_tampered_account(tmp_path):
    member = make_member()
    run("import_orders", str(write_csv(tmp_path / "orders.csv", history(member))))
    out = run("ledger", "verify")
    assert "ledger consistent" in out
    assert "checked 1 accounts, 3 lots" in out
    Account.objects.filter(pk=member.pk).update(available=1)
    out = StringIO()
    with pytest.raises(CommandError, match="inconsistent"):
        call_command("ledger", "verify", stdout=out)
    assert "PROBLEM account_vs_entries" in out.getvalue()
    assert str(member.pk) in out.getvalue()
