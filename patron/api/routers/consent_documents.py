"""Consent documents: what a member must accept, in its current versions."""

from ninja import Router

router = Router(tags=["consents"])
