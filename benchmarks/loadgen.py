"""A small closed-loop HTTP load generator (threads + http.client), loopback only.

Each worker thread takes the next request from a shared list and sends it on a new
connection (gunicorn's sync workers close the connection after each response anyway).
Requests may name a loopback source address, so that per-IP rate limits see many clients
as they would in production instead of refusing one busy address. The run stops when the
list is exhausted or the time limit passes, whichever comes first.
"""

from __future__ import annotations

import http.client
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    source_ip: str = "127.0.0.1"


@dataclass
class Result:
    sent: int = 0
    ok: int = 0
    elapsed: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # first few unexpected answers
    errors: int = 0

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def loopback_address(n: int) -> str:
    """The n-th client address in 127.1.0.0/16 and above (never 127.0.0.1 itself)."""
    return str(ipaddress.ip_address("127.1.0.1") + (n % 16_000_000))


def _send(host: str, port: int, request: Request) -> tuple[int, bytes, float]:
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise ValueError("benchmarks only send traffic to loopback addresses")
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=60, source_address=(request.source_ip, 0))
    try:
        conn.request(request.method, request.path, body=request.body, headers=request.headers)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def run(
    host: str,
    port: int,
    requests: Sequence[Request],
    *,
    concurrency: int,
    max_seconds: float,
    ok_statuses: tuple[int, ...] = (200, 201),
) -> Result:
    result = Result()
    lock = threading.Lock()
    position = 0
    deadline = time.perf_counter() + max_seconds

    def worker() -> None:
        nonlocal position
        while True:
            with lock:
                if position >= len(requests) or time.perf_counter() >= deadline:
                    return
                request = requests[position]
                position += 1
            try:
                status, body, latency = _send(host, port, request)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    result.sent += 1
                    result.errors += 1
                    if len(result.samples) < 5:
                        result.samples.append(f"{request.method} {request.path}: {exc!r}")
                continue
            with lock:
                result.sent += 1
                result.statuses[status] += 1
                if status in ok_statuses:
                    result.ok += 1
                    result.latencies_ms.append(latency)
                elif len(result.samples) < 5:
                    result.samples.append(
                        f"{request.method} {request.path} -> {status}: {body[:300]!r}"
                    )

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 120)
    result.elapsed = time.perf_counter() - began
    return result
