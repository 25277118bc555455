"""SQLite with writers queued across processes: ``ENGINE = "patron.core.db.sqlite3"``."""
