"""``patron release-pending-points --as-of YYYY-MM-DD``.

See ``patron.loyalty.jobs.release_pending_points`` and docs/jobs.md.
"""

from __future__ import annotations

from patron.loyalty.jobs_command import JobCommand


class Command(JobCommand):
    help = "Release pending points whose return window closed; reward referrals (PTS-3, PTS-2)."
    job_name = "release-pending-points"

    def job(self):  # type: ignore[no-untyped-def]
        from patron.loyalty.jobs import release_pending_points

        return release_pending_points
