"""The platform REST API, ``/api/v1``: one NinjaAPI, one router per app, one error shape."""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from patron.api.problems import from_error, problem_response
from patron.core.exceptions import FieldError, PatronError

logger = logging.getLogger(__name__)

_MALFORMED_BODY = "Cannot parse request body"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_unstorable(value: Any) -> None:
    """Strings no database column can hold: NUL (PostgreSQL refuses it) and lone UTF-16
    surrogates (not encodable as UTF-8). Refused here, as a malformed body, so that no
    service meets them halfway through a write."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise ValueError("string holds NUL or a lone surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_unstorable(item)


class StrictJSONParser(Parser):
    """JSON bodies, refusing strings no column can store (ninja turns a parser error into
    a 400, which the handler below answers as problem+json ``malformed_body``)."""

    def parse_body(self, request: HttpRequest) -> Any:
        data = json.loads(request.body)
        _refuse_unstorable(data)
        return data


def _problem_405(view: Any) -> Any:
    """ninja answers a method a path does not serve with a bare text 405; make it a problem."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/problem+json"
        ):
            return problem_response(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here.",
                headers={"Allow": response.get("Allow", "")},
            )
        return response

    return wrapper


@csrf_exempt
def _no_such_endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return problem_response(404, "not_found", "No such API endpoint.")


class PatronNinjaAPI(NinjaAPI):
    """NinjaAPI whose answers outside the operations (unknown paths, methods a path does
    not serve) are problem+json too, like every other refusal."""

    def _get_urls(self) -> list:
        patterns = []
        for pattern in super()._get_urls():
            if isinstance(pattern, URLPattern):
                pattern = URLPattern(
                    pattern.pattern,
                    _problem_405(pattern.callback),
                    pattern.default_args,
                    pattern.name,
                )
            patterns.append(pattern)
        patterns.append(re_path(r"^.*$", _no_such_endpoint))
        return patterns


api = PatronNinjaAPI(
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
    parser=StrictJSONParser(),
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
    if exc.status_code == 400 and str(exc).startswith(_MALFORMED_BODY):
        return problem_response(
            400, "malformed_body", "The request body is not valid JSON of storable text."
        )
    return problem_response(exc.status_code, "http_error", str(exc))


@api.exception_handler(MultiPartParserError)
def _bad_multipart(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    return problem_response(400, "malformed_body", "The multipart request body is malformed.")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return problem_response(413, "body_too_large", "The request body is too large.")


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
