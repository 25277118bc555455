"""Browser tests: Playwright (sync API) driving Debian's /usr/bin/chromium.

Run with `make e2e`. The app runs in pytest-django's live server, a thread of this test
process, so settings overrides (the SMS outbox file) and the clock (time_machine) apply to
it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

# Playwright's sync API keeps an event loop on this thread; Django's guard against ORM use
# from async code would then refuse the test's own (synchronous) database set-up.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = Path(settings.BASE_DIR) / "var" / "e2e"
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):  # each run leaves exactly its own screenshots
        old.unlink()
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request, screenshot_dir) -> Iterator:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        # What the browser showed when the test failed, for CI artefacts.
        page.screenshot(path=str(screenshot_dir / "failure.png"), full_page=True)
    context.close()
