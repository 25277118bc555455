"""Exact lookup by phone through the selector, in-process: ``python -m benchmarks.lookup``.

Times ``patron.members.selectors.member_by_phone`` (normalise, blind index, one indexed
query, decrypt the row) for random loaded phones, and the bare indexed query alone, and
records the database's plan for it so the report shows the index is used.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import django


def _percentiles(samples: list[float]) -> dict[str, float]:
    from benchmarks.loadgen import percentile

    return {
        "count": len(samples),
        "p50_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
        "p99_ms": percentile(samples, 99),
        "max_ms": max(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    django.setup()
    from django.db import connection

    from patron.core.crypto import blind_index
    from patron.members.models import Member
    from patron.members.selectors import member_by_phone

    phones = json.loads(args.data.read_text())["phones"]
    rng = random.Random(7)
    for phone in rng.sample(phones, 200):  # warm the connection and caches
        member_by_phone(phone)

    deadline = time.perf_counter() + args.max_seconds
    selector: list[float] = []
    missing = 0
    for phone in rng.choices(phones, k=args.count):
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        member = member_by_phone(phone)
        selector.append((time.perf_counter() - started) * 1000)
        if member is None:
            missing += 1

    query: list[float] = []
    for phone in rng.choices(phones, k=args.count):
        if time.perf_counter() > deadline + args.max_seconds:
            break
        index = blind_index(phone, "phone")
        started = time.perf_counter()
        Member.objects.filter(phone_index=index).values_list("id", flat=True).first()
        query.append((time.perf_counter() - started) * 1000)

    sql, params = Member.objects.filter(phone_index="x").query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " / ".join(" ".join(str(c) for c in row) for row in cursor.fetchall())

    args.out.write_text(
        json.dumps(
            {
                "selector": _percentiles(selector),
                "query": _percentiles(query),
                "missing": missing,
                "plan": plan,
                "members": Member.objects.count(),
            }
        )
    )


if __name__ == "__main__":
    main()
