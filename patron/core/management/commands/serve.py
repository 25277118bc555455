"""``patron serve``: the WSGI app under gunicorn with persistent connections."""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve Patron with gunicorn (sync workers)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("PATRON_WEB_WORKERS", 2))
        )
        parser.add_argument(
            "--threads", type=int, default=int(os.environ.get("PATRON_WEB_THREADS", 4))
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        os.execv(
            gunicorn,
            [
                gunicorn,
                "config.wsgi:application",
                "--bind",
                f"{options['host']}:{options['port']}",
                "--workers",
                str(options["workers"]),
                "--threads",
                str(options["threads"]),
                "--access-logfile",
                "-",
                # Paths only: query strings may carry a phone number or email (lookups).
                "--access-logformat",
                '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
                "--graceful-timeout",
                "10",
            ],
        )
