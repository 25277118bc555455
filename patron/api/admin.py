"""Platform API keys in the admin: browse only. Keys are created (shown once) and revoked
in the console, through the services that audit them; the digest is never displayed."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from patron.api.models import ApiKey
from patron.core.admin import ReadOnlyAdmin


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("name", "prefix", "scope_list", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "=prefix")
    fields = ("name", "prefix", "scopes", "created_at", "created_by", "last_used_at", "revoked_at")
    readonly_fields = fields

    @admin.display(description=_("Scopes"))
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)
