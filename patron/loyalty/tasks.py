"""Loyalty tasks for the worker (django-tasks). Tasks take ids or dates, never personal data."""

from __future__ import annotations

from django_tasks import task


@task()
def notify_tier_changes() -> int:
    """Tell members and platforms about tier changes not yet notified (see jobs)."""
    from patron.loyalty import jobs

    return jobs.notify_tier_changes()


@task()
def run_daily_jobs(as_of: str) -> dict:
    """The day's loyalty jobs for ``as_of`` (ISO date), enqueued by the worker's scheduler."""
    import datetime as dt

    from patron.loyalty import jobs

    return jobs.run_daily(dt.date.fromisoformat(as_of))
