"""``patron remind-expiring-points --as-of YYYY-MM-DD``.

See ``patron.loyalty.jobs.remind_expiring_points`` and docs/jobs.md.
"""

from __future__ import annotations

from patron.loyalty.jobs_command import JobCommand


class Command(JobCommand):
    help = "Remind members of points about to expire, once per stage (PTS-6)."
    job_name = "remind-expiring-points"

    def job(self):  # type: ignore[no-untyped-def]
        from patron.loyalty.jobs import remind_expiring_points

        return remind_expiring_points
