"""Side effects after commit (architecture rule 2)."""

from __future__ import annotations

from typing import Any

from django.db import transaction


def enqueue_on_commit(task: Any, *args: Any, **kwargs: Any) -> None:
    """Enqueue a django-tasks task once the current transaction commits.

    Outside a transaction this enqueues at once. Tasks take ids, never personal data.
    """
    transaction.on_commit(lambda: task.enqueue(*args, **kwargs))
