"""SQLite write transactions queue on a file lock beside the database
(``patron.core.db.sqlite3``), taken at ``BEGIN IMMEDIATE`` and given back at commit, at
rollback and when the connection closes. The test opens a database of its own, so it runs
the same whichever database the suite is on (OPS-4)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from django.db.utils import ConnectionHandler

from config.env import sqlite_database
from patron.core.db.sqlite3 import base as sqlite_base
from patron.core.db.sqlite3.base import DatabaseWrapper

pytestmark = pytest.mark.django_db  # lets the test open a connection (its own database)


def _queue_is_taken(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing gives back a lock this probe took
    return False


def _wrapper(database: dict, alias: str) -> DatabaseWrapper:
    """A connection to ``database`` (as ``sqlite_database`` describes it), settings completed
    as Django completes them."""
    settings = ConnectionHandler({"default": database}).settings["default"]
    assert settings["ENGINE"] == "patron.core.db.sqlite3"
    return DatabaseWrapper(settings, alias=alias)


@pytest.fixture
def wrapper(tmp_path):
    connection = _wrapper(sqlite_database(tmp_path / "q.sqlite3"), "q")
    yield connection
    connection.close()


def begin(connection: DatabaseWrapper) -> None:
    connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def test_ops_4_a_write_transaction_holds_the_queue_until_commit(wrapper, tmp_path):
    queue = tmp_path / "q.sqlite3-writers.lock"
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")
    assert not _queue_is_taken(queue)  # autocommit statements do not queue
    begin(wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
    assert _queue_is_taken(queue)
    wrapper.commit()
    wrapper.set_autocommit(True)
    assert not _queue_is_taken(queue)


def test_ops_4_rollback_and_close_give_the_queue_back(wrapper, tmp_path):
    queue = tmp_path / "q.sqlite3-writers.lock"
    begin(wrapper)
    assert _queue_is_taken(queue)
    wrapper.rollback()
    wrapper.set_autocommit(True)
    assert not _queue_is_taken(queue)
    begin(wrapper)
    assert _queue_is_taken(queue)
    wrapper.close()
    assert not _queue_is_taken(queue)
    with wrapper.cursor() as cursor:  # reconnects and works as before
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def _fill(connection: DatabaseWrapper, rows: int) -> None:
    """One write transaction of about ``rows`` pages (a 3 KB row per 4 KB page)."""
    begin(connection)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS big (b BLOB)")
        cursor.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)"
            " INSERT INTO big SELECT randomblob(3000) FROM n",
            [rows],
        )
    connection.commit()
    connection.set_autocommit(True)


def test_ops_4_frames_waiting_reads_what_sqlite_counts(wrapper, tmp_path):
    """The WAL index's counters as SQLite itself reports them (``wal_checkpoint`` answers
    busy, frames in the log, frames copied)."""
    import sqlite3

    _fill(wrapper, 20)
    waiting = wrapper._frames_waiting()
    assert 20 <= waiting < sqlite_base.CHECKPOINT_FRAMES
    other = sqlite3.connect(tmp_path / "q.sqlite3")
    try:
        busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        other.close()
    assert (busy, log, copied) == (0, waiting, waiting)
    assert wrapper._frames_waiting() == 0


def test_ops_4_a_big_commit_is_checkpointed_after_the_queue_is_free(wrapper, tmp_path):
    """A commit leaving CHECKPOINT_FRAMES or more frames in the WAL copies them into the
    database before it returns, but only once the queue is free for the next writer: SQLite's
    own checkpoint (at AUTOCHECKPOINT_FRAMES) would run with the queue held."""
    queue = tmp_path / "q.sqlite3-writers.lock"
    wrapper.ensure_connection()
    (autocheckpoint,) = wrapper.connection.execute("PRAGMA wal_autocheckpoint").fetchone()
    assert autocheckpoint == sqlite_base.AUTOCHECKPOINT_FRAMES
    queued_at_checkpoint = []

    def trace(statement: str) -> None:
        if "wal_checkpoint" in statement:
            queued_at_checkpoint.append(_queue_is_taken(queue))

    wrapper.connection.set_trace_callback(trace)
    _fill(wrapper, 100)  # below the threshold: no checkpoint
    assert queued_at_checkpoint == []
    assert wrapper._frames_waiting() >= 100
    # Enough for our threshold, not for SQLite's own.
    _fill(wrapper, sqlite_base.CHECKPOINT_FRAMES + 200)
    assert queued_at_checkpoint == [False]
    assert wrapper._frames_waiting() == 0


def test_ops_4_each_connection_gets_the_configured_page_cache(tmp_path, monkeypatch):
    """``PATRON_SQLITE_CACHE_MB`` sets every connection's page cache (SQLite's default is
    2 MB); a value below 1 is refused at start-up, before any connection opens."""
    from django.core.exceptions import ImproperlyConfigured

    def cache_of(database: dict) -> int:
        connection = _wrapper(database, "c")
        try:
            connection.ensure_connection()
            return connection.connection.execute("PRAGMA cache_size").fetchone()[0]
        finally:
            connection.close()

    monkeypatch.delenv("PATRON_SQLITE_CACHE_MB", raising=False)
    assert cache_of(sqlite_database(tmp_path / "a.sqlite3")) == -64 * 1024  # KiB when negative
    monkeypatch.setenv("PATRON_SQLITE_CACHE_MB", "16")
    assert cache_of(sqlite_database(tmp_path / "b.sqlite3")) == -16 * 1024
    monkeypatch.setenv("PATRON_SQLITE_CACHE_MB", "0")
    with pytest.raises(ImproperlyConfigured, match="SQLITE_CACHE_MB"):
        sqlite_database(tmp_path / "c.sqlite3")
    assert not (tmp_path / "c.sqlite3").exists()


def test_ops_4_a_checkpoint_that_fails_does_not_fail_the_commit(wrapper, tmp_path, caplog):
    """The checkpoint runs after the commit: if reading the WAL index fails (here its file
    descriptor is gone), the commit stands, is visible to others, and a warning is logged."""
    import sqlite3

    _fill(wrapper, 10)
    assert wrapper._frames_waiting() > 0  # the WAL index is open
    os.close(wrapper._index_fd)  # an OS failure, as a broken mount would give
    try:
        with caplog.at_level("WARNING", logger="patron.core.db.sqlite3.base"):
            _fill(wrapper, sqlite_base.CHECKPOINT_FRAMES + 10)
    finally:
        wrapper._index_fd = None  # already closed
    assert "sqlite_checkpoint_failed" in caplog.text
    other = sqlite3.connect(tmp_path / "q.sqlite3")
    try:
        assert other.execute("SELECT COUNT(*) FROM big").fetchone() == (
            sqlite_base.CHECKPOINT_FRAMES + 20,
        )
    finally:
        other.close()
    assert not _queue_is_taken(tmp_path / "q.sqlite3-writers.lock")
