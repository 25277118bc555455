"""The benchmark's minimal write endpoint (``make bench``), mounted only when
``PATRON_BENCH_ENDPOINTS=1``.

``POST /api/v1/bench/ping`` inserts one row into ``bench_ping`` (a table the benchmark
harness creates with raw SQL; there is no migration and no model) and answers 201. It passes
the same middleware, ninja parsing and API-key check as every real endpoint, so the order
endpoints' throughput can be compared with the cheapest write this server can make.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from patron.api.auth import ApiKeyAuth
from patron.api.schemas.common import problems
from patron.core import clock

router = Router(tags=["bench"])


class PingIn(Schema):
    note: str = Field("", max_length=64)


class PingOut(Schema):
    id: int


@router.post(
    "/bench/ping",
    auth=ApiKeyAuth(),
    response={201: PingOut, **problems(401, 422)},
    summary="Benchmark only: insert one row",
    description="Mounted only when PATRON_BENCH_ENDPOINTS=1. Any valid API key.",
    operation_id="bench_ping",
)
def ping(request: HttpRequest, payload: PingIn):
    # One statement in autocommit: the floor under any write an endpoint makes. Not a
    # service on purpose (nothing to audit; the table is the benchmark's own).
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_ping (note, created_at) VALUES (%s, %s) RETURNING id",
            [payload.note, clock.now()],
        )
        row_id = cursor.fetchone()[0]
    return Status(201, {"id": row_id})
