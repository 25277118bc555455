"""NOTE-1: the real outside world for the channels: an HTTP SMS gateway and an SMTP server,
both running locally in the test (only the outside world is stood in for)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.db import transaction

from patron.notify import services
from patron.notify.models import OutboxMessage
from patron.notify.services import queue_notice
from patron.notify.tests.helpers import make_member

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


class FakeGateway:
    """An SMS gateway on 127.0.0.1: answers the queued status codes in turn (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[dict] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                gateway.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "json": json.loads(self.rfile.read(length)),
                    }
                )
                status = gateway.statuses.pop(0) if gateway.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status < 300 else b'{"error": "busy"}')

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def gateway(settings) -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        settings.PATRON_SMS = {
            **settings.PATRON_SMS,
            "BACKEND": "http",
            "HTTP_URL": fake.url,
            "HTTP_TOKEN": "gw-token-123",
            "TIMEOUT": 5,
        }
        yield fake


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_note_1_http_gateway_failure_then_retry_succeeds(gateway):
    gateway.statuses = [503]
    member = make_member(phone="+8613966667777", language="en")
    with time_machine.travel(T0, tick=False) as traveller:
        with transaction.atomic():
            (message,) = queue_notice(
                template="verification_code", member=member, context={"code": "246810"}
            )
        assert services.deliver(message.pk) == "retry"
        message.refresh_from_db()
        assert message.status == OutboxMessage.Status.PENDING
        assert message.last_error == "SMS gateway answered HTTP 503"
        assert message.next_attempt_at == T0 + dt.timedelta(seconds=30)

        traveller.move_to(T0 + dt.timedelta(seconds=30))
        call_command("deliver_outbox")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.SENT
    assert message.attempts == 2
    assert len(gateway.requests) == 2
    request = gateway.requests[-1]
    assert request["path"] == "/send"
    assert request["authorization"] == "Bearer gw-token-123"
    assert request["content_type"] == "application/json"
    assert request["json"] == {
        "to": "+8613966667777",
        "template": "verification_code",
        "text": "[Patron] Your verification code is 246810. "
        "It is valid for 10 minutes. Do not share it.",
    }


def test_note_1_http_gateway_unreachable_is_a_transient_failure(settings):
    settings.PATRON_SMS = {
        **settings.PATRON_SMS,
        "BACKEND": "http",
        "HTTP_URL": f"http://127.0.0.1:{_free_port()}/send",
        "TIMEOUT": 2,
    }
    member = make_member()
    with transaction.atomic():
        (message,) = queue_notice(template="welcome", member=member)
    assert services.deliver(message.pk) == "retry"
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.attempts == 1
    assert message.last_error == "SMS gateway unreachable (URLError)"


class _Collector:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings) -> Iterator[_Collector]:
    collector = _Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield collector
    finally:
        controller.stop()


def test_note_1_email_is_delivered_over_real_smtp(smtp_server, django_capture_on_commit_callbacks):
    member = make_member(email="wang@example.com")  # zh-hans
    with django_capture_on_commit_callbacks(execute=True):
        (message,) = queue_notice(
            template="kyc_rejected",
            member=member,
            channels=("email",),
            context={"reason": "证件照片模糊"},
        )
    (envelope,) = smtp_server.envelopes
    assert envelope.rcpt_tos == ["wang@example.com"]
    assert envelope.mail_from == "no-reply@patron.local"
    parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert parsed["Subject"] == "实名认证未通过"
    assert parsed["To"] == "wang@example.com"
    assert "原因：证件照片模糊" in parsed.get_content()
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.SENT


def test_note_1_smtp_server_down_is_retried(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = _free_port()
    settings.EMAIL_TIMEOUT = 2
    member = make_member(email="zhao@example.com")
    with transaction.atomic():
        (message,) = queue_notice(template="welcome", member=member, channels=("email",))
    assert services.deliver(message.pk) == "retry"
    message.refresh_from_db()
    assert message.last_error == "email not accepted (ConnectionRefusedError)"
    assert "zhao" not in message.last_error
