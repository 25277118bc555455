"""Fixtures every app's tests share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from patron.api.keys import SCOPES, create_api_key
from patron.core.audit import Actor


class PlatformClient(Client):
    """A Django test client that speaks to /api/v1 with an API key and JSON bodies."""

    def __init__(self, token: str, **kwargs):
        super().__init__(HTTP_AUTHORIZATION=f"Bearer {token}", **kwargs)

    def post_json(self, path: str, data=None, idempotency_key: str | None = None, **extra):
        if idempotency_key:
            extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        return self.post(path, json.dumps(data or {}), content_type="application/json", **extra)

    def patch_json(self, path: str, data=None, **extra):
        return self.patch(path, json.dumps(data or {}), content_type="application/json", **extra)


@pytest.fixture
def api_key_factory(db):
    def make(scopes: list[str] | None = None, name: str = "test platform"):
        return create_api_key(
            name=name, scopes=list(SCOPES) if scopes is None else scopes, actor=Actor.system()
        )

    return make


@pytest.fixture
def platform(api_key_factory) -> PlatformClient:
    """A platform holding every scope."""
    return PlatformClient(api_key_factory().secret)


@pytest.fixture
def sms_outbox(tmp_path, settings) -> Path:
    """A fresh SMS file for the file backend; read it with read_sms()."""
    path = tmp_path / "sms.jsonl"
    settings.PATRON_SMS = {**settings.PATRON_SMS, "BACKEND": "file", "FILE": path}
    return path


def read_sms(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _isolated_var(tmp_path, settings):
    settings.EMAIL_FILE_PATH = tmp_path / "email"
    assert settings.TESTING if hasattr(settings, "TESTING") else True
