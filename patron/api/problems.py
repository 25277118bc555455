"""RFC 9457 problem+json responses: one shape for every refusal the API gives."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpResponse

from patron.core.exceptions import FieldError, PatronError

CONTENT_TYPE = "application/problem+json"


def problem_response(
    status: int,
    code: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    body: dict[str, Any] = {
        "type": f"https://patron.dev/problems/{code}",
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": str(detail),
        "code": code,
        "errors": [error.as_dict() for error in errors or []],
    }
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def from_error(error: PatronError) -> HttpResponse:
    return problem_response(error.status, error.code, error.message, error.errors, error.headers)
