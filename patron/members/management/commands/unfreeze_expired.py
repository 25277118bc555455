"""``patron unfreeze-expired``: end every freeze whose end time has passed (REG-11, OPS-2).

Safe to run twice and to interrupt: each member is unfrozen in its own transaction, and one
already unfrozen is not touched again. Schedule it every few minutes.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from patron.members.services.status import unfreeze_expired


class Command(BaseCommand):
    help = "Unfreeze members whose freeze has ended."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        count = unfreeze_expired()
        self.stdout.write(f"unfrozen: {count}")
