"""``make bench``: measure and write docs/benchmarks.md.

Two parts: ``members`` (issue 2, below) and ``loyalty`` (issue 3: order events, tier
evaluation, points expiry; see benchmarks/loyalty.py). ``make bench`` runs both and
rewrites the file; ``make bench BENCH=members`` or ``BENCH=loyalty`` runs one part and
keeps the other part's section from its last run.

The members part: 1. the raw argon2id rate at Patron's hasher parameters, one process per core;
then, on a fresh SQLite database and a fresh PostgreSQL database in turn (migrated, with
100,000 members bulk-loaded), against gunicorn (sync workers = cores, persistent database
connections) on a free 127.0.0.1 port:
2. sign-in throughput through the allauth headless login, compared with (1);
3. registration throughput through ``POST /api/v1/members`` with an API key;
4. exact lookup by phone, ``GET /api/v1/members?phone=`` over HTTP and the selector
   ``member_by_phone`` in-process, p50/p99;
and a profile of where a sign-in's time goes besides argon2.

The server runs in production mode (``PATRON_DEBUG=0``, fresh keys, the database task
backend with no worker running, so notices are queued as they would be in a request).
Traffic goes to 127.0.0.1 only; every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks import hashrate, loadgen, loyalty, machine, server
from benchmarks.loadgen import Request, loopback_address

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
LOGIN_PATH = "/api/auth/app/v1/auth/login"
MEMBERS_PATH = "/api/v1/members"
SIGNIN_TARGET = 0.85
LOOKUP_P99_TARGET_MS = 5.0
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/patron_bench"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _login_request(username: str, password: str, n: int) -> Request:
    return Request(
        "POST",
        LOGIN_PATH,
        json.dumps({"username": username, "password": password}).encode(),
        {"Content-Type": "application/json", "User-Agent": f"patron-bench/1 (member {n})"},
        # One stable address per member: per-IP rate limits see many clients, and a
        # member's repeat sign-ins come from a device it has used before.
        source_ip=loopback_address(n),
    )


def _load_summary(result: loadgen.Result) -> dict[str, Any]:
    return {
        "sent": result.sent,
        "ok": result.ok,
        "seconds": round(result.elapsed, 2),
        "per_second": round(result.ok_per_second, 2),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": result.errors,
        "p50_ms": round(result.percentile(50), 2) if result.latencies_ms else None,
        "p99_ms": round(result.percentile(99), 2) if result.latencies_ms else None,
        "samples": result.samples,
    }


def bench_sign_in(
    port: int, data: dict, concurrency: int, seconds: float, reserve: int
) -> dict[str, Any]:
    usernames, password = data["signin_usernames"], data["password"]
    first = [_login_request(u, password, n) for n, u in enumerate(usernames)]
    log(f"sign-in: first sign-in of {len(first)} members (new devices; also the warm-up)")
    first_result = loadgen.run(
        "127.0.0.1", port, first, concurrency=concurrency, max_seconds=max(90, seconds * 3)
    )
    log(f"  {first_result.ok_per_second:.1f}/s, statuses {dict(first_result.statuses)}")
    # Steady state: known members signing in again, cycling through them; bounded by a
    # generous count and by time. The last `reserve` members are left out: the in-process
    # profile signs them in afterwards, each holding exactly one earlier session.
    pool = first[: max(1, len(first) - reserve)]
    bound = int(seconds * 200)
    repeat = [pool[n % len(pool)] for n in range(bound)]
    log(f"sign-in: steady state for {seconds:.0f} s at concurrency {concurrency}")
    steady = loadgen.run("127.0.0.1", port, repeat, concurrency=concurrency, max_seconds=seconds)
    log(f"  {steady.ok_per_second:.1f}/s, statuses {dict(steady.statuses)}")
    return {"first": _load_summary(first_result), "steady": _load_summary(steady)}


def bench_registration(
    port: int, data: dict, concurrency: int, seconds: float, run_id: str
) -> dict[str, Any]:
    bound = int(seconds * 200)
    requests = []
    for n in range(bound):
        body = {
            "kind": "individual",
            "username": f"r{run_id}{n:05d}",
            "password": f"Reg-{secrets.token_hex(8)}-bench",
            # +86139...: never one of the loaded members' +86138 numbers.
            "phone": f"+86139{int(run_id, 16) % 1000:03d}{n:05d}",
            "name": "注册测试",
            "birth_date": "1990-05-17",
            "accepted": data["accepted"],
        }
        requests.append(
            Request(
                "POST",
                MEMBERS_PATH,
                json.dumps(body).encode(),
                {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {data['api_key']}",
                    "Idempotency-Key": f"bench-{run_id}-{n}",
                    "User-Agent": "patron-bench/1",
                },
                source_ip=loopback_address(100_000 + n),
            )
        )
    log(f"registration: POST {MEMBERS_PATH} for {seconds:.0f} s at concurrency {concurrency}")
    result = loadgen.run("127.0.0.1", port, requests, concurrency=concurrency, max_seconds=seconds)
    log(f"  {result.ok_per_second:.1f}/s, statuses {dict(result.statuses)}")
    return _load_summary(result)


def bench_http_lookup(port: int, data: dict, count: int, seconds: float) -> dict[str, Any]:
    import random

    rng = random.Random(11)
    phones = rng.choices(data["phones"], k=count + 100)
    requests = [
        Request(
            "GET",
            f"{MEMBERS_PATH}?phone={quote(phone)}",
            None,
            {"Authorization": f"Bearer {data['api_key']}", "User-Agent": "patron-bench/1"},
        )
        for phone in phones
    ]
    loadgen.run("127.0.0.1", port, requests[:100], concurrency=1, max_seconds=30)  # warm up
    log(f"lookup: {count} sequential GET {MEMBERS_PATH}?phone=...")
    result = loadgen.run(
        "127.0.0.1", port, requests[100:], concurrency=1, max_seconds=seconds, ok_statuses=(200,)
    )
    summary = _load_summary(result)
    if result.latencies_ms:
        summary["p95_ms"] = round(result.percentile(95), 2)
        summary["max_ms"] = round(max(result.latencies_ms), 2)
    log(f"  p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, statuses {summary['statuses']}")
    return summary


def bench_database(target: server.Target, options: argparse.Namespace, cores: int) -> dict:
    results: dict[str, Any] = {"label": target.label}
    log(f"== {target.label}: fresh database, migrations")
    server.prepare_database(target)
    keys = server.run_keys()
    # Kept beside the benchmark data (git-ignored var/) so the loaded database can be
    # examined after the run with the same keys.
    keys_path = target.var_dir / "keys.json"
    keys_path.write_text(json.dumps(keys))
    keys_path.chmod(0o600)
    env = server.django_env(target, keys)
    started = time.perf_counter()
    server.manage(env, "migrate", "--noinput")
    results["migrate_seconds"] = round(time.perf_counter() - started, 1)

    log(f"{target.label}: bulk-loading {options.members:,} members")
    data_path = target.var_dir / "data.json"
    server.python_module(
        env,
        "benchmarks.load",
        "--members",
        str(options.members),
        "--signin",
        str(options.signin_members),
        "--out",
        str(data_path),
    )
    data = json.loads(data_path.read_text())
    results["load"] = {"members": data["members"], "seconds": round(data["seconds"], 1)}
    log(f"  {data['members']:,} members in {data['seconds']:.1f} s")

    concurrency = cores * 4
    run_id = secrets.token_hex(2)
    # Members the HTTP steady state leaves alone, for the in-process profile (see
    # profile_signin.py) and its runs with other cache backends.
    variant_count = max(5, options.profile_sign_ins // 2)
    profile_reserve = 2 * options.profile_sign_ins + 12 + 3 * variant_count
    with server.gunicorn(env, cores, target.var_dir / "gunicorn.log") as port:
        results["server"] = {"workers": cores, "concurrency": concurrency}
        # The ceiling again, right before the sign-ins and with the server idle: a machine
        # whose load changes during the run then still compares like with like.
        adjacent = hashrate.measure(cores, options.adjacent_hash_seconds)
        results["argon2_adjacent"] = round(adjacent.per_second, 2)
        log(f"argon2id right before the sign-ins: {adjacent.per_second:.1f}/s")
        for name, step in (
            (
                "sign_in",
                lambda: bench_sign_in(
                    port, data, concurrency, options.signin_seconds, profile_reserve
                ),
            ),
            (
                "registration",
                lambda: bench_registration(
                    port, data, concurrency, options.register_seconds, run_id
                ),
            ),
            (
                "lookup_http",
                lambda: bench_http_lookup(port, data, options.lookups, options.lookup_seconds),
            ),
        ):
            try:
                results[name] = step()
            except Exception as exc:
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}

    for name, module, extra in (
        ("lookup_selector", "benchmarks.lookup", ["--count", str(options.selector_lookups)]),
        ("profile", "benchmarks.profile_signin", ["--count", str(options.profile_sign_ins)]),
    ):
        out = target.var_dir / f"{name}.json"
        log(f"{target.label}: {module}")
        try:
            server.python_module(env, module, "--data", str(data_path), "--out", str(out), *extra)
            results[name] = json.loads(out.read_text())
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
            log(f"  failed: {results[name]['error'][:500]}")
    results["cache_variants"] = cache_variants(
        env, data_path, target, variant_count, skip=2 * options.profile_sign_ins + 12
    )
    if "selector" in results.get("lookup_selector", {}):
        sel = results["lookup_selector"]["selector"]
        log(f"  selector p50 {sel['p50_ms']:.3f} ms, p99 {sel['p99_ms']:.3f} ms")
    return results


def _redis_reachable() -> bool:
    import socket

    try:
        import redis  # noqa: F401  (Django's Redis cache needs the client library)
    except ImportError:
        return False
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def cache_variants(
    env: dict[str, str], data_path: Path, target: server.Target, count: int, skip: int
) -> list[dict]:
    """The sign-in breakdown again with other cache backends: what the shared cache costs."""
    variants = [
        (
            "per-process memory (LocMemCache: the floor, not shared)",
            {"PATRON_BENCH_CACHE": "locmem"},
        )
    ]
    db_cache = {"PATRON_BENCH_CACHE": "db"}
    try:
        server.manage({**env, **db_cache}, "createcachetable")
        variants.append(("the database (DatabaseCache, same database)", db_cache))
    except Exception as exc:
        log(f"  no database cache table: {exc}")
    if _redis_reachable():
        variants.append(
            (
                "Redis on 127.0.0.1:6379 (PATRON_CACHE_URL)",
                {
                    "PATRON_CACHE_URL": "redis://127.0.0.1:6379/0",
                    "PATRON_BENCH_CACHE_PREFIX": f"patron-bench-{secrets.token_hex(4)}",
                },
            )
        )
    found = []
    for number, (label, extra) in enumerate(variants):
        out = target.var_dir / f"cache_variant_{number}.json"
        log(f"{target.label}: sign-in breakdown with {label}")
        try:
            server.python_module(
                {**env, **extra},
                "benchmarks.profile_signin",
                "--data",
                str(data_path),
                "--out",
                str(out),
                "--breakdown-only",
                "--count",
                str(count),
                "--skip",
                str(skip + number * count),
            )
            found.append({"label": label, **json.loads(out.read_text())})
        except Exception as exc:
            found.append({"label": label, "error": f"{type(exc).__name__}: {str(exc)[-500:]}"})
    return found


# --- Report ------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**pass**" if ok else "**FAIL**")


def _figures(hash_rate: hashrate.HashRate, runs: dict[str, dict]) -> list[list[str]]:
    rows = [
        [
            f"Raw argon2id verifications/s, {hash_rate.processes} processes",
            "",
            f"{hash_rate.per_second:,.1f}/s ({hash_rate.per_second_one_core:,.1f}/s per core)",
            "the ceiling for sign-ins",
            "",
        ]
    ]
    for run in runs.values():
        label = run["label"]
        if "error" in run:
            rows.append([f"All figures on {label}", label, run["error"], "", _verdict(False)])
            continue
        steady = run.get("sign_in", {}).get("steady", {})
        first = run.get("sign_in", {}).get("first", {})
        ceiling = run.get("argon2_adjacent") or hash_rate.per_second
        rate = steady.get("per_second")
        ratio = rate / ceiling if rate else None
        rows.append(
            [
                "Sign-ins/s over HTTP (headless login, known device)",
                label,
                f"{_fmt(rate)}/s = {_fmt(ratio * 100 if ratio else None)}% of argon2 "
                f"({ceiling:,.1f}/s measured just before)"
                if rate
                else run.get("sign_in", {}).get("error", "n/a"),
                f">= {SIGNIN_TARGET:.0%} of the argon2 rate",
                _verdict(ratio >= SIGNIN_TARGET if ratio is not None else False),
            ]
        )
        if first.get("per_second"):
            first_ratio = first["per_second"] / ceiling
            rows.append(
                [
                    "First sign-ins/s (new device: device record + notice)",
                    label,
                    f"{_fmt(first['per_second'])}/s = {first_ratio:.0%} of argon2",
                    "(information)",
                    "",
                ]
            )
        reg = run.get("registration", {})
        rows.append(
            [
                "Registrations/s over HTTP (POST /api/v1/members)",
                label,
                f"{_fmt(reg.get('per_second'))}/s" if "error" not in reg else reg["error"],
                "(information)",
                "",
            ]
        )
        http = run.get("lookup_http", {})
        p99 = http.get("p99_ms")
        rows.append(
            [
                f"Lookup by phone over {run['load']['members']:,} members, HTTP "
                "GET /api/v1/members?phone= (p50 / p99)",
                label,
                f"{_fmt(http.get('p50_ms'), 2)} / {_fmt(p99, 2)} ms"
                if p99 is not None
                else http.get("error", f"no successful lookups ({http.get('statuses')})"),
                f"p99 < {LOOKUP_P99_TARGET_MS:g} ms",
                _verdict(p99 < LOOKUP_P99_TARGET_MS if p99 is not None else False),
            ]
        )
        sel = run.get("lookup_selector", {}).get("selector")
        rows.append(
            [
                "Lookup by phone, selector member_by_phone in-process (p50 / p99)",
                label,
                f"{sel['p50_ms']:.3f} / {sel['p99_ms']:.3f} ms"
                if sel
                else run.get("lookup_selector", {}).get("error", "n/a")[:200],
                f"p99 < {LOOKUP_P99_TARGET_MS:g} ms",
                _verdict(sel["p99_ms"] < LOOKUP_P99_TARGET_MS if sel else False),
            ]
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def render(
    facts: dict[str, str],
    hash_rate: hashrate.HashRate,
    runs: dict[str, dict],
    options: argparse.Namespace,
    started: dt.datetime,
    seconds: float,
) -> str:
    out = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {started:%Y-%m-%d %H:%M} (UTC{started:%z}) in "
        f"{seconds / 60:.1f} minutes. Every run overwrites this file; the figures below are "
        "from that one run on the machine described.",
        "",
        "## Machine",
        "",
        _table(["", ""], [[k, v] for k, v in facts.items()]),
        "",
        "## Figures",
        "",
        *_noise_warning(hash_rate, runs, facts),
        _table(["Figure", "Database", "Measured", "Target", "Result"], _figures(hash_rate, runs)),
        "",
        "## How it was measured",
        "",
        f"- **argon2id**: {hash_rate.parameters} (read from "
        "`patron.core.hashers.PatronArgon2PasswordHasher`); one process per core verifying "
        f"one hash in a loop for {hash_rate.seconds:.0f} s ({hash_rate.hashes:,} verifications).",
        f"- **Server**: gunicorn, {next(iter(runs.values())).get('server', {}).get('workers', '?')}"
        " sync workers (one per core) on a free 127.0.0.1 port, production settings "
        "(`PATRON_DEBUG=0`, fresh keys for the run, database task backend with no worker "
        "running, so notices are queued exactly as in a request), persistent database "
        "connections (`CONN_MAX_AGE=600`; `benchmarks/settings.py` adds it where "
        "`config.env` does not set it, i.e. SQLite). Each database is created fresh and "
        "migrated.",
        f"- **Data**: {options.members:,} members bulk-loaded set-based (`benchmarks/load.py`: "
        "`bulk_create` in batches of 2,000 with precomputed blind indexes and one "
        "precomputed password hash; encrypted fields are encrypted by their model field as "
        f"each batch is written). The first {options.signin_members} have accepted the "
        "current terms and privacy policy and sign in. The load ends with `VACUUM ANALYZE` "
        "(SQLite: `ANALYZE`), as any bulk load should, so that autovacuum does not run "
        "during the measurements.",
        "- **Load generator**: Python threads on the same machine, "
        f"{next(iter(runs.values())).get('server', {}).get('concurrency', '?')} concurrent "
        "connections, a new connection per request (sync workers close it), each member "
        "from its own loopback address (127.1.x.y) so that per-IP rate limits see many "
        "clients as in production rather than refusing one busy address.",
        "- **Sign-in**: `POST /api/auth/app/v1/auth/login` with `{username, password}` "
        "(allauth headless, app client), counting 200 answers. First every member signs in "
        "once (a new device; it also warms the workers), then members sign in again from "
        f"the same device for {options.signin_seconds:.0f} s: the steady-state figure, "
        "compared with the raw argon2 rate on all cores measured again just before the "
        "sign-ins (the server idle). The load generator and the database share the same "
        "cores.",
        "- **Registration**: `POST /api/v1/members` with an API key and an "
        "`Idempotency-Key`, each a new individual with a new phone, for "
        f"{options.register_seconds:.0f} s; counting 201 answers. It hashes the password "
        "(argon2), validates, writes member, consents, code, audit event and outbox rows.",
        f"- **Lookup**: {options.lookups:,} sequential `GET /api/v1/members?phone=` of random "
        "loaded phones, latency measured by the client (connect, request, response); and "
        f"{options.selector_lookups:,} calls of `patron.members.selectors.member_by_phone` "
        "in one process (normalise, HMAC blind index, one indexed query, decrypt the row).",
        "",
    ]
    for run in runs.values():
        out += _details(run, hash_rate)
    return "\n".join(out).rstrip() + "\n"


_PARTS = [
    ("argon2", "argon2id verification"),
    (
        "cache",
        "Django cache operations (allauth rate limits: `login`, `login_failed` per IP "
        "and per account)",
    ),
    ("sql", "SQL statements (driver and database)"),
    (
        "usersessions",
        "allauth `usersessions` bookkeeping at sign-in, besides its SQL (checks each live "
        "session of the member, records the new one)",
    ),
    (
        "record_sign_in",
        "Patron `record_sign_in` (known device, last sign-in), besides SQL and cache",
    ),
]


def _breakdown(profile: dict) -> list[list[str]]:
    parts = profile.get("parts", {})
    rows = []
    for key, label in _PARTS:
        part = parts.get(key, {"calls": 0, "cpu_ms": 0.0, "wall_ms": 0.0})
        rows.append(
            [label, f"{part['calls']:g}", f"{part['cpu_ms']:.1f}", f"{part['wall_ms']:.1f}"]
        )
    cpu_rest = profile["cpu_ms_per_sign_in"] - sum(p["cpu_ms"] for p in parts.values())
    wall_rest = profile["wall_ms_per_sign_in"] - sum(p["wall_ms"] for p in parts.values())
    rows.append(
        [
            "everything else: Django request handling and middleware, allauth's login flow, "
            "session creation, the JSON answer",
            "",
            f"{cpu_rest:.1f}",
            f"{wall_rest:.1f}",
        ]
    )
    rows.append(
        [
            "**total per sign-in**",
            "",
            f"**{profile['cpu_ms_per_sign_in']:.1f}**",
            f"**{profile['wall_ms_per_sign_in']:.1f}**",
        ]
    )
    return rows


def _cache_table(profile: dict, variants: list[dict]) -> list[str]:
    """The same breakdown with the configured cache and with the alternatives."""
    rows = []
    for label, figures in [
        (f"as configured (`{profile.get('cache_backend', '?')}`)", profile),
        *[(v["label"], v) for v in variants],
    ]:
        if "error" in figures:
            rows.append([label, "failed", "", "", figures["error"][:200]])
            continue
        parts = figures["parts"]
        cpu = figures["cpu_ms_per_sign_in"]
        rows.append(
            [
                label,
                f"{parts['cache']['calls']:g}",
                f"{parts['cache']['cpu_ms']:.1f}",
                f"{cpu - parts['argon2']['cpu_ms']:.1f}",
                f"{parts['argon2']['cpu_ms'] / cpu:.0%}",
            ]
        )
    return [
        "The same sign-ins with other cache backends (in-process, CPU ms per sign-in; the "
        "last column is argon2's share of a sign-in's CPU, which bounds sign-ins/s as a "
        "share of the argon2 rate):",
        "",
        _table(
            ["Cache", "Cache ops", "Cache CPU ms", "CPU ms besides argon2", "argon2 share"],
            rows,
        ),
        "",
    ]


def _noise_warning(hash_rate: hashrate.HashRate, runs: dict[str, dict], facts: dict) -> list[str]:
    """Say so when other work on the machine visibly moved the argon2 ceiling mid-run."""
    rates = [hash_rate.per_second] + [
        r["argon2_adjacent"] for r in runs.values() if r.get("argon2_adjacent")
    ]
    if min(rates) >= 0.85 * max(rates):
        return []
    listed = ", ".join(f"{rate:,.1f}/s" for rate in rates)
    return [
        f"> **The machine was busy with other work during this run**: the argon2 rate "
        f"measured at different moments varied ({listed}; load average "
        f"{facts.get('Load average (1 min) at start')} at the start, "
        f"{facts.get('Load average (1 min) at end')} at the end). Throughput figures are "
        "compared with the argon2 rate measured just before them, but latencies and "
        "ratios are less reliable than on an idle machine: run `make bench` again when "
        "the machine is idle.",
        "",
    ]


def _details(run: dict, hash_rate: hashrate.HashRate) -> list[str]:
    label = run["label"]
    out = [f"## Details: {label}", ""]
    if "error" in run:
        return [*out, f"The run failed: `{run['error']}`", ""]
    out.append(
        f"Migrations {run['migrate_seconds']} s; bulk load of {run['load']['members']:,} "
        f"members {run['load']['seconds']} s."
    )
    out.append("")
    for name, title in (
        ("sign_in", "Sign-in"),
        ("registration", "Registration"),
        ("lookup_http", "Lookup over HTTP"),
    ):
        section = run.get(name, {})
        if "error" in section:
            out.append(f"- {title}: failed: `{section['error']}`")
            continue
        parts = [("first sign-in", section.get("first")), ("steady state", section.get("steady"))]
        if name != "sign_in":
            parts = [("", section)]
        for sub, figures in parts:
            if not figures:
                continue
            out.append(
                f"- {title}{' (' + sub + ')' if sub else ''}: {figures['ok']:,} ok of "
                f"{figures['sent']:,} in {figures['seconds']} s = {figures['per_second']}/s; "
                f"latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
                f"statuses {figures['statuses']}"
                + (f"; transport errors {figures['errors']}" if figures["errors"] else "")
            )
            for sample in figures.get("samples", [])[:3]:
                out.append(f"  - unexpected answer: `{sample[:300]}`")
    selector = run.get("lookup_selector", {})
    if "selector" in selector:
        s, q = selector["selector"], selector["query"]
        out.append(
            f"- Selector `member_by_phone`: p50 {s['p50_ms']:.3f} ms, p95 {s['p95_ms']:.3f} ms, "
            f"p99 {s['p99_ms']:.3f} ms, max {s['max_ms']:.3f} ms over {s['count']:,} lookups "
            f"({selector['missing']} not found); the indexed query alone p50 "
            f"{q['p50_ms']:.3f} ms, p99 {q['p99_ms']:.3f} ms. Plan: `{selector['plan']}`"
        )
    elif "error" in selector:
        out.append(f"- Selector lookup failed: `{selector['error'][:500]}`")
    profile = run.get("profile", {})
    out.append("")
    if "wall_ms_per_sign_in" in profile:
        argon2_ms = profile["argon2_ms_per_sign_in"]
        wall = profile["wall_ms_per_sign_in"]
        out += [
            f"### Where a sign-in's time goes ({label})",
            "",
            f"In-process (Django test client, no network, one process), {profile['count']} "
            f"sign-ins of known members (statuses {profile['statuses']}): "
            f"**{wall:.1f} ms** per sign-in, of which {argon2_ms:.1f} ms inside argon2 "
            f"(clocked around each verification), so **{wall - argon2_ms:.1f} ms** "
            f"({(wall - argon2_ms) / wall:.0%}) is everything else. In CPU time of the "
            f"process (not stretched by other work on the machine; the PostgreSQL server's "
            f"own CPU is not in it): {profile['cpu_ms_per_sign_in']:.1f} ms per sign-in, "
            f"{profile['argon2_cpu_ms_per_sign_in']:.1f} ms of it in argon2, so "
            f"**{profile['cpu_ms_per_sign_in'] - profile['argon2_cpu_ms_per_sign_in']:.1f} ms "
            "of CPU besides argon2**; "
            f"{profile['queries_per_sign_in']:.1f} SQL statements per sign-in. Each of these "
            f"members held {max(0.0, profile.get('sessions_per_member', 1) - 1):.1f} earlier "
            "session(s) when signing in.",
            "",
            "A member signing in again and again without signing out (allauth's "
            "`usersessions` checks every live session of the member at each sign-in): "
            "SQL statements and milliseconds of the 1st, 2nd, ... sign-in: "
            + ", ".join(f"{g['queries']} ({g['ms']:.0f} ms)" for g in profile.get("growth", []))
            + ".",
            "",
            "Per sign-in, clocked around the calls themselves (exclusive: SQL run inside the "
            "session bookkeeping counts as SQL):",
            "",
            _table(["Part", "Calls", "CPU ms", "Wall ms"], _breakdown(profile)),
            "",
            *_cache_table(profile, run.get("cache_variants", [])),
            "SQL statements per sign-in:",
            "",
            _table(
                ["Statement", "Per sign-in"],
                [[f"`{k}`", f"{v:g}"] for k, v in profile["statements"].items()],
            ),
            "",
            "cProfile, own time per sign-in grouped by package (profiling inflates Python "
            "code, not argon2's C):",
            "",
            _table(
                ["Package", "ms per sign-in"],
                [[k, f"{v:.2f}"] for k, v in profile["profile_ms_per_sign_in"].items()],
            ),
            "",
            "Costliest Patron / allauth / contrib functions besides the path to argon2 "
            "(cumulative under cProfile, per sign-in):",
            "",
            _table(
                ["Function", "cumulative ms", "own ms"],
                [
                    [
                        f"`{f['function']}`",
                        f"{f['cumulative_ms_per_sign_in']:.2f}",
                        f"{f['own_ms_per_sign_in']:.2f}",
                    ]
                    for f in profile["top_functions"]
                ],
            ),
            "",
        ]
    elif "error" in profile:
        out += [f"Sign-in profile failed: `{profile['error'][:500]}`", ""]
    return out


MARK = "<!-- bench:{part} -->"
END_MARK = "<!-- /bench:{part} -->"
PARTS = ("members", "loyalty")
TITLES = {
    "members": "## Members: sign-in, registration and lookup (issue 2)",
}


def _demote(markdown: str) -> str:
    """Headings one level down: a part's ``## Figures`` becomes ``### Figures``."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _blocks(previous: str) -> dict[str, str]:
    """The parts of an earlier report (an old report without marks is the members part)."""
    blocks: dict[str, str] = {}
    for part in PARTS:
        begin, end = MARK.format(part=part), END_MARK.format(part=part)
        if begin in previous and end in previous:
            blocks[part] = previous.split(begin, 1)[1].split(end, 1)[0].strip("\n")
    if not blocks and previous.startswith("# Benchmarks"):
        body = previous.split("\n", 1)[1].strip("\n")
        blocks["members"] = TITLES["members"] + "\n\n" + _demote(body)
    return blocks


