"""No input produces a 500, and every refusal is problem+json with a code (issue 2, §2).

Two catch-all tests:
- every operation of /api/v1/openapi.json is driven by schemathesis with generated inputs,
  valid and invalid (positive and negative generation), with a valid API key (and a member
  session for /me), and without one;
- every route that takes a body gets malformed JSON, the wrong content type, a body over
  the upload limit, deep nesting and unicode garbage.
Each answer must be below 500 and, when it is an error, application/problem+json carrying
``status``, ``title``, ``detail``, a ``code`` and ``errors``.
"""

from __future__ import annotations

import json
import uuid

import pytest
import schemathesis
from django.conf import settings
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from patron.api.api import api
from patron.api.keys import SCOPES, create_api_key
from patron.core.audit import Actor
from tests.api_fuzz.helpers import (
    active_member,
    consent_documents,
    header,
    problem_errors,
    session_token,
)

EXAMPLES = 20  # per operation and credential: enough to reach every branch of the shapes
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(max_examples=EXAMPLES)


@pytest.fixture
def world(db):
    """A member to aim at, an API key holding every scope, and the member's session.

    schemathesis calls the real WSGI handler, which closes the database connection at the
    end of each request as a server would; in a test that would close the connection the
    test's transaction lives on, so (as Django's own test client does) it is not closed.
    """
    data = _world()  # first: Django's test client reconnects the handlers when it is done
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield data
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _world() -> dict:
    # Rate-limit counters live in the cache, which outlives a test; start each from zero so
    # the sign-in below is not refused for what earlier tests did.
    cache.clear()
    member = active_member(consent_documents())
    key = create_api_key(name="fuzz", scopes=sorted(SCOPES), actor=Actor.system())
    return {"member": member, "api_key": key.secret, "session": session_token(member)}


def _aim(case, world: dict, credentials: str) -> dict[str, str]:
    """Headers for the credential variant; path parameters sometimes aimed at the member."""
    headers = {}
    if credentials == "valid":
        headers["Authorization"] = f"Bearer {world['api_key']}"
        if world["session"]:
            headers["X-Session-Token"] = world["session"]
        if case.method.upper() in {"POST", "PATCH", "PUT"}:
            headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
        number = (case.path_parameters or {}).get("number")
        # Half the generated numbers are replaced by a real member's, so that the
        # generated bodies reach the services rather than stopping at "not found".
        if isinstance(number, str) and len(number) % 2 == 0:
            case.path_parameters["number"] = world["member"].number
    else:
        for name in ("Authorization", "X-Session-Token", "authorization", "x-session-token"):
            (case.headers or {}).pop(name, None)
    return headers


@pytest.mark.parametrize("credentials", ["valid", "none"])
@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_sec2_no_generated_input_gives_500_or_non_problem_error(case, credentials, world):
    headers = _aim(case, world, credentials)
    response = case.call(headers=headers)
    broken = problem_errors(
        response.status_code, header(response.headers, "content-type"), response.content
    )
    assert not broken, (
        f"{case.method} {case.formatted_path} ({credentials}) -> {response.status_code}: "
        f"{broken}; body {response.content[:300]!r}; query {case.query!r}; "
        f"request body {case.body!r}"
    )


# --- Hand-made malformed requests to every route with a body -------------------------------


def _body_operations() -> list[tuple[str, str]]:
    found = []
    for path, operations in api.get_openapi_schema()["paths"].items():
        for method, operation in operations.items():
            if method.upper() in {"POST", "PUT", "PATCH"} and "requestBody" in operation:
                found.append((method.upper(), path))
    return found


def _concrete(path: str, member_number: str) -> str:
    return (
        path.replace("{number}", member_number)
        .replace("{channel}", "phone")
        .replace("{method_id}", "1")
    )


BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "malformed_json": (b'{"kind": "individual", "username": ', "application/json"),
    "empty_body": (b"", "application/json"),
    "json_array": (b"[1, 2, 3]", "application/json"),
    "json_string": (b'"just a string"', "application/json"),
    "json_null": (b"null", "application/json"),
    "wrong_types": (
        json.dumps({"kind": 5, "username": [], "phone": {}, "accepted": "terms"}).encode(),
        "application/json",
    ),
    "text_plain": (b'{"kind": "individual"}', "text/plain"),
    "form_encoded": (b"kind=individual&username=x", "application/x-www-form-urlencoded"),
    "xml": (b"<member><kind>individual</kind></member>", "application/xml"),
    "invalid_utf8": (b'{"username": "\xff\xfe\xfd"}', "application/json"),
    "lone_surrogate": (b'{"username": "\\ud800", "name": "\\udfff"}', "application/json"),
    "nul_bytes": (b'{"username": "a\\u0000b", "phone": "\\u0000"}', "application/json"),
    "unicode_garbage": (
        json.dumps(
            {
                "username": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢\u202e\u200b",
                "phone": "１３８００１３８０００",
                "name": "\U0001f4a9" * 50,
                "code": "١٢٣٤٥٦",
                "reason": "\x00\x01\x7f",
            },
            ensure_ascii=False,
        ).encode(),
        "application/json",
    ),
    "deep_nesting": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    "huge_number": (b'{"exp_month": 1' + b"0" * 5000 + b"}", "application/json"),
    "multipart_garbage": (b"--x\r\nnot a part\r\n--x--", "multipart/form-data; boundary=x"),
    "multipart_no_boundary": (b"whatever", "multipart/form-data"),
}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
@pytest.mark.parametrize("credentials", ["valid", "none"])
def test_sec2_malformed_bodies_are_refused_as_problems(world, kind, credentials):
    body, content_type = BAD_BODIES[kind]
    extra = {}
    if credentials == "valid":
        extra["HTTP_AUTHORIZATION"] = f"Bearer {world['api_key']}"
        extra["HTTP_IDEMPOTENCY_KEY"] = f"fuzz-{kind}"
        if world["session"]:
            extra["HTTP_X_SESSION_TOKEN"] = world["session"]
    client = Client()
    failures = []
    for method, path in _body_operations():
        url = _concrete(path, world["member"].number)
        response = client.generic(method, url, body, content_type=content_type, **extra)
        broken = problem_errors(response.status_code, response["Content-Type"], response.content)
        if broken:
            failures.append(f"{method} {url} -> {response.status_code}: {broken}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("credentials", ["valid", "none"])
def test_sec2_body_over_the_upload_limit_is_a_problem_not_a_500(world, credentials):
    body = b'{"username": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024) + b'"}'
    extra = {"HTTP_AUTHORIZATION": f"Bearer {world['api_key']}"} if credentials == "valid" else {}
    failures = []
    client = Client()
    for method, path in _body_operations():
        url = _concrete(path, world["member"].number)
        for idempotency in ({}, {"HTTP_IDEMPOTENCY_KEY": "fuzz-huge"}):
            response = client.generic(
                method, url, body, content_type="application/json", **extra, **idempotency
            )
            broken = problem_errors(
                response.status_code, response["Content-Type"], response.content
            )
            if broken:
                failures.append(f"{method} {url} {idempotency} -> {response.status_code}: {broken}")
    assert not failures, "\n".join(failures)


# --- The answers outside the operations, exactly -----------------------------------------


def _problem(response) -> dict:
    assert response["Content-Type"].startswith("application/problem+json")
    return json.loads(response.content)


def test_sec2_unknown_api_path_is_a_404_problem(world):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {world['api_key']}")
    for method in ("get", "post", "delete"):
        response = getattr(client, method)("/api/v1/no/such/thing")
        assert response.status_code == 404
        assert _problem(response)["code"] == "not_found"


def test_sec2_method_a_path_does_not_serve_is_a_405_problem_with_allow(world):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {world['api_key']}")
    response = client.generic("TRACE", "/api/v1/consent-documents")
    assert response.status_code == 405
    assert _problem(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET"


def test_sec2_malformed_json_is_a_400_malformed_body_and_changes_nothing(world):
    from patron.core.models import AuditEvent
    from patron.members.models import Member

    before = (Member.objects.count(), AuditEvent.objects.count())
    client = Client(HTTP_AUTHORIZATION=f"Bearer {world['api_key']}")
    for body in (b'{"kind": ', b'{"username": "a\\u0000b"}', b'{"name": "\\ud800"}'):
        response = client.post("/api/v1/members", body, content_type="application/json")
        assert response.status_code == 400
        assert _problem(response)["code"] == "malformed_body"
    assert (Member.objects.count(), AuditEvent.objects.count()) == before


def test_sec2_body_over_the_limit_is_a_413_body_too_large(world):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {world['api_key']}")
    body = b'{"username": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b'"}'
    response = client.post("/api/v1/members", body, content_type="application/json")
    assert response.status_code == 413
    assert _problem(response)["code"] == "body_too_large"
