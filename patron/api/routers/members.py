"""Members: registration, lookup, verification, status, payment methods, consents."""

from ninja import Router

router = Router(tags=["members"])
