"""Admin building blocks and the read-only audit trail (PRIV-2, PRIV-10).

The admin at /console/admin/ is for generic browsing. Personal data never appears there in
clear text: encrypted columns are left out of forms and lists (``SafeAdmin``), displays use
``core.masking``, and no filter or search may touch an encrypted or blind-index column
(a lookup by a guessed value would turn the index into an oracle). Changes to members go
through the services (console pages, API), which audit them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from patron.core.fields import EncryptedBinaryField, EncryptedTextField
from patron.core.models import AuditEvent

# Columns that hold secrets or make lookups by personal data possible.
SECRET_COLUMN_SUFFIXES = ("_index", "digest", "code_hash", "token", "password")


def secret_field_names(model: Any) -> set[str]:
    """Encrypted columns, blind indexes and digests of a model."""
    names = set()
    for field in model._meta.get_fields():
        if isinstance(field, EncryptedTextField | EncryptedBinaryField) or (
            getattr(field, "concrete", False) and field.name.endswith(SECRET_COLUMN_SUFFIXES)
        ):
            names.add(field.name)
    return names


class SafeAdmin(admin.ModelAdmin):
    """Never shows, filters or searches encrypted or secret columns."""

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str]:
        excluded = list(super().get_exclude(request, obj) or [])
        return excluded + sorted(secret_field_names(self.model) - set(excluded))

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.split("__")[0] in secret_field_names(self.model):
            return False
        # Nor through a relation (member__phone_index=...).
        parts = lookup.split("__")
        if any(part.endswith(SECRET_COLUMN_SUFFIXES) for part in parts):
            return False
        return super().lookup_allowed(lookup, value, request)


class ReadOnlyAdmin(SafeAdmin):
    """Browse only: records change through services that audit them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only: no add, change or delete, even for superusers."""

    list_display = (
        "id",
        "occurred_at",
        "actor_type",
        "actor_id",
        "action",
        "subject_type",
        "subject_id",
    )
    list_filter = ("action", "actor_type", "subject_type")
    search_fields = ("=action", "=subject_id", "=actor_id")
    date_hierarchy = "occurred_at"
    readonly_fields = (
        "occurred_at",
        "actor_type",
        "actor_id",
        "action",
        "subject_type",
        "subject_id",
        "details",
        "prev_hash",
        "hash",
    )
    ordering = ("-id",)
    actions = None
