"""Small helpers the member services share."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.translation import gettext as _

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


# C0 control characters other than tab and line breaks: never part of real input, and NUL
# cannot even be stored in a PostgreSQL text column.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character_errors(values: Mapping[str, Any]) -> list[FieldError]:
    """A field error for every text value that holds a control character."""
    return [
        FieldError(name, "invalid_characters", _("This field contains invalid characters."))
        for name, value in values.items()
        if isinstance(value, str) and _CONTROL.search(value)
    ]
