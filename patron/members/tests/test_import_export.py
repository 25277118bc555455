"""OPS-3: ``patron import-members`` and ``patron export-members``.

Good rows become members (tier, opening balance, status), bad rows are reported by line,
column and code with nothing of them written, a re-run is safe, a dry run writes nothing,
the export round-trips and is audited, 0600 and never overwrites.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import stat
import threading
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connections

from patron.core.audit import verify as verify_audit
from patron.core.models import AuditEvent
from patron.loyalty.models import Account, Allocation, Entry, Lot, TierChange
from patron.loyalty.tests.helpers import LEDGER_MODELS
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member, User
from patron.members.selectors import member_by_phone
from patron.members.services.importing import COLUMNS
from patron.members.tests.members_helpers import ADULT_ID, CREDIT_CODE, MINOR_ID, counts

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))

GOOD = [
    {
        "kind": "individual",
        "username": "wang01",
        "phone": "138 0013 8000",
        "phone_verified": "1",
        "email": "Wang@Example.com",
        "email_verified": "yes",
        "name": "王小明",
        "birth_date": "1990-05-01",
        "tier": "silver",
        "points": "1200",
        "created_at": "2020-01-02",
    },
    {"kind": "individual", "phone": "+8613900139000", "name": "李四", "id_number": ADULT_ID},
    {
        "kind": "enterprise",
        "username": "acme",
        "phone": "13700137000",
        "phone_verified": "true",
        "company_name": "Acme 有限公司",
        "credit_code": CREDIT_CODE,
        "contact_name": "张三",
        "tier": "gold",
        "created_at": "2021-03-04T10:00:00+08:00",
    },
]
BAD = [
    {  # every column wrong at once: all reported together
        "kind": "individual",
        "phone": "123",
        "phone_verified": "maybe",
        "email": "not-an-email",
        "birth_date": "1990-13-01",
        "tier": "platinum",
        "points": "-5",
        "created_at": "2099-01-01",
    },
    {"kind": "individual", "phone": "13600136000", "name": "小孩", "id_number": MINOR_ID},
    {"kind": "robot", "phone": "13500135000", "name": "R2"},
    {
        "kind": "individual",
        "phone": "13400134000",
        "name": "周五",
        "birth_date": "1980-01-01",
        "status": "active",  # active needs a verified phone
    },
]


@pytest.fixture(autouse=True)
def _at_now():
    with time_machine.travel(NOW, tick=False):
        yield


def write_csv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def everything() -> dict[str, int]:
    return counts(*LEDGER_MODELS)


def test_ops3_import_creates_members_with_tier_points_and_status(tmp_path):
    source = write_csv(tmp_path / "members.csv", GOOD)
    out = run("import_members", str(source))
    assert "3 rows: 3 imported, 0 exist already, 0 refused" in out
    assert read_csv(tmp_path / "members.report.csv") == []

    wang = member_by_phone("+8613800138000")
    assert (wang.kind, wang.status, wang.name, wang.birth_date) == (
        "individual",
        "active",
        "王小明",
        "1990-05-01",
    )
    assert wang.email == "wang@example.com" and wang.email_verified_at is not None
    assert wang.created_at == dt.datetime(2020, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert wang.user.username == "wang01"
    assert not wang.user.has_usable_password()
    account = Account.objects.get(pk=wang.pk)
    assert (account.tier, account.available) == ("silver", 1200)
    lot = Lot.objects.get(member=wang)
    assert (lot.source, lot.amount, lot.status) == ("adjustment", 1200, "available")
    assert Entry.objects.get(member=wang).key == f"import:{wang.number}"
    change = TierChange.objects.get(member=wang)
    assert (change.from_tier, change.to_tier, change.kind) == ("regular", "silver", "manual")
    assert change.notified_at is not None  # nothing is sent for a tier the member had

    li = member_by_phone("13900139000")
    assert (li.status, li.birth_date, li.id_number) == ("pending", "2000-01-01", ADULT_ID)
    assert li.user.username == f"m{li.number}" and li.phone_verified_at is None
    assert Account.objects.get(pk=li.pk).tier == "regular"
    assert not Lot.objects.filter(member=li).exists()

    acme = member_by_phone("13700137000")
    assert (acme.kind, acme.company_name, acme.credit_code, acme.contact_name) == (
        "enterprise",
        "Acme 有限公司",
        CREDIT_CODE,
        "张三",
    )
    assert Account.objects.get(pk=acme.pk).tier == "gold"

    events = AuditEvent.objects.filter(action="member.imported")
    assert sorted(int(e.subject_id) for e in events) == sorted([wang.pk, li.pk, acme.pk])
    assert "王小明" not in str([e.details for e in events])
    assert verify_audit().ok
    assert verify_ledger().ok


def test_ops3_refused_rows_are_reported_and_nothing_of_them_is_written(tmp_path):
    source = write_csv(tmp_path / "bad.csv", BAD)
    before = everything()
    out = run("import_members", str(source), "--report", str(tmp_path / "refused.csv"))
    assert "4 rows: 0 imported, 0 exist already, 4 refused" in out
    assert everything() == before
    report = read_csv(tmp_path / "refused.csv")
    by_row = {}
    for line in report:
        assert line["outcome"] == "refused"
        by_row.setdefault(int(line["row"]), set()).add((line["field"], line["code"]))
    assert by_row[2] >= {
        ("phone", "invalid_phone"),
        ("phone_verified", "invalid_boolean"),
        ("email", "invalid_email"),
        ("birth_date", "invalid_date"),
        ("tier", "unknown_tier"),
        ("points", "invalid_points"),
        ("created_at", "in_future"),
    }
    assert ("id_number", "minor") in by_row[3]
    assert by_row[4] == {("kind", "invalid_kind")}
    assert by_row[5] == {("status", "phone_not_verified")}
    # Line numbers, columns and codes only: nothing from the rows themselves.
    text = (tmp_path / "refused.csv").read_text()
    for value in ("123", "not-an-email", MINOR_ID, "小孩", "13500135000", "周五"):
        assert value not in text


def test_ops3_good_and_bad_rows_in_one_file_import_the_good_ones_only(tmp_path):
    source = write_csv(tmp_path / "mixed.csv", [BAD[0], GOOD[0], BAD[1], GOOD[1]])
    out = run("import_members", str(source), "--batch-size", "2")
    assert "4 rows: 2 imported, 0 exist already, 2 refused" in out
    assert Member.objects.count() == 2
    assert User.objects.count() == 2  # no user left behind by a refused row
    assert {int(r["row"]) for r in read_csv(tmp_path / "mixed.report.csv")} == {2, 4}


def test_ops3_rerunning_the_same_file_changes_nothing_and_reports_exists(tmp_path):
    source = write_csv(tmp_path / "members.csv", GOOD + BAD[:1])
    run("import_members", str(source))
    numbers = set(Member.objects.values_list("number", flat=True))
    before = everything()
    out = run("import_members", str(source))
    assert "4 rows: 0 imported, 3 exist already, 1 refused" in out
    assert everything() == before
    exists = [r for r in read_csv(tmp_path / "members.report.csv") if r["outcome"] == "exists"]
    assert {r["id"] for r in exists} == numbers
    assert verify_ledger().ok


def test_ops3_dry_run_writes_nothing_and_predicts_the_outcomes(tmp_path):
    twin = {**GOOD[1], "username": "twin"}  # same phone as GOOD[1]: a real run says exists
    source = write_csv(tmp_path / "members.csv", [*GOOD, twin, BAD[0]])
    before = everything()
    out = run("import_members", str(source), "--dry-run")
    assert "5 rows: 3 valid, 1 exist already, 1 refused" in out
    assert "dry run" in out
    assert everything() == before
    out = run("import_members", str(source))
    assert "5 rows: 3 imported, 1 exist already, 1 refused" in out


def test_ops3_member_number_is_kept_when_valid_and_free_else_replaced(tmp_path):
    from patron.core import ids
    from patron.loyalty.tests.helpers import make_member

    other = make_member()  # holds a valid number that was not imported
    kept = ids.random_member_number()
    rows = [
        {**GOOD[0], "number": kept},
        {**GOOD[1], "number": "123456789012"},  # fails the Luhn check
        {**GOOD[2], "number": other.number},
    ]
    source = write_csv(tmp_path / "members.csv", rows)
    run("import_members", str(source))
    assert member_by_phone(GOOD[0]["phone"]).number == kept
    replaced = {r["row"]: r for r in read_csv(tmp_path / "members.report.csv")}
    assert set(replaced) == {"3", "4"}
    for line in replaced.values():
        assert (line["outcome"], line["code"]) == ("imported", "number_replaced")
    assert replaced["3"]["id"] == member_by_phone(GOOD[1]["phone"]).number
    assert replaced["4"]["id"] == member_by_phone(GOOD[2]["phone"]).number != other.number
    # Re-run: the kept number and the phones identify the rows; nothing new.
    before = everything()
    run("import_members", str(source))
    assert everything() == before


def test_ops3_a_row_imported_before_is_found_by_number_after_a_phone_change(tmp_path):
    source = write_csv(tmp_path / "members.csv", [{**GOOD[1], "number": "100000000008"}])
    run("import_members", str(source))
    member = Member.objects.get(number="100000000008")
    member.phone = "+8613911110000"
    from patron.core.crypto import blind_index

    member.phone_index = blind_index("+8613911110000", "phone")
    member.save()
    before = everything()
    out = run("import_members", str(source))
    assert "1 exist already" in out
    assert everything() == before


def test_ops3_taken_email_username_and_credit_code_are_refused(tmp_path):
    run("import_members", str(write_csv(tmp_path / "first.csv", GOOD)))
    clash = [
        {**GOOD[0], "phone": "13811112222"},  # same username and email, other phone
        {**GOOD[2], "phone": "13711112222", "username": ""},  # same credit code
    ]
    before = everything()
    run("import_members", str(write_csv(tmp_path / "clash.csv", clash)))
    assert everything() == before
    codes = {(r["row"], r["code"]) for r in read_csv(tmp_path / "clash.report.csv")}
    assert codes == {("2", "username_taken"), ("2", "email_taken"), ("3", "credit_code_taken")}


def test_ops3_frozen_status_makes_an_inactive_user(tmp_path):
    source = write_csv(tmp_path / "m.csv", [{**GOOD[1], "status": "frozen"}])
    run("import_members", str(source))
    member = member_by_phone(GOOD[1]["phone"])
    assert member.status == "frozen" and not member.user.is_active


def test_ops3_bad_header_or_malformed_row_writes_nothing(tmp_path):
    before = everything()
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("kind,phone,nickname\nindividual,13800138000,x\n")
    with pytest.raises(CommandError, match="unknown column"):
        run("import_members", str(bad_header))
    missing = tmp_path / "missing.csv"
    missing.write_text("kind,name\nindividual,x\n")
    with pytest.raises(CommandError, match="missing column"):
        run("import_members", str(missing))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("kind,phone,name,birth_date\nindividual,13800138000,王,1990-01-01,extra\n")
    out = run("import_members", str(ragged))
    assert "1 refused" in out
    assert read_csv(tmp_path / "ragged.report.csv")[0]["code"] == "malformed_row"
    with pytest.raises(CommandError, match="no such file"):
        run("import_members", str(tmp_path / "nope.csv"))
    assert everything() == before


def test_ops3_spreadsheet_bom_and_progress_counter(tmp_path):
    source = tmp_path / "excel.csv"
    source.write_bytes(
        "\ufeffkind,phone,name,birth_date\nindividual,13800138000,王,1990-01-01\n".encode()
    )
    err = StringIO()
    call_command("import_members", str(source), stdout=StringIO(), stderr=err)
    assert member_by_phone("13800138000") is not None
    assert "1/1 rows (100%)" in err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_ops3_two_imports_of_one_file_at_once_make_each_member_once(tmp_path):
    rows = [
        {
            "kind": "individual",
            "phone": f"1380000{i:04d}",
            "name": f"会员{i}",
            "birth_date": "1990-01-01",
            "points": "10",
        }
        for i in range(12)
    ]
    source = write_csv(tmp_path / "members.csv", rows)
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def work(index: int) -> None:
        try:
            barrier.wait()
            results[index] = run(
                "import_members",
                str(source),
                "--report",
                str(tmp_path / f"report{index}.csv"),
                "--batch-size",
                "5",
            )
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(r, str) for r in results), results
    assert Member.objects.count() == 12 and User.objects.count() == 12
    imported = sum(int(r.split(": ")[1].split(" ")[0]) for r in results)
    assert imported == 12, results
    assert Lot.objects.count() == 12
    assert verify_ledger().ok


# --- export ------------------------------------------------------------------------------


def _wipe_members() -> None:
    Allocation.objects.all().delete()
    Entry.objects.all().delete()
    Lot.objects.all().delete()
    TierChange.objects.all().delete()
    Account.objects.all().delete()
    users = list(Member.objects.values_list("user_id", flat=True))
    Member.objects.all().delete()
    User.objects.filter(pk__in=users).delete()


def test_ops3_export_round_trips_through_import(tmp_path):
    run("import_members", str(write_csv(tmp_path / "in.csv", GOOD)))
    first = tmp_path / "first.csv"
    out = run("export_members", str(first), "--reason", "moving to the new data centre")
    assert "3 members exported" in out
    exported = read_csv(first)
    assert list(exported[0]) == list(COLUMNS)
    wang = next(r for r in exported if r["username"] == "wang01")
    assert wang == {
        **{c: "" for c in COLUMNS},
        "number": wang["number"],
        "kind": "individual",
        "username": "wang01",
        "phone": "+8613800138000",
        "phone_verified": "1",
        "email": "wang@example.com",
        "email_verified": "1",
        "name": "王小明",
        "birth_date": "1990-05-01",
        "language": "zh-hans",
        "status": "active",
        "tier": "silver",
        "points": "1200",
        "created_at": "2020-01-02T00:00:00+08:00",
    }
    # Into an empty system and out again: the same file.
    _wipe_members()
    out = run("import_members", str(first))
    assert "3 rows: 3 imported" in out
    second = tmp_path / "second.csv"
    run("export_members", str(second), "--reason", "moving to the new data centre")
    assert second.read_text() == first.read_text()
    assert verify_ledger().ok


def test_ops3_export_escapes_formulas_and_import_restores_them(tmp_path):
    row = {**GOOD[1], "name": "=1+2", "address": "@home"}
    run("import_members", str(write_csv(tmp_path / "in.csv", [row])))
    path = tmp_path / "out.csv"
    run("export_members", str(path), "--reason", "checking formula escaping")
    exported = read_csv(path)[0]
    assert (exported["name"], exported["address"]) == ("'=1+2", "'@home")
    _wipe_members()
    run("import_members", str(path))
    member = member_by_phone(GOOD[1]["phone"])
    assert (member.name, member.address) == ("=1+2", "@home")


def test_ops3_export_is_audited_0600_and_refuses_to_overwrite(tmp_path):
    run("import_members", str(write_csv(tmp_path / "in.csv", GOOD)))
    path = tmp_path / "export.csv"
    run("export_members", str(path), "--reason", "annual backup check")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    event = AuditEvent.objects.get(action="members.exported")
    assert event.details == {"count": 3, "reason_length": len("annual backup check")}
    content = path.read_bytes()
    before = everything()
    with pytest.raises(CommandError, match="exists already"):
        run("export_members", str(path), "--reason", "annual backup check")
    assert path.read_bytes() == content
    assert everything() == before  # no second audit event either
    assert verify_audit().ok


def test_ops3_export_needs_a_reason_and_writes_nothing_without_one(tmp_path):
    path = tmp_path / "export.csv"
    before = everything()
    with pytest.raises(CommandError, match="10"):  # "at least 10 characters"
        run("export_members", str(path), "--reason", "because")
    assert not path.exists()
    assert everything() == before


def test_ops3_export_leaves_out_cancelled_members(tmp_path):
    run("import_members", str(write_csv(tmp_path / "in.csv", GOOD)))
    Member.objects.filter(phone_index__isnull=False).filter(
        pk=member_by_phone(GOOD[1]["phone"]).pk
    ).update(status="cancelled", phone_index=None)
    path = tmp_path / "export.csv"
    out = run("export_members", str(path), "--reason", "leaving out cancelled")
    assert "2 members exported" in out
    assert len(read_csv(path)) == 2
