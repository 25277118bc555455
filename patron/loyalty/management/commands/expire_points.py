"""``patron expire-points --as-of YYYY-MM-DD``.

See ``patron.loyalty.jobs.expire_points`` and docs/jobs.md.
"""

from __future__ import annotations

from patron.loyalty.jobs_command import JobCommand


class Command(JobCommand):
    help = "Expire points past their expiry; apply tier expiry extensions first (PTS-5)."
    job_name = "expire-points"

    def job(self):  # type: ignore[no-untyped-def]
        from patron.loyalty.jobs import expire_points

        return expire_points
