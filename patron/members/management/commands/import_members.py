"""``patron import-members FILE.csv``: move members in from another system (OPS-3).

Each row becomes one member, all or nothing (``patron.members.services.importing``); rows
are written in batches (one transaction per batch, a savepoint per row), so a refused row
never leaves half a member and a crash loses at most the batch in flight, which a re-run
then imports: rows already imported (same phone, or a member number an import created) are
reported as ``exists``. Refused rows, existing rows and notes go to the report CSV (line
number, column, code, message, member number: no personal data). ``--dry-run`` validates
every row and writes nothing. The format is in docs/import.md.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from patron.core.audit import Actor
from patron.core.exceptions import FieldError
from patron.members.management.csvio import (
    Progress,
    Report,
    ReportLine,
    chunked,
    open_rows,
    report_path,
)
from patron.members.services.importing import (
    COLUMNS,
    REQUIRED_COLUMNS,
    MemberImporter,
    Outcome,
    RowOutcome,
)


def report_lines(line: int, result: RowOutcome) -> list[ReportLine]:
    lines = [
        ReportLine(line, result.outcome, e.field, e.code, str(e.message), result.member)
        for e in [*result.errors, *result.notes]
    ]
    if result.outcome == Outcome.EXISTS:
        lines.insert(
            0,
            ReportLine(
                line,
                result.outcome,
                "",
                "exists",
                _("Already a member; the row was skipped."),
                result.member,
            ),
        )
    return lines


class Command(BaseCommand):
    help = "Import members from a CSV file (see docs/import.md); refused rows go to a report."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument(
            "--report", help="where to write the report (default: FILE.report.csv beside it)"
        )
        parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
        parser.add_argument(
            "--batch-size", type=int, default=200, help="rows per transaction (default 200)"
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        source = Path(options["file"])
        size = options["batch_size"]
        if size < 1:
            raise CommandError("--batch-size must be at least 1")
        total, rows = open_rows(source, columns=COLUMNS, required=REQUIRED_COLUMNS)
        dry_run = options["dry_run"]
        importer = MemberImporter(actor=Actor.system(), dry_run=dry_run)
        report = Report(report_path(source, options["report"]))
        # The raw stream: Django's wrapper would end every "\r" redraw with a newline.
        progress = Progress(total, label="import-members", stream=self.stderr._out)
        tally: Counter[str] = Counter()
        try:
            for batch in chunked(rows, size):
                if dry_run:
                    results = [(line, self._one(importer, raw)) for line, raw in batch]
                else:
                    with transaction.atomic():
                        results = [(line, self._one(importer, raw)) for line, raw in batch]
                # Only what committed is counted and reported.
                for line, result in results:
                    tally[result.outcome] += 1
                    for entry in report_lines(line, result):
                        report.add(entry)
                progress.update(len(batch))
        finally:
            progress.close()
            report.close()
        done = "valid" if dry_run else "imported"
        key = Outcome.VALID if dry_run else Outcome.IMPORTED
        self.stdout.write(
            f"{sum(tally.values())} rows: {tally[key]} {done}, {tally[Outcome.EXISTS]} exist "
            f"already, {tally[Outcome.REFUSED]} refused; report: {report.path}"
            + (" (dry run: nothing was written)" if dry_run else "")
        )

    @staticmethod
    def _one(importer: MemberImporter, raw: dict[str, str] | None) -> RowOutcome:
        if raw is None:
            return RowOutcome(
                Outcome.REFUSED,
                errors=[
                    FieldError("", "malformed_row", _("The row does not have one cell per column."))
                ],
            )
        return importer.import_row(raw)
