"""``patron worker``: the django-tasks database worker (outbox delivery, periodic jobs)."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the task worker."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        call_command("db_worker", interval=1.0)
