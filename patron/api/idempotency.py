"""``Idempotency-Key`` for state-changing API requests.

The first successful (2xx) response to a key is stored with a hash of the request; the same
key and body replay it, the same key with another body is a 409. The record and the change
commit in one transaction, so a crash cannot leave one without the other, and a parallel
duplicate waits on the unique key and then replays. Refusals are not stored (the client may
fix the request and retry with the same key), but what a refusal deliberately persists
(a wrong code's attempt count, say) is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse

from patron.api.keys import key_from_request
from patron.api.models import IdempotencyRecord
from patron.api.problems import problem_response

HEADER = "Idempotency-Key"
METHODS = {"POST", "PUT", "PATCH"}


def _request_hash(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord, request_hash: str) -> HttpResponse:
    if record.request_hash != request_hash:
        return problem_response(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request.",
        )
    response = HttpResponse(
        record.response_body, status=record.status_code, content_type="application/json"
    )
    response["Idempotent-Replayed"] = "true"
    return response


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if request.method not in METHODS or not key or not request.path.startswith("/api/v1/"):
            return self.get_response(request)
        if len(key) > 200:
            return problem_response(400, "idempotency_key_invalid", "Idempotency-Key is too long.")
        api_key = key_from_request(request)
        if api_key is None:
            return self.get_response(request)  # the API answers 401 itself
        try:
            request_hash = _request_hash(request)
        except RequestDataTooBig:
            # Reading the body to hash it is where Django enforces the upload limit; answer
            # as the API would rather than letting the error escape as an HTML 400.
            return problem_response(
                413, "payload_too_large", "The request body is larger than the API accepts."
            )
        try:
            with transaction.atomic():
                record, created = IdempotencyRecord.objects.select_for_update().get_or_create(
                    api_key=api_key,
                    key=key,
                    defaults={"request_hash": request_hash, "status_code": 0, "response_body": ""},
                )
                if not created:
                    return _replay(record, request_hash)
                response = self.get_response(request)
                if 200 <= response.status_code < 300 and not response.streaming:
                    record.status_code = response.status_code
                    record.response_body = response.content.decode()
                    record.save(update_fields=["status_code", "response_body"])
                else:
                    record.delete()
                return response
        except IntegrityError:
            # A parallel request with the same key committed first: replay its answer.
            record = IdempotencyRecord.objects.get(api_key=api_key, key=key)
            return _replay(record, request_hash)
