"""Core models: the tamper-evident audit trail."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One state change or personal-data reveal, chained to the one before by hash.

    ``hash`` covers this row's content and ``prev_hash``; editing, deleting or reordering any
    row breaks the chain at that row, which ``patron audit verify`` reports. ``details``
    carries ids and codes only, never personal data.
    """

    occurred_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    subject_type = models.CharField(max_length=32, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["subject_type", "subject_id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.subject_type}:{self.subject_id}"
