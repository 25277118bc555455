"""PRIV-2 / OPS-4: log lines carry ids, and personal data that slips in is scrubbed."""

from __future__ import annotations

import json
import logging

import pytest

from patron.core.logging import JsonFormatter, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sent to +8613812345678", "sent to [phone]"),
        ("sent to 13812345678.", "sent to [phone]."),
        ("mail wang.li@example.com ok", "mail [email] ok"),
        ("id 11010519491231002X here", "id [id-number] here"),
        ("card 4111 1111 1111 1111 refused", "card [number] refused"),
        ("card 4111-1111-1111-1111", "card [number]"),
    ],
)
def test_priv_2_personal_data_is_scrubbed_from_log_text(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "task id=0b3aa123-4567-8901-2345-eda747d420ed done",
        "digest 5f2b9c0d8e1a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c",
        "member 291476452110 registered",  # a 12-digit member number is an id, not a card
        "outbox message 42 sent (attempt 1)",
    ],
)
def test_ops_4_ids_survive_scrubbing(text):
    assert scrub(text) == text


def test_ops_4_json_line_has_request_id_and_scrubbed_message():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "code sent to %s", ("+8613812345678",), None
    )
    record.request_id = "req-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "code sent to [phone]"
    assert line["request_id"] == "req-1"
    assert line["level"] == "INFO"
