"""Typed readers for PATRON_* environment variables.

Every setting Patron reads comes through here so that a missing or malformed value fails
loudly at start-up with the variable's name, never later inside a request.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

PREFIX = "PATRON_"


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{PREFIX}{name} must be a boolean (1/0), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str, base_dir: Path) -> dict:
    """Translate a database URL (sqlite:///path or postgres://user@host:port/name)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        raw_path = unquote(parsed.path)
        # sqlite:///relative/path and sqlite:////absolute/path, as most tools read them.
        path = Path(raw_path[1:])
        if not path.is_absolute():
            path = base_dir / path
        return sqlite_database(path)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "patron",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"{PREFIX}DATABASE_URL scheme {parsed.scheme!r} is not supported (sqlite or postgres)"
    )


def _sqlite_cache_mb() -> int:
    megabytes = env_int("SQLITE_CACHE_MB", 64)
    if megabytes < 1:
        raise ImproperlyConfigured(f"{PREFIX}SQLITE_CACHE_MB must be at least 1, got {megabytes}")
    return megabytes


def sqlite_database(path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "patron.core.db.sqlite3",  # writers queue on a file lock
        "NAME": str(path),
        # Persistent connections, as on PostgreSQL: a new one per request re-runs the PRAGMAs.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
        "OPTIONS": {
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of
            # failing with "database is locked" halfway through a transaction.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            # cache_size: SQLite's default page cache is 2 MB per connection, so inserts
            # into a big table's indexes (random members) read their pages back from the
            # OS again and again; 64 MB made 1,000-order batches 10% faster over HTTP
            # (docs/scaling.md).
            "init_command": (
                "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=ON;PRAGMA busy_timeout=20000;"
                f"PRAGMA cache_size=-{1024 * _sqlite_cache_mb()};"
            ),
        },
        "TEST": {"NAME": str(path.with_name(path.stem + "-test.sqlite3"))},
    }


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_secrets(var_dir: Path, debug: bool) -> dict[str, str]:
    """Secret key, field keys and blind-index key.

    Production (PATRON_DEBUG=0) must be given all three in the environment. Development
    generates them once into var/secrets.json (git-ignored) so data written by one run can
    be read by the next.
    """
    given = {
        "SECRET_KEY": env_str("SECRET_KEY"),
        "FIELD_KEYS": env_str("FIELD_KEYS"),
        "BLIND_INDEX_KEY": env_str("BLIND_INDEX_KEY"),
    }
    if all(given.values()):
        return given  # type: ignore[return-value]
    if not debug:
        missing = ", ".join(PREFIX + name for name, value in given.items() if not value)
        raise ImproperlyConfigured(f"Production mode needs {missing} (see .env.example)")
    path = var_dir / "secrets.json"
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        var_dir.mkdir(parents=True, exist_ok=True)
        stored = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_KEYS": f"k1:{_new_key()}",
            "BLIND_INDEX_KEY": _new_key(),
        }
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        print(f"patron: generated development keys in {path}", file=sys.stderr)
    return {name: value or stored[name] for name, value in given.items()}
