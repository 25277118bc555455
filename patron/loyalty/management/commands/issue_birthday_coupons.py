"""``patron issue-birthday-coupons --as-of YYYY-MM-DD [--sync-index]``.

See ``patron.loyalty.jobs.issue_birthday_coupons`` and docs/jobs.md. ``--sync-index``
first recomputes every member's ``Account.birthday_index`` (after a bulk import that skipped
the save signal, or a blind-index key rotation): a one-off pass decrypting each birth date.
"""

from __future__ import annotations

from typing import Any

from patron.loyalty.jobs_command import JobCommand


class Command(JobCommand):
    help = "Issue the day's birthday coupons by tier (BEN-1, TIER-5)."
    job_name = "issue-birthday-coupons"

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        super().add_arguments(parser)
        parser.add_argument(
            "--sync-index",
            action="store_true",
            help="Recompute every member's birthday index first (after bulk imports).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("sync_index"):
            from patron.loyalty.signals import sync_all_birthday_indexes

            self.stdout.write(f"birthday index: {sync_all_birthday_indexes()} members synced")
        super().handle(*args, **options)

    def job(self):  # type: ignore[no-untyped-def]
        from patron.loyalty.jobs import issue_birthday_coupons

        return issue_birthday_coupons