def compose(previous: str, fresh: dict[str, str]) -> str:
    """The report: the parts measured now, and the others as their last run left them."""
    blocks = {**_blocks(previous), **fresh}
    out = [
        "# Benchmarks",
        "",
        "`make bench` measures every part below and overwrites this file; "
        "`make bench BENCH=members` or `make bench BENCH=loyalty` measures one part again and "
        "keeps the other as its last run left it. Each part says when and on what machine it "
        "was measured.",
        "",
    ]
    for part in PARTS:
        if part in blocks:
            out += [MARK.format(part=part), blocks[part], END_MARK.format(part=part), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bench",
        choices=["all", *PARTS],
        default=os.environ.get("BENCH") or "all",
        help="which part to measure (make bench BENCH=loyalty)",
    )
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--signin-members", type=int, default=800)
    parser.add_argument("--signin-seconds", type=float, default=25)
    parser.add_argument("--register-seconds", type=float, default=20)
    parser.add_argument("--lookups", type=int, default=3_000)
    parser.add_argument("--lookup-seconds", type=float, default=60)
    parser.add_argument("--selector-lookups", type=int, default=5_000)
    parser.add_argument("--profile-sign-ins", type=int, default=60)
    parser.add_argument("--hash-seconds", type=float, default=10)
    parser.add_argument("--adjacent-hash-seconds", type=float, default=5)
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PATRON_BENCH_DATABASE_URL", DEFAULT_POSTGRES),
        help="PostgreSQL database to (re)create for the run",
    )
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quick", action="store_true", help="a small, fast run to try the harness")
    loyalty.add_arguments(parser)
    options = parser.parse_args(argv)
    if options.quick:
        options.members, options.signin_members = 5_000, 100
        options.signin_seconds = options.register_seconds = 5
        options.lookups, options.selector_lookups, options.profile_sign_ins = 300, 500, 10
        options.hash_seconds = options.adjacent_hash_seconds = 3
        options.order_seconds = options.ping_seconds = options.pgbench_seconds = 5
        options.batch_calls = 5

    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    cores = machine.cores()
    var_root = ROOT / "var" / "bench"
    var_root.mkdir(parents=True, exist_ok=True)
    facts = machine.facts(server.admin_url(options.postgres_url))
    # Other work on the machine skews every figure: say how busy it was.
    facts["Load average (1 min) at start"] = f"{os.getloadavg()[0]:.2f}"
    log("machine: " + ", ".join(f"{k} {v}" for k, v in list(facts.items())[:7]))
    targets = {
        "sqlite": server.sqlite_target(var_root),
        "postgresql": server.postgres_target(options.postgres_url, var_root),
    }
    fresh: dict[str, str] = {}
    rows: list[list[str]] = []

    if options.bench in ("all", "members"):
        log(f"argon2id: {cores} processes for {options.hash_seconds:.0f} s")
        hash_rate = hashrate.measure(cores, options.hash_seconds)
        log(f"  {hash_rate.per_second:.1f} verifications/s ({hash_rate.parameters})")
        runs: dict[str, dict] = {}
        for name in [n.strip() for n in options.databases.split(",") if n.strip()]:
            target = targets[name]
            try:
                runs[name] = bench_database(target, options, cores)
            except Exception as exc:
                traceback.print_exc()
                runs[name] = {"label": target.label, "error": f"{type(exc).__name__}: {exc}"[:1000]}
        elapsed = time.perf_counter() - clock
        facts["Load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
        members_report = render(facts, hash_rate, runs, options, started, elapsed)
        fresh["members"] = (
            TITLES["members"] + "\n\n" + _demote(members_report.split("\n", 1)[1].strip("\n"))
        )
        (var_root / "results.json").write_text(
            json.dumps({"hash_rate": hash_rate.__dict__, "runs": runs}, indent=2, default=str)
        )
        member_rows = _figures(hash_rate, runs)
        print()
        print(_table(["Figure", "Database", "Measured", "Target", "Result"], member_rows))
        rows += [[*row[:4], row[4]] for row in member_rows]

    if options.bench in ("all", "loyalty"):
        loyalty_started = dt.datetime.now().astimezone()
        loyalty_clock = time.perf_counter()
        facts["Load average (1 min) at start"] = f"{os.getloadavg()[0]:.2f}"
        loyalty_runs = loyalty.run(options, targets, cores, log)
        facts["Load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
        minutes = (time.perf_counter() - loyalty_clock) / 60
        fresh["loyalty"] = loyalty.render(
            loyalty_runs, facts, options, loyalty_started, minutes
        ).rstrip("\n")
        (var_root / "loyalty-results.json").write_text(
            json.dumps(loyalty_runs, indent=2, default=str)
        )
        loyalty_rows = loyalty.figures(loyalty_runs)
        print()
        print(
            _table(["Figure", "Database", "Measured", "Baseline", "Target", "Result"], loyalty_rows)
        )
        rows += [[row[0], row[1], row[2], row[4], row[5]] for row in loyalty_rows]

    previous = options.report.read_text() if options.report.exists() else ""
    options.report.parent.mkdir(parents=True, exist_ok=True)
    options.report.write_text(compose(previous, fresh))
    elapsed = time.perf_counter() - clock
    print(f"\nwritten to {options.report} in {elapsed / 60:.1f} minutes")
    failed = any("FAIL" in row[4] or "MISS" in row[4] for row in rows)
    return 1 if failed and options.strict else 0


if __name__ == "__main__":
    sys.exit(main())
