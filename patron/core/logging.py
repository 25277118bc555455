"""JSON log lines carrying a request id and never personal data.

Messages are scrubbed of anything shaped like a phone number, email address, ID number or
card number before they are written, as a second line of defence behind the rule that code
logs ids only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Numbers count only when they stand alone: a run of digits inside a UUID or a hex digest
# (an id we want in the logs) is not a card or phone number.
_ALONE_BEFORE = r"(?<![\w-])"
_ALONE_AFTER = r"(?![\w-])"
# Phones before long numbers, so "+8613812345678" reads as a phone.
_SCRUBBERS = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(_ALONE_BEFORE + r"\d{17}[\dXx]" + _ALONE_AFTER), "[id-number]"),
    (re.compile(r"(?<![\w-])\+?\d{0,3}1[3-9]\d{9}" + _ALONE_AFTER), "[phone]"),
    (re.compile(_ALONE_BEFORE + r"\d(?:[ -]?\d){12,18}" + _ALONE_AFTER), "[number]"),
]


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)
