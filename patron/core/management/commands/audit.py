"""``patron audit verify``: prove the audit trail was not edited, removed or reordered."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from patron.core import audit


class Command(BaseCommand):
    help = "Audit trail tools. 'verify' walks the hash chain and names the first bad row."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("action", choices=["verify"])

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        result = audit.verify()
        if not result.ok:
            raise CommandError(
                f"audit trail broken at event {result.bad_event_id}: {result.reason} "
                f"({result.checked} events before it are intact)"
            )
        self.stdout.write(f"audit trail intact: {result.checked} events")
