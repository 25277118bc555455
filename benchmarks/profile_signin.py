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


class Stopwatch:
    """Clocks named groups of calls, wall and this thread's CPU.

    Time is *exclusive*: a clocked call inside another (SQL inside the session
    bookkeeping, say) counts for the inner group only, so the groups never overlap and the
    rest of a sign-in is its total minus their sum. A group re-entered is clocked once,
    and everything inside an absorbing group (the cache) is that group's.
    """

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}  # name -> [wall, cpu, calls]
        self.stack: list[list] = []  # [name, children's wall, children's cpu]
        self.patched: list[tuple[object, str, object]] = []

    # Groups whose inner calls stay theirs: a database cache's SQL is cache time.
    ABSORBING = frozenset({"cache", "argon2"})

    def _clock(self, name: str, call):  # type: ignore[no-untyped-def]
        if any(frame[0] == name or frame[0] in self.ABSORBING for frame in self.stack):
            return call()
        frame = [name, 0.0, 0.0]
        self.stack.append(frame)
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            return call()
        finally:
            wall = time.perf_counter() - began
            cpu = time.thread_time() - began_cpu
            self.stack.pop()
            total = self.totals.setdefault(name, [0.0, 0.0, 0])
            total[0] += wall - frame[1]
            total[1] += cpu - frame[2]
            total[2] += 1
            if self.stack:
                self.stack[-1][1] += wall
                self.stack[-1][2] += cpu

    def wrap(self, owner: object, attribute: str, name: str) -> None:
        """Clock ``owner.attribute`` (a class's method or a module's function)."""
        original = getattr(owner, attribute, None)
        if original is None:
            return
        own = attribute in vars(owner)  # inherited methods are removed again, not reset
        clock = self._clock

        def clocked(*args, **kwargs):  # type: ignore[no-untyped-def]
            return clock(name, lambda: original(*args, **kwargs))

        self.patched.append((owner, attribute, vars(owner)[attribute] if own else None))
        setattr(owner, attribute, clocked)

    def unwrap_all(self) -> None:
        for owner, attribute, original in reversed(self.patched):
            if original is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)
        self.patched.clear()

    def sql_wrapper(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        return self._clock("sql", lambda: execute(sql, params, many, context))

    def per_call(self, count: int) -> dict[str, dict[str, float]]:
        return {
            name: {
                "wall_ms": wall * 1000 / count,
                "cpu_ms": cpu * 1000 / count,
                "calls": calls / count,
            }
            for name, (wall, cpu, calls) in self.totals.items()
        } | {
            name: {"wall_ms": 0.0, "cpu_ms": 0.0, "calls": 0.0}
            for name in ("argon2", "sql", "cache", "usersessions", "record_sign_in")
            if name not in self.totals
        }


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
    parser.add_argument(
        "--breakdown-only",
        action="store_true",
        help="only the clocked breakdown (step 1), on `--count` members before `--skip`",
    )
    parser.add_argument("--skip", type=int, default=0, help="members at the end to leave out")
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
    total = len(usernames) - args.skip
    count = max(1, min(args.count, (total - 12) // 2))
    sample = min(10, count)
    first_pass = range(total - count, total)
    second_pass = range(total - count - sample, total - count)
    third_pass = range(total - 2 * count - sample, total - count - sample)
    growth_member = total - 2 * count - sample - 1
    client = Client()
    _sign_in(client, usernames[growth_member - 1], password, growth_member - 1)  # warm up

    # 1. Wall and CPU time per sign-in, and how much of it goes to argon2, to SQL, to the
    # cache and to allauth's session bookkeeping, each clocked around the calls themselves
    # (two clock reads per call), not inferred from a profile.
    watch = Stopwatch()
    import argon2
    from allauth.usersessions.models import UserSessionManager
    from django.core.cache import caches

    from patron.members.services import signin as signin_service

    watch.wrap(argon2.PasswordHasher, "verify", "argon2")
    backend = type(caches["default"])  # the class itself, not the module-level proxy
    for method in ("get", "set", "add", "delete", "incr", "decr", "touch", "has_key"):
        watch.wrap(backend, method, "cache")
    for method in ("get_many", "set_many", "delete_many", "get_or_set"):
        watch.wrap(backend, method, "cache")
    watch.wrap(UserSessionManager, "purge_and_list", "usersessions")
    watch.wrap(UserSessionManager, "create_from_request", "usersessions")
    watch.wrap(signin_service, "record_sign_in", "record_sign_in")
    statuses: Counter = Counter()
    # CPU time of this thread as well as wall time: other work on the machine stretches
    # the wall clock, not the CPU this process spends (the database server's own CPU,
    # on PostgreSQL, is not in it).
    with connection.execute_wrapper(watch.sql_wrapper):
        started, started_cpu = time.perf_counter(), time.thread_time()
        for n in first_pass:
            statuses[_sign_in(client, usernames[n], password, n)] += 1
        wall_ms = (time.perf_counter() - started) * 1000 / count
        cpu_ms = (time.thread_time() - started_cpu) * 1000 / count
    watch.unwrap_all()
    parts = watch.per_call(count)
    argon2_ms = parts["argon2"]["wall_ms"]
    argon2_cpu_ms = parts["argon2"]["cpu_ms"]

    if args.breakdown_only:
        args.out.write_text(
            json.dumps(
                {
                    "count": count,
                    "statuses": {str(k): v for k, v in statuses.items()},
                    "wall_ms_per_sign_in": wall_ms,
                    "cpu_ms_per_sign_in": cpu_ms,
                    "parts": parts,
                    "cache_backend": f"{backend.__module__}.{backend.__name__}",
                }
            )
        )
        return

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
    # Skip the chain of middleware and view wrappers that each hold the whole request,
    # and the chain down to argon2: what is left are the other steps that cost something.
    ceiling = 0.9 * by_group["argon2"] if by_group["argon2"] else 0.6 * total
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
                "cpu_ms_per_sign_in": cpu_ms,
                "argon2_cpu_ms_per_sign_in": argon2_cpu_ms,
                "parts": parts,
                "cache_backend": f"{backend.__module__}.{backend.__name__}",
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
