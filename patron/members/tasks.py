"""Member tasks for the worker (django-tasks). Tasks take ids and blind indexes, never
personal data."""

from __future__ import annotations

from django_tasks import task


@task()
def send_password_reset_code(key: str, ip_index: str) -> bool:
    """A forgotten password's code, sent off the request path (see
    ``services.password_reset.request_reset``); ``key`` is the phone's blind index."""
    from patron.members.services import password_reset

    return password_reset.send_reset_code(key=key, ip_index=ip_index)
