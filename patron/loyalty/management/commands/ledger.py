"""``patron ledger verify``: check the points ledger's invariants (PTS-7).

Prints how many accounts, lots and entries were checked and, for each broken invariant,
the first offenders (member ids, lot ids or order ids: never personal data). Exits with
status 1 when anything is wrong, so CI and the benchmarks can run it after their scenarios.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from patron.loyalty.verify import CHECKS, LIMIT, verify_ledger

WHAT = {
    "account_vs_entries": "account balances differ from the sum of their entries (member ids)",
    "account_vs_lots": "account balances differ from their lots' remaining points (member ids)",
    "lot_vs_allocations": "lots whose remaining points do not match their allocations (lot ids)",
    "refunded_order_nets_to_zero": "fully refunded orders whose points do not net to zero",
    "entries_without_account": "entries of members without an account (member ids)",
}


class Command(BaseCommand):
    help = "Points ledger tools. 'verify' checks every invariant and exits 1 on a problem."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("action", choices=["verify"])

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        report = verify_ledger()
        self.stdout.write(
            f"checked {report.accounts} accounts, {report.lots} lots, "
            f"{report.entries} entries against {len(CHECKS)} invariants"
        )
        if report.ok:
            self.stdout.write("ledger consistent")
            return
        for name, offenders in report.problems.items():
            more = f" (first {LIMIT})" if len(offenders) >= LIMIT else ""
            self.stdout.write(
                f"PROBLEM {name}: {WHAT.get(name, name)}{more}: "
                + ", ".join(str(offender) for offender in offenders)
            )
        raise CommandError(f"ledger inconsistent: {len(report.problems)} invariant(s) broken")
