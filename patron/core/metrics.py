"""Prometheus metrics (OPS-4)."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("patron_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "patron_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
NOTICES = Counter("patron_notices_total", "Notices delivered or failed", ["channel", "outcome"])
