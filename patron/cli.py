"""The ``patron`` command: a thin front over Django management commands.

``patron create-api-key`` runs the ``create_api_key`` command, ``patron audit verify`` the
``audit`` command with ``verify``; ``patron run`` serves the app and runs the task worker
together, as ``make run`` does.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if argv and not argv[0].startswith("-"):
        argv[0] = argv[0].replace("-", "_")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["patron", *argv])


if __name__ == "__main__":
    main()
