"""Outbox tasks. Payloads are message ids only: the text stays encrypted in the row."""

from __future__ import annotations

from django_tasks import task

from patron.notify import services


@task()
def deliver_outbox_message(message_id: int) -> str:
    """Deliver one message right after the transaction that wrote it commits."""
    return services.deliver(message_id)


@task()
def sweep_outbox() -> dict[str, int]:
    """Deliver everything due: retries after backoff, and anything a lost task left behind."""
    return services.deliver_due(limit=1000)
