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
    # Each pass takes its own members from the end of the list: those signed in once (over
    # HTTP, as new devices) and not again by the steady-state run, so every pass measures
    # the same thing, a known device holding one earlier session; none sees the sessions
    # an earlier pass added.
    total = len(usernames)
    count = max(1, min(args.count, (total - 12) // 2))
    sample = min(10, count)
    first_pass = range(total - count, total)
    second_pass = range(total - count - sample, total - count)
    third_pass = range(total - 2 * count - sample, total - count - sample)
    growth_member = total - 2 * count - sample - 1
    client = Client()
    _sign_in(client, usernames[growth_member - 1], password, growth_member - 1)  # warm up

    # 1. Wall time (members 0..count-1 signed in before, over HTTP: known devices), with
    # the time spent inside argon2 clocked exactly (two clock reads around each call), so
    # "everything else" does not depend on a separately measured hash rate.
    import argon2

    original_verify = argon2.PasswordHasher.verify
    in_argon2 = 0.0

    def timed_verify(self, hash, password):  # type: ignore[no-untyped-def]
        nonlocal in_argon2
        began = time.perf_counter()
        try:
            return original_verify(self, hash, password)
        finally:
            in_argon2 += time.perf_counter() - began

    argon2.PasswordHasher.verify = timed_verify  # type: ignore[method-assign]
    statuses: Counter = Counter()
    started = time.perf_counter()
    for n in first_pass:
        statuses[_sign_in(client, usernames[n], password, n)] += 1
    wall_ms = (time.perf_counter() - started) * 1000 / count
    argon2_ms = in_argon2 * 1000 / count
    argon2.PasswordHasher.verify = original_verify  # type: ignore[method-assign]

    # 2. SQL per sign-in.
    per_statement: Counter = Counter()
    with CaptureQueriesContext(connection) as captured:
        for n in second_pass:
            _sign_in(client, usernames[n], password, n)
    for query in captured.captured_queries:
        per_statement[_statement(query["sql"])] += 1
    queries_per_sign_in = len(captured.captured_queries) / sample

    # 3. cProfile.
    profiler = cProfile.Profile()
    profiler.enable()
    for n in third_pass:
        _sign_in(client, usernames[n], password, n)
    profiler.disable()

    # 4. How a member's sign-in grows with the sessions they hold: one member signs in
    # again and again without signing out (as an app that never reuses its token would).
    growth = []
    member = growth_member
    for _ in range(8):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            _sign_in(client, usernames[member], password, member)
            elapsed = (time.perf_counter() - began) * 1000
        growth.append({"queries": len(captured.captured_queries), "ms": round(elapsed, 1)})
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
    measured = [usernames[n] for n in first_pass]
    sessions = user_session.objects.filter(user__username__in=measured)
    sessions_per_member = sessions.count() / len(measured)

    root = str(Path(__file__).resolve().parent.parent)
    args.out.write_text(
        json.dumps(
            {
                "count": count,
                "statuses": {str(k): v for k, v in statuses.items()},
                "wall_ms_per_sign_in": wall_ms,
                "argon2_ms_per_sign_in": argon2_ms,
                "queries_per_sign_in": queries_per_sign_in,
                "sessions_per_member": sessions_per_member,
                "growth": growth,
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
