"""AUTH-2: Patron's database cache keeps allauth's rate-limit counters and locks right with
one statement per operation (patron/core/cache.py)."""

# ruff: noqa: S608 - the table name is a constant of this module

from __future__ import annotations

import threading

import pytest
from django.apps import apps
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from patron.core.cache import DatabaseCache, make_unlogged
from patron.core.signals import _create_cache_table

TABLE = "patron_cache"


def _settings(**options):
    return {
        "default": {
            "BACKEND": "patron.core.cache.DatabaseCache",
            "LOCATION": TABLE,
            "OPTIONS": options,
        }
    }


@pytest.fixture
def db_cache(settings, transactional_db):
    settings.CACHES = _settings(MAX_ENTRIES=1000)
    call_command("createcachetable", verbosity=0)
    cache = caches.create_connection("default")
    assert isinstance(cache, DatabaseCache)
    cache.clear()
    yield cache
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {TABLE}")


def _rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
        return cursor.fetchone()[0]


def test_auth_2_add_holds_a_live_key_and_takes_an_expired_one(db_cache, time_machine):
    time_machine.move_to("2026-11-22 10:00:00+08:00", tick=False)
    assert db_cache.add("rl:lock", True, timeout=10) is True
    assert db_cache.add("rl:lock", "other", timeout=10) is False  # the lock holds
    assert db_cache.get("rl:lock") is True
    time_machine.move_to("2026-11-22 10:00:11+08:00", tick=False)
    assert db_cache.add("rl:lock", "next", timeout=10) is True  # expired: taken over
    assert db_cache.get("rl:lock") == "next"
    assert db_cache.delete("rl:lock") is True
    assert db_cache.add("rl:lock", 1, timeout=10) is True


def test_auth_2_set_get_touch_and_values_round_trip(db_cache, time_machine):
    time_machine.move_to("2026-11-22 10:00:00+08:00", tick=False)
    history = [1763776800.25, 1763776790.5]
    db_cache.set("allauth:rl:login", history, timeout=60)
    assert db_cache.get("allauth:rl:login") == history
    db_cache.set("allauth:rl:login", [], timeout=60)  # overwrite
    assert db_cache.get("allauth:rl:login") == []
    assert db_cache.touch("allauth:rl:login", timeout=600) is True
    time_machine.move_to("2026-11-22 10:05:00+08:00", tick=False)
    assert db_cache.get("allauth:rl:login") == []  # touched: still live after 60 s
    assert db_cache.touch("missing", timeout=60) is False
    db_cache.set("forever", "x", timeout=None)
    assert db_cache.get("forever") == "x"
    assert _rows() == 2


def test_auth_2_each_write_is_one_statement(db_cache):
    db_cache.add("warm", 1)  # the first write of a process may count the table
    with CaptureQueriesContext(connection) as captured:
        db_cache.add("k:lock", True, timeout=10)
        db_cache.set("k", [1.0], timeout=60)
        db_cache.get("k")
        db_cache.delete("k:lock")
    assert len(captured.captured_queries) == 4, [q["sql"] for q in captured.captured_queries]


def test_auth_2_a_failed_write_inside_a_transaction_leaves_it_usable(db_cache):
    from patron.members.models import User

    broken = DatabaseCache("no_such_cache_table", {})  # every write fails
    with transaction.atomic():
        User.objects.create(username="kept")
        broken.set("k", 1)  # a miss, not an error
        assert broken.add("k", 1) is False
        # On PostgreSQL a failed statement would abort the whole transaction without the
        # savepoint the backend takes inside one.
        assert User.objects.filter(username="kept").exists()
    assert User.objects.filter(username="kept").exists()
    assert db_cache.add("k", 1) is True  # and outside a transaction nothing is left open


def test_auth_2_culling_drops_expired_entries_first(settings, transactional_db, time_machine):
    settings.CACHES = _settings(MAX_ENTRIES=3, CULL_FREQUENCY=2, CULL_CHECK_EVERY=1)
    call_command("createcachetable", verbosity=0)
    cache = caches.create_connection("default")
    try:
        time_machine.move_to("2026-11-22 10:00:00+08:00", tick=False)
        cache.set("stale-1", 1, timeout=60)
        cache.set("stale-2", 1, timeout=60)
        cache.set("live-counter", 5, timeout=3600)
        cache.set("live-2", 5, timeout=3600)
        time_machine.move_to("2026-11-22 10:05:00+08:00", tick=False)
        cache.set("new", 1, timeout=60)  # over MAX_ENTRIES: the expired rows go
        assert cache.get("live-counter") == 5
        assert cache.get("live-2") == 5
        assert cache.get("new") == 1
        assert _rows() == 3
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {TABLE}")


def test_auth_2_parallel_adds_of_one_lock_have_exactly_one_winner(db_cache):
    size = 4
    barrier = threading.Barrier(size)
    results: list = [None] * size

    def run(index: int) -> None:
        try:
            cache = caches.create_connection("default")
            barrier.wait()
            results[index] = cache.add("allauth:rl:race:lock", index, timeout=10)
        except Exception as exc:  # the test inspects what each thread ended with
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [False, False, False, True], results
    winner = results.index(True)
    assert db_cache.get("allauth:rl:race:lock") == winner


def _persistence() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = %s", [TABLE])
        return cursor.fetchone()[0]


def test_auth_2_cache_table_is_unlogged_on_postgresql_only(db_cache):
    if connection.vendor != "postgresql":
        assert make_unlogged() is False
        return
    # The fixture made the table with createcachetable (logged, or left as migrate made it,
    # depending on which test ran first): start from a logged table either way.
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{TABLE}" SET LOGGED')
    assert _persistence() == "p"
    assert make_unlogged() is True
    assert _persistence() == "u"
    assert make_unlogged() is False  # idempotent
    db_cache.set("still", "works")
    assert db_cache.get("still") == "works"


def test_auth_2_every_migrate_leaves_the_cache_table_unlogged(db_cache):
    """The post-migrate receiver (patron.core.signals): the table exists and, on
    PostgreSQL, is unlogged, whatever state it was in before."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{TABLE}" SET LOGGED')
    _create_cache_table(sender=apps.get_app_config("core"), using="default")
    if connection.vendor == "postgresql":
        assert _persistence() == "u"
    db_cache.set("after", "migrate")
    assert db_cache.get("after") == "migrate"
