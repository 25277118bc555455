"""Every router the API serves, with its prefix. Add a router here to publish it."""

from __future__ import annotations

from django.conf import settings
from ninja import Router

from patron.api.routers import consent_documents, me, members, orders, points, reports, rewards
from patron.api.routers import kyc as kyc_router

ROUTERS: list[tuple[str, Router]] = [
    ("", members.router),
    ("", consent_documents.router),
    ("", me.router),
    ("", kyc_router.router),
    ("", orders.router),
    ("", points.router),
    ("", rewards.router),
    ("", reports.router),
]

# The benchmark's minimal write endpoint, only where the benchmark asks for it.
if getattr(settings, "PATRON_BENCH_ENDPOINTS", False):
    from patron.api.routers import bench

    ROUTERS.append(("", bench.router))
