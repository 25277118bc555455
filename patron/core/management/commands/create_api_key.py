"""``patron create-api-key --name NAME --scope S [--scope S ...]``: a platform API key.

The key is printed once; only its digest is stored. Revoke it in the console.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from patron.api.keys import SCOPES, create_api_key
from patron.core.audit import Actor
from patron.core.exceptions import ValidationFailed


class Command(BaseCommand):
    help = "Create a platform API key (printed once). Scopes: " + ", ".join(sorted(SCOPES))

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            required=True,
            help="repeat for several scopes; 'all' grants every scope",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        scopes = sorted(SCOPES) if "all" in options["scopes"] else options["scopes"]
        try:
            created = create_api_key(name=options["name"], scopes=scopes, actor=Actor.system())
        except ValidationFailed as exc:
            raise CommandError(
                f"{exc.message} (known scopes: {', '.join(sorted(SCOPES))})"
            ) from exc
        self.stdout.write(
            f"API key {created.api_key.name!r} with scopes {', '.join(created.api_key.scopes)}"
        )
        self.stdout.write(f"key (shown once, store it now): {created.secret}")
