"""Schemas every router shares: the RFC 9457 problem body."""

from __future__ import annotations

from ninja import Schema
from pydantic import ConfigDict


class FieldErrorOut(Schema):
    field: str
    code: str
    message: str


class ProblemOut(Schema):
    """An RFC 9457 problem: branch on ``code`` (stable), show ``detail`` and ``errors``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://patron.dev/problems/phone_taken",
                    "status": 409,
                    "title": "Conflict",
                    "detail": "This phone number is already registered.",
                    "code": "phone_taken",
                    "errors": [
                        {
                            "field": "phone",
                            "code": "phone_taken",
                            "message": "This phone number is already registered.",
                        }
                    ],
                }
            ]
        }
    )

    type: str
    status: int
    title: str
    detail: str
    code: str
    errors: list[FieldErrorOut]


def problems(*statuses: int) -> dict[int, type[ProblemOut]]:
    """``response={200: X, **problems(401, 403)}``: document the refusals an operation gives."""
    return dict.fromkeys(statuses, ProblemOut)
