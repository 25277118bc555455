"""``patron import-orders FILE.csv``: bring order history in from another system.

Each row is one order state, exactly what a platform sends to ``PUT /orders/{order_id}``
(columns ``ORDER_COLUMNS``; see docs/import.md). Rows go through the order service's batch
path (``patron.loyalty.services.orders.apply_orders``) in chunks of up to 1,000, so imported
orders earn, release, claw back and move tiers exactly as live ones do. Each row is all or
nothing; refused rows (bad fields, unknown member, a state older than the one recorded)
go to the report CSV. Running the same file again changes nothing: a state already
recorded is ``unchanged``. An order may appear on several rows (paid, then delivered, then
refunded) as long as its rows come in that order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import NotFound, PatronError
from patron.loyalty import rules as program
from patron.loyalty.services import orders
from patron.members.management.csvio import (
    Progress,
    Report,
    ReportLine,
    chunked,
    open_rows,
    report_path,
)
from patron.members.models import Member

ORDER_COLUMNS = (
    "order_id",
    "member",
    "amount",
    "currency",
    "category",
    "status",
    "paid_at",
    "delivered_at",
    "refunded_amount",
    "store",
)
REQUIRED = ("order_id", "member", "amount", "category", "status", "paid_at")
APPLIED, UNCHANGED, REFUSED, VALID = "applied", "unchanged", "refused", "valid"


def _state(raw: dict[str, str]) -> dict[str, str]:
    state = {name: (raw.get(name) or "").strip() for name in ORDER_COLUMNS}
    state["currency"] = state["currency"] or "CNY"
    return state


def _refusal(line: int, order_id: str, error: PatronError) -> list[ReportLine]:
    if error.errors:
        return [
            ReportLine(line, REFUSED, e.field, e.code, str(e.message), order_id)
            for e in error.errors
        ]
    return [ReportLine(line, REFUSED, "", error.code, str(error.message), order_id)]


class Command(BaseCommand):
    help = "Import order states from a CSV file (see docs/import.md); refused rows are reported."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument(
            "--report", help="where to write the report (default: FILE.report.csv beside it)"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=orders.BATCH_MAX,
            help=f"rows per batch (at most {orders.BATCH_MAX})",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check each row's fields and member only; write nothing",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        source = Path(options["file"])
        size = options["batch_size"]
        if not 1 <= size <= orders.BATCH_MAX:
            raise CommandError(f"--batch-size must be 1 to {orders.BATCH_MAX}")
        total, rows = open_rows(source, columns=ORDER_COLUMNS, required=REQUIRED)
        dry_run = options["dry_run"]
        actor = Actor.system()
        report = Report(report_path(source, options["report"]))
        # The raw stream: Django's wrapper would end every "\r" redraw with a newline.
        progress = Progress(total, label="import-orders", stream=self.stderr._out)
        tally: Counter[str] = Counter()
        try:
            for batch in chunked(rows, size):
                lines: list[int] = []
                states: list[dict[str, str]] = []
                for line, raw in batch:
                    if raw is None:
                        tally[REFUSED] += 1
                        report.add(
                            ReportLine(
                                line,
                                REFUSED,
                                "",
                                "malformed_row",
                                _("The row does not have one cell per column."),
                            )
                        )
                        continue
                    lines.append(line)
                    states.append(_state(raw))
                results = self._check(states) if dry_run else self._apply(states, actor)
                for line, state, result in zip(lines, states, results, strict=True):
                    if isinstance(result, PatronError):
                        tally[REFUSED] += 1
                        for entry in _refusal(line, state["order_id"], result):
                            report.add(entry)
                    else:
                        tally[result] += 1
                progress.update(len(batch))
        finally:
            progress.close()
            report.close()
        if dry_run:
            summary = f"{tally[VALID]} valid, {tally[REFUSED]} refused"
        else:
            summary = (
                f"{tally[APPLIED]} applied, {tally[UNCHANGED]} unchanged (already recorded), "
                f"{tally[REFUSED]} refused"
            )
        self.stdout.write(
            f"{sum(tally.values())} rows: {summary}; report: {report.path}"
            + (" (dry run: nothing was written)" if dry_run else "")
        )

    @staticmethod
    def _apply(states: list[dict[str, str]], actor: Actor) -> list[str | PatronError]:
        if not states:
            return []
        answers = orders.apply_orders([dict(s) for s in states], actor=actor)
        return [
            answer
            if isinstance(answer, PatronError)
            else (APPLIED if answer.changed else UNCHANGED)
            for answer in answers
        ]

    @staticmethod
    def _check(states: list[dict[str, str]]) -> list[str | PatronError]:
        rules, now = program.current(), clock.now()
        known = set(
            Member.objects.filter(number__in={s["member"] for s in states}).values_list(
                "number", flat=True
            )
        )
        results: list[str | PatronError] = []
        for state in states:
            try:
                item = orders.parse(state, rules, now)
            except PatronError as error:
                results.append(error)
                continue
            if item.member not in known:
                results.append(NotFound(_("No member has this number."), code="member_not_found"))
            else:
                results.append(VALID)
        return results
