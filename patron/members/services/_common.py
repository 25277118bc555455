"""Small helpers the member services share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from patron.core.exceptions import FieldError, ValidationFailed
from patron.notify.services import queue_notice as _queue


def refuse(field: str, code: str, message: str) -> ValidationFailed:
    """A 422 whose top-level ``code`` is the specific reason (``code_invalid``, ...).

    Clients can branch on ``code`` without digging into ``errors``; the field error carries
    the same code for forms.
    """
    error = ValidationFailed([FieldError(field, code, message)], message=str(message))
    error.code = code
    return error


def failed(errors: list[FieldError]) -> ValidationFailed:
    """All field errors in one refusal; with a single error its code is the top-level code."""
    error = ValidationFailed(errors)
    if len(errors) == 1:
        error.code = errors[0].code
        error.message = str(errors[0].message)
    return error


def queue_notice(*, template: str, member: Any, channels: Sequence[str], **kwargs: Any) -> None:
    """Write the notice's outbox rows in the caller's transaction (see patron.notify)."""
    _queue(template=template, member=member, channels=channels, **kwargs)


def member_channels(member: Any) -> tuple[str, ...]:
    """SMS always; email too when the member gave one."""
    return ("sms", "email") if member.email else ("sms",)
