"""``patron run``: the web server and the task worker together; Ctrl-C or SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the app and run the task worker until interrupted."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        patron = [sys.executable, "-m", "patron.cli"]
        children = [
            subprocess.Popen(
                [*patron, "serve", "--host", options["host"], "--port", str(options["port"])]
            ),
            subprocess.Popen([*patron, "worker"]),
        ]
        self.stdout.write(f"Patron on http://{options['host']}:{options['port']}/ (Ctrl-C stops)")
        self.stdout.flush()
        # Block the signals we wait for and sleep in sigwaitinfo until one arrives: Ctrl-C,
        # SIGTERM, or SIGCHLD when a child exits. Blocked after the children start, so they
        # keep default handling; a child that died before the block is caught by poll().
        watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        stopping = False
        try:
            while all(child.poll() is None for child in children):
                if signal.sigwaitinfo(watched).si_signo != signal.SIGCHLD:
                    stopping = True
                    break
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + 10
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        failed = [child.returncode for child in children if child.returncode not in (0, -15, None)]
        if failed and not stopping:
            raise SystemExit(1)
