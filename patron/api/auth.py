"""Authentication for the platform API: bearer API keys with per-endpoint scopes."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security.base import AuthBase

from patron.api.keys import key_from_request
from patron.core.exceptions import Forbidden


class ApiKeyAuth(AuthBase):
    """``auth=ApiKeyAuth("members:write")`` on an operation: key valid, scope held."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self, *scopes: str):
        self.scopes = set(scopes)
        super().__init__()

    def __call__(self, request: HttpRequest) -> Any:
        key = key_from_request(request)
        if key is None:
            return None  # ninja answers 401
        missing = self.scopes - set(key.scopes)
        if missing:
            raise Forbidden(
                f"This API key lacks the scope {', '.join(sorted(missing))}.",
                code="insufficient_scope",
            )
        return key
