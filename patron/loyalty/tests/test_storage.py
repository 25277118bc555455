"""How the ledger's tables are stored (PostgreSQL): accounts leave room in their pages so
that balance and tier updates stay in place (migration 0005)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_account_pages_keep_room_for_in_place_updates():
    if connection.vendor != "postgresql":
        assert connection.vendor == "sqlite"  # SQLite has no fillfactor
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'loyalty_account'")
        (options,) = cursor.fetchone()
    assert "fillfactor=85" in (options or [])
