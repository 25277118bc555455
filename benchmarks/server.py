"""Fresh benchmark databases and a gunicorn server on a free loopback port."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Target:
    """One database the benchmark runs against."""

    name: str  # "sqlite" or "postgresql"
    url: str
    var_dir: Path

    @property
    def label(self) -> str:
        return "SQLite" if self.name == "sqlite" else "PostgreSQL"


def sqlite_target(var_root: Path) -> Target:
    var_dir = var_root / "sqlite"
    return Target("sqlite", f"sqlite:///{var_dir / 'bench.sqlite3'}", var_dir)


def postgres_target(url: str, var_root: Path) -> Target:
    return Target("postgresql", url, var_root / "postgresql")


def admin_url(url: str) -> str:
    """The same server's maintenance database, to drop and create the benchmark one."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/postgres"))


def prepare_database(target: Target) -> None:
    """Start from nothing: remove the SQLite file or drop and create the PostgreSQL db."""
    target.var_dir.mkdir(parents=True, exist_ok=True)
    if target.name == "sqlite":
        for path in target.var_dir.glob("bench.sqlite3*"):
            path.unlink()
        return
    import psycopg

    name = urlparse(target.url).path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unexpected benchmark database name {name!r}")
    with psycopg.connect(admin_url(target.url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def run_keys() -> dict[str, str]:
    """Fresh production-style keys for one benchmark run (never the development ones)."""
    return {
        "PATRON_SECRET_KEY": secrets.token_urlsafe(50),
        "PATRON_FIELD_KEYS": f"k1:{_key()}",
        "PATRON_BLIND_INDEX_KEY": _key(),
    }


def django_env(target: Target, keys: dict[str, str]) -> dict[str, str]:
    """Production mode (PATRON_DEBUG=0), not test mode: the database task backend, real
    settings, no test-only shortcuts."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PATRON_") or k == "DJANGO_SETTINGS_MODULE")
    }
    env.update(keys)
    env.update(
        {
            "PATRON_DEBUG": "0",
            "PATRON_DATABASE_URL": target.url,
            "PATRON_VAR_DIR": str(target.var_dir),
            "PATRON_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "PATRON_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python_module(
    env: dict[str, str], module: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{completed.stderr[-4000:]}")
    return completed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def gunicorn(env: dict[str, str], workers: int, log_path: Path) -> Iterator[int]:
    """Serve config.wsgi with ``workers`` sync workers on 127.0.0.1; yield the port."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--backlog",
                "2048",
                "--timeout",
                "120",
                "--graceful-timeout",
                "10",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not _ready(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not become ready; see {log_path}")
                # Wait on the process, not the clock: returns at once if gunicorn dies.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.3)
            yield port
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
