"""Where a sign-in's time goes besides argon2: ``python -m benchmarks.profile_signin``.

Signs the loaded members in through the real headless endpoint in-process (Django's test
client: the whole middleware stack and view, no network), then:
1. the wall time per sign-in, without instrumentation;
2. the SQL statements one sign-in runs, grouped by kind and table;
3. a cProfile of the same sign-ins, its time grouped by package and the costliest
   functions outside argon2.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import time
from collections import Counter
from pathlib import Path

import django

from benchmarks.loadgen import loopback_address

LOGIN_PATH = "/api/auth/app/v1/auth/login"
USER_AGENT = "patron-bench/1 (member {n})"

_GROUPS = [
    ("argon2", ("argon2",)),
    ("SQL driver and waiting for the database", ("sqlite3", "psycopg")),
    ("Django ORM/db", ("django/db",)),
    ("allauth", ("allauth",)),
    ("Patron code", ("/patron/",)),
    ("Django other", ("django",)),
]


def _group(filename: str, function: str) -> str:
    # C functions have no file; argon2's show up by name (cffi bindings).
    where = function if filename == "~" else filename
    for name, needles in _GROUPS:
        if any(needle in where for needle in needles):
            return name
    return "other (stdlib, json, pydantic...)"


def _sign_in(client, username: str, password: str, n: int) -> int:  # type: ignore[no-untyped-def]
    # One client (so one middleware chain, as in a server process); no cookie carried over
    # from the previous member.
    client.cookies.clear()
    response = client.post(
        LOGIN_PATH,
        json.dumps({"username": username, "password": password}),
        content_type="application/json",
        REMOTE_ADDR=loopback_address(n),
        HTTP_USER_AGENT=USER_AGENT.format(n=n),
    )
    return response.status_code


def _statement(sql: str) -> str:
    sql = sql.strip()
    verb = sql.split(None, 1)[0].upper() if sql else "?"
    match = re.search(r'(?:FROM|INTO|UPDATE)\s+"?([\w.]+)"?', sql, re.IGNORECASE)
    if verb in {"SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"}:
        return verb
    return f"{verb} {match.group(1) if match else ''}".strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--count", type=int, default=80)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    data = json.loads(args.data.read_text())
    usernames = data["signin_usernames"]
    password = data["password"]
    count = min(args.count, len(usernames))
    client = Client()
    _sign_in(client, usernames[0], password, 0)  # load the middleware chain once

    # 1. Plain wall time (members 0..count-1 signed in before, over HTTP: known devices).
    statuses: Counter = Counter()
    started = time.perf_counter()
    for n in range(count):
        statuses[_sign_in(client, usernames[n], password, n)] += 1
    wall_ms = (time.perf_counter() - started) * 1000 / count

    # 2. SQL per sign-in.
    per_statement: Counter = Counter()
    sample = min(10, count)
    with CaptureQueriesContext(connection) as captured:
        for n in range(sample):
            _sign_in(client, usernames[n], password, n)
    for query in captured.captured_queries:
        per_statement[_statement(query["sql"])] += 1
    queries_per_sign_in = len(captured.captured_queries) / sample

    # 3. cProfile.
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(count):
        _sign_in(client, usernames[n], password, n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = 0.0
    by_group: Counter = Counter()
    functions = []
    for (filename, line, name), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        by_group[_group(filename, name)] += tottime
        functions.append((cumtime, tottime, filename, line, name))
    # Skip the chain of middleware and view wrappers that each hold the whole request:
    # below 60% of a sign-in, what is left are the steps that cost something.
    ceiling = 0.6 * total
    interesting = [
        f
        for f in sorted(functions, reverse=True)
        if ("/patron/" in f[2] or "allauth" in f[2] or "django/contrib" in f[2]) and f[0] < ceiling
    ][:20]
    from django.apps import apps

    user_session = apps.get_model("usersessions", "UserSession")
    signed = user_session.objects.values("user_id").distinct().count()
    sessions_per_member = user_session.objects.count() / signed if signed else 0.0

    root = str(Path(__file__).resolve().parent.parent)
    args.out.write_text(
        json.dumps(
            {
                "count": count,
                "statuses": {str(k): v for k, v in statuses.items()},
                "wall_ms_per_sign_in": wall_ms,
                "queries_per_sign_in": queries_per_sign_in,
                "sessions_per_member": sessions_per_member,
                "statements": {k: round(v / sample, 2) for k, v in per_statement.most_common()},
                "profile_ms_per_sign_in": {
                    k: round(v * 1000 / count, 2) for k, v in by_group.most_common()
                },
                "profile_total_ms_per_sign_in": total * 1000 / count,
                "top_functions": [
                    {
                        "function": f"{fn.replace(root, '').split('site-packages/')[-1]}:{line}"
                        f" {name}",
                        "cumulative_ms_per_sign_in": round(cum * 1000 / count, 2),
                        "own_ms_per_sign_in": round(own * 1000 / count, 2),
                    }
                    for cum, own, fn, line, name in interesting
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
