"""One error family for the whole house.

Services raise these; the API turns them into RFC 9457 problem+json with a stable ``code``
and per-field ``errors``; the portal and console show ``message`` and the field errors.
Codes are part of the public contract: never rename one, add a new one instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": str(self.message)}


@dataclass
class PatronError(Exception):
    """Base of every expected refusal. ``status`` is the HTTP status the API answers."""

    message: str
    code: str = "error"
    status: int = 400
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ValidationFailed(PatronError):
    def __init__(self, errors: list[FieldError], message: str = "The request is not valid."):
        super().__init__(message=message, code="validation_failed", status=422, errors=errors)

    @classmethod
    def single(cls, field: str, code: str, message: str) -> ValidationFailed:
        return cls([FieldError(field, code, message)], message=str(message))


class NotFound(PatronError):
    def __init__(self, message: str = "Not found.", code: str = "not_found"):
        super().__init__(message=message, code=code, status=404)


class Conflict(PatronError):
    def __init__(
        self, message: str, code: str = "conflict", errors: list[FieldError] | None = None
    ):
        super().__init__(message=message, code=code, status=409, errors=errors or [])


class Forbidden(PatronError):
    def __init__(self, message: str = "Not allowed.", code: str = "forbidden"):
        super().__init__(message=message, code=code, status=403)


class Unauthorized(PatronError):
    def __init__(self, message: str = "Authentication required.", code: str = "unauthorized"):
        super().__init__(message=message, code=code, status=401)


class RateLimited(PatronError):
    def __init__(
        self, retry_after: int, message: str = "Too many requests.", code: str = "rate_limited"
    ):
        super().__init__(
            message=message,
            code=code,
            status=429,
            headers={"Retry-After": str(max(1, int(retry_after)))},
        )
        self.retry_after = max(1, int(retry_after))
