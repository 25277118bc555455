"""Every router the API serves, with its prefix. Add a router here to publish it."""

from __future__ import annotations

from ninja import Router

from patron.api.routers import consent_documents, members

ROUTERS: list[tuple[str, Router]] = [
    ("", members.router),
    ("", consent_documents.router),
]
