"""AUTH-2: the rate-limit cache is shared by every process and keeps live counters."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection

DB_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "patron_cache",
        "OPTIONS": {"MAX_ENTRIES": 3, "CULL_FREQUENCY": 2},
    }
}


@pytest.mark.django_db(transaction=True)
def test_auth_2_migrate_creates_the_cache_table_and_expired_entries_go_first(
    settings, time_machine
):
    settings.CACHES = DB_CACHE
    call_command("migrate", "core", verbosity=0)  # post_migrate creates the table
    assert "patron_cache" in connection.introspection.table_names()
    cache = caches.create_connection("default")
    time_machine.move_to("2026-11-22 10:00:00+08:00", tick=False)
    cache.set("stale-1", 1, timeout=60)
    cache.set("stale-2", 1, timeout=60)
    cache.set("live-counter", 5, timeout=3600)
    time_machine.move_to("2026-11-22 10:05:00+08:00", tick=False)
    cache.set("new", 1, timeout=60)  # over MAX_ENTRIES: the cull must take expired rows first
    assert cache.get("live-counter") == 5
    assert cache.get("new") == 1
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE patron_cache")
