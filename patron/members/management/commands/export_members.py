"""``patron export-members FILE.csv --reason "..."``: every member in the import format (OPS-3).

The file holds personal data in clear text, so: a reason is required (at least 10
characters; the audit event ``members.exported`` records the count and the reason's length,
never its text), the file is created with mode 0600 and never overwrites an existing one,
and a failed export removes its partial file. Cancelled members are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from patron.core.audit import Actor
from patron.core.exceptions import ValidationFailed
from patron.members.services.importing import check_reason, export_members


class Command(BaseCommand):
    help = "Export members (personal data decrypted) to a new CSV file; needs --reason."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument("--reason", required=True, help="why the data leaves Patron")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        path = Path(options["file"])
        try:
            reason = check_reason(options["reason"])
        except ValidationFailed as exc:
            raise CommandError(exc.message) from exc
        try:
            # O_EXCL: never overwrite (nor follow a planted symlink); 0600 from the start.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists already; choose a new file name") from None
        except OSError as exc:
            raise CommandError(f"cannot create {path}: {exc.strerror}") from None
        os.fchmod(fd, 0o600)  # whatever the umask says
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                count = export_members(out, reason=reason, actor=Actor.system())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.stdout.write(f"{count} members exported to {path} (mode 0600; audited)")
