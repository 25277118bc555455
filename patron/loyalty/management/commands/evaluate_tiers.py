"""``patron evaluate-tiers --as-of YYYY-MM-DD``.

See ``patron.loyalty.jobs.evaluate_tiers`` and docs/jobs.md.
"""

from __future__ import annotations

from patron.loyalty.jobs_command import JobCommand


class Command(JobCommand):
    help = "Periodic tier evaluation: every member to the highest tier qualified (TIER-3)."
    job_name = "evaluate-tiers"

    def job(self):  # type: ignore[no-untyped-def]
        from patron.loyalty.jobs import evaluate_tiers

        return evaluate_tiers
