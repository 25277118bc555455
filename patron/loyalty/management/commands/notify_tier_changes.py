"""``patron notify-tier-changes``: tell members and platforms about tier changes not yet told
(the worker does this after every change; the command is for operators and backfills)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Send the notices and webhooks of tier changes not yet notified (TIER-4)."

    def handle(self, *args: Any, **options: Any) -> None:
        from patron.loyalty.jobs import notify_tier_changes

        self.stdout.write(f"notify-tier-changes: notified={notify_tier_changes()}")
