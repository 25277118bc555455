"""``patron create-webhook --name N --url U --event E [--event E ...]``: a platform endpoint.

The signing secret is printed once; Patron keeps only an encrypted copy for signing and
cannot show it again. ``--event '*'`` subscribes to every event. Deactivate it in the
console.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from patron.core.audit import Actor
from patron.core.exceptions import ValidationFailed
from patron.notify import webhooks


class Command(BaseCommand):
    help = "Register a platform webhook endpoint (secret printed once). Events: " + ", ".join(
        webhooks.EVENTS
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--name", required=True)
        parser.add_argument("--url", required=True, help="http:// or https:// URL")
        parser.add_argument(
            "--event",
            action="append",
            dest="events",
            required=True,
            help="repeat for several events; '*' subscribes to every event",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            created = webhooks.create_endpoint(
                name=options["name"],
                url=options["url"],
                events=options["events"],
                actor=Actor.system(),
            )
        except ValidationFailed as exc:
            detail = "; ".join(f"{e.field}: {e.message}" for e in exc.errors) or exc.message
            raise CommandError(
                f"{detail} (known events: {', '.join(webhooks.EVENTS)}, or '*')"
            ) from exc
        endpoint = created.endpoint
        self.stdout.write(
            f"webhook endpoint {endpoint.pk} {endpoint.name!r} for {', '.join(endpoint.events)}"
        )
        self.stdout.write(f"signing secret (shown once, store it now): {created.secret}")
