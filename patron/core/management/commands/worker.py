"""``patron worker``: the django-tasks database worker plus a small periodic scheduler.

The worker runs queued tasks (outbox deliveries right after commit, and anything else the
apps enqueue). Retries need a clock as well: a message whose delivery failed is due again
only after its backoff, and a task lost with a crashed process must still be delivered.
So a scheduler thread wakes every ``--sweep-interval`` seconds (30 by default) and, when
some outbox message is due, enqueues one ``sweep_outbox`` task for the worker to run.

The same thread schedules the loyalty program's daily jobs (OPS-2): once the program's
local time is past ``PATRON_JOBS_HOUR`` (2 by default) and the day's run is not done, it
enqueues one ``run_daily_jobs`` task for today (release, expire, remind, birthday coupons,
the tier evaluation on evaluation days, tier notices). A day's run that is still not done
an hour later (a crash, a lost task) is enqueued again; every job resumes where it stopped.

The thread only enqueues: all delivery work happens in the worker, which owns the signal
handlers. On Ctrl-C or SIGTERM the worker finishes its current task and returns; the
scheduler is then told to stop and joined before the command exits.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import zoneinfo

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

log = logging.getLogger("patron.worker")

DAILY_RETRY = dt.timedelta(hours=1)


def jobs_hour() -> int:
    """``PATRON_JOBS_HOUR``: the local hour (program time zone) after which the day's
    loyalty jobs run; 2 by default."""
    from django.conf import settings

    value = getattr(settings, "PATRON_JOBS_HOUR", None)
    if value is None:
        value = os.environ.get("PATRON_JOBS_HOUR", "2")
    try:
        hour = int(value)
    except (TypeError, ValueError):
        return 2
    return hour if 0 <= hour <= 23 else 2


def daily_jobs_due(
    local_now: dt.datetime,
    *,
    hour: int,
    done: bool,
    last_enqueued: dt.datetime | None,
    retry_after: dt.timedelta = DAILY_RETRY,
) -> bool:
    """Whether to enqueue today's daily jobs now (``local_now`` in the program's time zone).

    Not before ``hour``; never once the day's run is done; not again within
    ``retry_after`` of an enqueue for the same day (the task may still be queued or
    running); again after that, since a task lost with a crashed worker must not cost the
    day its jobs.
    """
    if local_now.hour < hour or done:
        return False
    if last_enqueued is None or last_enqueued.date() != local_now.date():
        return True
    return local_now - last_enqueued >= retry_after


class PeriodicSweep(threading.Thread):
    """Every ``interval`` seconds: enqueue an outbox sweep if anything is due."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="patron-outbox-sweep", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()
        self.daily_enqueued_at: dt.datetime | None = None

    def run(self) -> None:
        # Event.wait returns True as soon as stop() is called: no waiting out the interval.
        while not self.stopping.wait(self.interval):
            close_old_connections()
            try:
                self.tick()
                self.tick_daily()
            finally:
                # This thread's own connection: never keep one idle for a whole interval.
                connection.close()

    def tick(self) -> bool:
        """One scheduling step; True when a sweep was enqueued."""
        from patron.notify import services
        from patron.notify.tasks import sweep_outbox

        try:
            if services.has_due():
                sweep_outbox.enqueue()
                return True
        except Exception as exc:
            # A database hiccup must not kill the scheduler: try again next tick.
            log.warning("outbox sweep scheduling failed: %s", type(exc).__name__)
        return False

    def tick_daily(self) -> bool:
        """Enqueue today's loyalty jobs when due; True when enqueued."""
        from patron.core import clock
        from patron.loyalty import jobs
        from patron.loyalty import rules as program
        from patron.loyalty.tasks import run_daily_jobs

        try:
            rules = program.current()
            local_now = clock.now().astimezone(zoneinfo.ZoneInfo(rules.time_zone))
            today = local_now.date()
            if not daily_jobs_due(
                local_now,
                hour=jobs_hour(),
                done=jobs.daily_done(today),
                last_enqueued=self.daily_enqueued_at,
            ):
                return False
            self.daily_enqueued_at = local_now
            run_daily_jobs.enqueue(today.isoformat())
            return True
        except Exception as exc:
            log.warning("daily jobs scheduling failed: %s", type(exc).__name__)
            return False

    def stop(self) -> None:
        self.stopping.set()


class Command(BaseCommand):
    help = "Run the task worker and the periodic outbox sweep until interrupted."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--sweep-interval",
            type=float,
            default=30.0,
            help="Seconds between outbox sweeps (retries, lost tasks). Default 30.",
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="Seconds between task queue polls."
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        sweep = PeriodicSweep(options["sweep_interval"])
        sweep.start()
        try:
            # No autoreload (it would fork a second process with a second scheduler, and
            # `patron run` stops us with SIGTERM); every queue, so no task is left behind.
            call_command("db_worker", interval=options["interval"], reload=False, queue_name="*")
        finally:
            sweep.stop()
            sweep.join(timeout=10)
