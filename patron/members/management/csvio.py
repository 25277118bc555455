"""What the CSV import commands share: reading a file, a progress bar, the refusal report.

The report names rows by their line in the file (the header is line 1) and says what was
wrong with which column and why (stable codes); it never repeats the row's content, so it
carries no personal data and can be mailed around.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from django.core.management.base import CommandError

ENCODING = "utf-8-sig"  # UTF-8, with or without the BOM spreadsheets write
T = TypeVar("T")
REPORT_COLUMNS = ("row", "outcome", "field", "code", "message", "id")


def open_rows(
    path: Path, *, columns: Sequence[str], required: Sequence[str]
) -> tuple[int, Iterator[tuple[int, dict[str, str] | None]]]:
    """(number of data rows, iterator of (line number, row or None when malformed)).

    The header must name known columns only (a typo must not silently drop a column) and
    every required one; otherwise nothing is read and the command stops.
    """
    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    with path.open(encoding=ENCODING, newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip().lower() for name in next(reader)]
        except StopIteration:
            raise CommandError(f"{path} is empty: a header line is required") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"{path} is not a UTF-8 CSV file: {exc}") from None
        try:
            total = sum(1 for row in reader if any(cell.strip() for cell in row))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"{path} is not a UTF-8 CSV file: {exc}") from None
    unknown = [name for name in header if name not in columns]
    missing = [name for name in required if name not in header]
    duplicate = sorted({name for name in header if header.count(name) > 1})
    problems = []
    if unknown:
        problems.append("unknown column(s): " + ", ".join(unknown))
    if missing:
        problems.append("missing column(s): " + ", ".join(missing))
    if duplicate:
        problems.append("repeated column(s): " + ", ".join(duplicate))
    if problems:
        raise CommandError(f"{path}: {'; '.join(problems)} (known columns: {', '.join(columns)})")
    return total, _rows(path, header)


def _rows(path: Path, header: list[str]) -> Iterator[tuple[int, dict[str, str] | None]]:
    with path.open(encoding=ENCODING, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are not rows
            if len(cells) != len(header):
                yield line, None
                continue
            yield line, dict(zip(header, cells, strict=True))


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class ReportLine:
    row: int
    outcome: str
    field: str = ""
    code: str = ""
    message: str = ""
    id: str = ""  # the member number or order id the row is about (an id, never personal data)


class Report:
    """The report CSV: one line per refusal reason, note or existing row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(REPORT_COLUMNS)
        self.lines = 0

    def add(self, line: ReportLine) -> None:
        self._writer.writerow(
            [line.row, line.outcome, line.field, line.code, line.message, line.id]
        )
        self.lines += 1

    def close(self) -> None:
        self._handle.close()


def report_path(source: Path, given: str | None) -> Path:
    path = Path(given) if given else source.with_name(source.stem + ".report.csv")
    if path.resolve() == source.resolve():
        raise CommandError("the report would overwrite the file being imported")
    return path


class Progress:
    """A progress bar on stderr: tqdm's when it is installed, else a plain counter."""

    def __init__(self, total: int, *, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.label = label
        self.stream = stream or sys.stderr
        self._last = 0.0
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(total=total, desc=label, unit="row", file=self.stream)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= 0.5 or self.done >= self.total:
            self._last = now
            percent = 100 * self.done // self.total if self.total else 100
            end = "\r" if self.stream.isatty() else "\n"
            self.stream.write(f"{self.label}: {self.done}/{self.total} rows ({percent}%){end}")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
