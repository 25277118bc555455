"""``patron deliver-outbox``: deliver every due outbox message now.

Useful without a running worker (cron, an operator after an outage). Each message commits
on its own, so an interrupted run loses nothing and running it twice sends nothing twice.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from patron.notify import services


class Command(BaseCommand):
    help = "Deliver the outbox messages that are due (retries included)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--limit", type=int, default=None, help="At most this many.")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        counts = services.deliver_due(limit=options["limit"])
        self.stdout.write(
            "sent {sent}, retry later {retry}, dead {dead}, skipped {skipped}".format(**counts)
        )
