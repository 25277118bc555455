"""Loyalty API: rewards (issue 3). Filled in by its owner."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["rewards"])
