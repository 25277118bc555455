"""The platform REST API, ``/api/v1``: one NinjaAPI, one router per app, one error shape."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from patron.api.problems import from_error, problem_response
from patron.core.exceptions import FieldError, PatronError

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="Patron API",
    version="1",
    description=(
        "Membership, loyalty and customer care for online retailers and cinema chains.\n\n"
        "Authenticate with `Authorization: Bearer <api key>` (create one with "
        "`patron create-api-key`). Send an `Idempotency-Key` header on every request that "
        "changes state: a repeat with the same key and body returns the first answer. "
        "Errors are RFC 9457 `application/problem+json` with a stable `code` and per-field "
        "`errors`."
    ),
    urls_namespace="api-1",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def _field_name(loc: list) -> str:
    # ninja reports ("body", "payload", "phone"); the client only knows "phone".
    parts = [str(part) for part in loc if part not in ("body", "payload", "query", "path")]
    return ".".join(parts) or "body"


@api.exception_handler(PatronError)
def _patron_error(request: HttpRequest, exc: PatronError) -> HttpResponse:
    return from_error(exc)


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = [
        FieldError(
            _field_name(list(item.get("loc", []))),
            item.get("type", "invalid"),
            item.get("msg", "Invalid value."),
        )
        for item in exc.errors
    ]
    return problem_response(422, "validation_failed", "The request is not valid.", errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = problem_response(401, "unauthorized", "A valid API key or session is required.")
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return problem_response(404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return problem_response(exc.status_code, "http_error", str(exc))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error in API")
    return problem_response(500, "internal_error", "Something went wrong on our side.")


def _register_routers() -> None:
    # Routers register themselves here; import order is the order in the docs.
    from patron.api.routers import ROUTERS

    for prefix, router in ROUTERS:
        api.add_router(prefix, router)


_register_routers()
