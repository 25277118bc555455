"""``patron worker``: the django-tasks database worker plus a small periodic scheduler.

The worker runs queued tasks (outbox deliveries right after commit, and anything else the
apps enqueue). Retries need a clock as well: a message whose delivery failed is due again
only after its backoff, and a task lost with a crashed process must still be delivered.
So a scheduler thread wakes every ``--sweep-interval`` seconds (30 by default) and, when
some outbox message is due, enqueues one ``sweep_outbox`` task for the worker to run.

The thread only enqueues: all delivery work happens in the worker, which owns the signal
handlers. On Ctrl-C or SIGTERM the worker finishes its current task and returns; the
scheduler is then told to stop and joined before the command exits.
"""

from __future__ import annotations

import logging
import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

log = logging.getLogger("patron.worker")


class PeriodicSweep(threading.Thread):
    """Every ``interval`` seconds: enqueue an outbox sweep if anything is due."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="patron-outbox-sweep", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        # Event.wait returns True as soon as stop() is called: no waiting out the interval.
        while not self.stopping.wait(self.interval):
            close_old_connections()
            try:
                self.tick()
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
