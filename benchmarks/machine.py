"""Facts about the machine a benchmark ran on, for the report."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os() -> str:
    pretty = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{pretty or platform.system()} (kernel {platform.release()})"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def postgres_version(admin_url: str) -> str:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except Exception as exc:  # any failure just means "not reachable" in the report
        return f"not reachable ({type(exc).__name__})"


def facts(admin_url: str) -> dict[str, str]:
    return {
        "CPU": _cpu_model(),
        "Cores": str(cores()),
        "RAM": _ram(),
        "OS": _os(),
        "Python": sys.version.split()[0],
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres_version(admin_url),
        "Django": _version("django"),
        "django-allauth": _version("django-allauth"),
        "django-ninja": _version("django-ninja"),
        "gunicorn": _version("gunicorn"),
        "argon2-cffi": _version("argon2-cffi"),
        "psycopg": _version("psycopg"),
    }
