"""The shape every loyalty job command shares: ``--as-of``, ``--chunk``, counts printed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from patron.loyalty.models import JobRun


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--as-of takes a date as YYYY-MM-DD, not {value!r}") from None


class JobCommand(BaseCommand):
    """``patron <job> [--as-of YYYY-MM-DD] [--chunk N] [--max-chunks N]``."""

    job_name = ""

    def job(self) -> Callable[..., dict[str, int]]:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--as-of",
            type=_date,
            default=None,
            help="Business date to run for (YYYY-MM-DD); default today in the program's "
            "time zone. The job works as of midnight at the start of that day.",
        )
        parser.add_argument(
            "--chunk", type=int, default=None, help="Members per transaction (default per job)."
        )
        parser.add_argument(
            "--max-chunks",
            type=int,
            default=None,
            help="Stop after this many chunks; the next run resumes where this one stopped.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from patron.loyalty import jobs

        today = jobs.today()
        as_of = options["as_of"] or today
        if as_of > today:
            raise CommandError(
                f"--as-of {as_of} is after today ({today}): a job never runs ahead of time."
            )
        kwargs: dict[str, Any] = {}
        if options["chunk"] is not None:
            if options["chunk"] < 1:
                raise CommandError("--chunk must be at least 1")
            kwargs["chunk"] = options["chunk"]
        if options["max_chunks"] is not None:
            kwargs["max_chunks"] = options["max_chunks"]
        counts = self.job()(as_of, **kwargs)
        self.stdout.write(self.report(as_of, counts))

    def report(self, as_of: dt.date, counts: dict[str, int]) -> str:
        name = self.job_name
        if counts.get("already_done"):
            run = JobRun.objects.filter(job=name.replace("-", "_"), as_of=as_of).first()
            done = ", ".join(f"{k}={v}" for k, v in sorted((run.counts if run else {}).items()))
            return f"{name} {as_of}: already done ({done or 'nothing to do'})"
        run = JobRun.objects.filter(job=name.replace("-", "_"), as_of=as_of).first()
        state = "done" if run is None or run.done else f"stopped at member {run.cursor}"
        text = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to do"
        return f"{name} {as_of}: {state}: {text}"
