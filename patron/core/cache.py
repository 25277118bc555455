"""The shared cache in the app database, one SQL statement per operation.

django-allauth keeps its sign-in rate limits and the TOTP replay guard in the cache, and a
sign-in makes about 20 cache operations (a lock taken with ``add``, ``get``, ``set`` and the
lock's ``delete`` around each rate-limit count). Django's ``DatabaseCache`` runs each ``set``
or ``add`` as five statements (a ``COUNT(*)`` of the whole table to decide on culling, then a
transaction around a ``SELECT`` and an ``INSERT`` or ``UPDATE``): about 70 statements per
sign-in where 20 do the work.

This backend keeps Django's table, columns and value encoding (``createcachetable`` makes
its table, and rows written by either backend read the same) and its semantics:

- ``set`` and ``add`` are one atomic upsert each (``INSERT ... ON CONFLICT``, SQLite >= 3.24
  and PostgreSQL); ``add`` succeeds only where no live entry holds the key, which is what
  makes it usable as a lock across processes, exactly as before;
- ``touch`` is one ``UPDATE`` and renews only a live entry (Django's also revived an expired
  row that was still in the table);
- ``get`` and ``delete`` are Django's own (one statement each);
- culling keeps Django's order (expired entries first, then the oldest keys) but the table
  is counted once every ``CULL_CHECK_EVERY`` writes of a process (default 200) instead of
  on every write, so the table may exceed ``MAX_ENTRIES`` by at most that many entries per
  process before it is trimmed.
"""

# Only quoted identifiers (the table named in settings) are formatted into SQL here.
# ruff: noqa: S608

from __future__ import annotations

import base64
import contextlib
import itertools
import pickle
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import DatabaseError, connections, router, transaction
from django.utils.timezone import now as tz_now


class DatabaseCache(DjangoDatabaseCache):
    def __init__(self, table: str, params: dict[str, Any]):
        super().__init__(table, params)
        options = params.get("OPTIONS") or {}
        self._cull_check_every = max(1, int(options.get("CULL_CHECK_EVERY", 200)))
        # Per process and table: each write takes the next number; every n-th one counts.
        self._writes = _WRITES.setdefault(table, itertools.count())

    def _base_set(self, mode: str, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> bool:
        timeout = self.get_backend_timeout(timeout)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        ops = connection.ops
        table = ops.quote_name(self._table)
        key_col, value_col, expires_col = (
            ops.quote_name("cache_key"),
            ops.quote_name("value"),
            ops.quote_name("expires"),
        )
        now = tz_now().replace(microsecond=0)
        if timeout is None:
            exp = datetime.max
        else:
            exp = datetime.fromtimestamp(timeout, tz=UTC if settings.USE_TZ else None)
        exp_db = ops.adapt_datetimefield_value(exp.replace(microsecond=0))
        now_db = ops.adapt_datetimefield_value(now)
        if mode == "touch":
            sql = (
                f"UPDATE {table} SET {expires_col} = %s "
                f"WHERE {key_col} = %s AND {expires_col} >= %s"
            )
            params = [exp_db, key, now_db]
        else:
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            sql = (
                f"INSERT INTO {table} ({key_col}, {value_col}, {expires_col}) "
                f"VALUES (%s, %s, %s) ON CONFLICT ({key_col}) DO UPDATE SET "
                f"{value_col} = EXCLUDED.{value_col}, {expires_col} = EXCLUDED.{expires_col}"
            )
            params = [key, encoded, exp_db]
            if mode == "add":
                # Only over an expired entry: a live one keeps the key (so a lock holds).
                sql += f" WHERE {table}.{expires_col} < %s"
                params.append(now_db)
        count_now = next(self._writes) % self._cull_check_every == 0
        # Inside a caller's transaction a failed statement must not abort it (PostgreSQL):
        # a savepoint there, as Django's backend takes; none in autocommit.
        guard = (
            transaction.atomic(using=db) if connection.in_atomic_block else contextlib.nullcontext()
        )
        with connection.cursor() as cursor:
            try:
                with guard:
                    if count_now:
                        cursor.execute(f"SELECT COUNT(*) FROM {table}")
                        num = cursor.fetchone()[0]
                        if num > self._max_entries:
                            self._cull(db, cursor, now, num)
                    cursor.execute(sql, params)
            except DatabaseError:
                # As in Django's backend: a cache write that fails is a miss, not an error.
                return False
            return mode == "set" or cursor.rowcount > 0


_WRITES: dict[str, itertools.count] = {}


def make_unlogged(using: str = "default") -> bool:
    """On PostgreSQL, make the database cache's table UNLOGGED; True when it changed.

    Cache rows are disposable (rate-limit counters, locks, the TOTP replay guard), and a
    sign-in writes about 15 of them: in a logged table each of those commits waits for the
    write-ahead log to reach the disk, which on a busy disk costs more than the rest of the
    sign-in besides argon2. An unlogged table is not written to the log, so its commits do
    not wait; after a crash PostgreSQL empties it, which only resets the counters, as
    restarting Redis would. Idempotent; a no-op on SQLite and for other cache backends.
    """
    from django.conf import settings as django_settings
    from django.core.cache import caches

    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    changed = False
    for alias in django_settings.CACHES:
        backend = caches[alias]
        if not isinstance(backend, DjangoDatabaseCache):
            continue
        if router.db_for_write(backend.cache_model_class) != using:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relpersistence FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(backend._table)],
            )
            row = cursor.fetchone()
            if row is None or row[0] != "p":
                continue  # no such table yet, or already unlogged
            cursor.execute(f"ALTER TABLE {connection.ops.quote_name(backend._table)} SET UNLOGGED")
            changed = True
    return changed
