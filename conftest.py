"""Shared test set-up: settings for tests, API clients, the SMS outbox file."""

from __future__ import annotations

import os

os.environ.setdefault("PATRON_TESTING", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

pytest_plugins = ["tests.fixtures"]
