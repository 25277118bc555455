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


@pytest.fixture
def wrapper(tmp_path):
    settings = ConnectionHandler({"default": sqlite_database(tmp_path / "q.sqlite3")}).settings[
        "default"
    ]
    assert settings["ENGINE"] == "patron.core.db.sqlite3"
    connection = DatabaseWrapper(settings, alias="q")
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
