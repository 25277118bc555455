"""NOTE-2: platform webhooks. Signed JSON events written to the outbox in the caller's
transaction, delivered to a real local HTTP receiver with retries, backoff and a dead-letter
state; endpoints managed (and audited) in the console and by ``patron create-webhook``."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time
import uuid

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client

from patron.console.tests.helpers import csrf_post, make_staff, signed_in
from patron.core.audit import Actor
from patron.core.exceptions import Conflict, ValidationFailed
from patron.core.models import AuditEvent
from patron.members.models import Member
from patron.members.roles import ensure_roles
from patron.members.services.status import change_status
from patron.notify import services, webhooks
from patron.notify.models import OutboxMessage, WebhookEndpoint
from patron.notify.tests.helpers import make_member, raw_outbox_rows

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
STAFF = Actor("staff", "1")


# --- A real receiver ------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1:<free port> in a thread that checks every signature.

    ``statuses`` are answered in turn (the last one repeats); ``delay`` seconds pass before
    each answer. Every request is kept with its headers, raw body and verification result.
    """

    def __init__(self, statuses=(200,), delay: float = 0.0):
        self.statuses = list(statuses)
        self.delay = delay
        self.secret = ""
        self.requests: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body": body,
                        "verified": webhooks.verify_signature(
                            receiver.secret, self.headers.get("Patron-Signature", ""), body
                        ),
                    }
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = (
                    receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/patron"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses=(200,), delay: float = 0.0) -> Receiver:
        made.append(Receiver(statuses, delay))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture(autouse=True)
def _fresh_endpoint_cache():
    """Each test starts and ends with no cached endpoint list (rows roll back between tests)."""
    webhooks.forget()
    yield
    webhooks.forget()


def endpoint_for(rx: Receiver, events=("*",), name: str = "ticketing") -> WebhookEndpoint:
    created = webhooks.create_endpoint(name=name, url=rx.url, events=list(events), actor=STAFF)
    rx.secret = created.secret
    return created.endpoint


def queue(event: str, data: dict, **kwargs) -> int:
    with transaction.atomic():
        return webhooks.queue_event(event, data, **kwargs)


def state() -> dict:
    return {
        "endpoints": list(WebhookEndpoint.objects.values_list("id", "active", "deactivated_at")),
        "outbox": list(OutboxMessage.objects.values_list("id", "status", "attempts")),
        "audit": AuditEvent.objects.count(),
    }


# --- Signatures -------------------------------------------------------------------------


def test_note_2_signature_round_trip_and_every_way_to_fail():
    body = b'{"id":"x","type":"points.earned","data":{"points":120}}'
    header = webhooks.sign("whsec_abc", 1_790_000_000, body)
    assert header.startswith("t=1790000000,v1=")
    assert len(header.split("v1=")[1]) == 64
    ok = dict(secret="whsec_abc", header=header, body=body, now=1_790_000_000)
    assert webhooks.verify_signature(ok["secret"], ok["header"], ok["body"], now=ok["now"])
    # Within the tolerance either way; outside it, a replay is refused.
    assert webhooks.verify_signature("whsec_abc", header, body, now=1_790_000_300)
    assert not webhooks.verify_signature("whsec_abc", header, body, now=1_790_000_301)
    assert not webhooks.verify_signature("whsec_abc", header, body, now=1_789_999_699)
    assert webhooks.verify_signature("whsec_abc", header, body, now=1_790_009_999, tolerance=10_000)
    # Another secret, a changed body, a changed timestamp.
    assert not webhooks.verify_signature("whsec_abd", header, body, now=1_790_000_000)
    assert not webhooks.verify_signature("whsec_abc", header, body + b" ", now=1_790_000_000)
    moved = header.replace("t=1790000000", "t=1790000001")
    assert not webhooks.verify_signature("whsec_abc", moved, body, now=1_790_000_000)
    # Several v1 values (a receiver during secret rotation): any one may match.
    two = f"t=1790000000,v1={'0' * 64},{header.split(',')[1]}"
    assert webhooks.verify_signature("whsec_abc", two, body, now=1_790_000_000)
    for bad in (
        "",
        "garbage",
        "t=abc,v1=00",
        "v1=" + "0" * 64,
        "t=1790000000",
        "t=1,t=2,v1=0",
        "t=١٧٩,v1=00",
        "t=1790000000,v1=ü" + "x" * 63,
    ):
        assert not webhooks.verify_signature("whsec_abc", bad, body, now=1_790_000_000), bad
    assert not webhooks.verify_signature("", header, body, now=1_790_000_000)


# --- Queueing ---------------------------------------------------------------------------


def test_note_2_no_endpoint_writes_nothing_and_costs_no_query_once_cached(
    django_assert_num_queries,
):
    assert queue("member.registered", {"member": "100000000001", "kind": "individual"}) == 0
    with django_assert_num_queries(0):
        for _ in range(50):
            assert webhooks.queue_event("points.earned", {"member": "1", "points": 10}) == 0
    assert OutboxMessage.objects.count() == 0


def test_note_2_unknown_event_and_personal_data_are_programming_errors():
    with pytest.raises(ValueError, match="unknown webhook event"):
        webhooks.queue_event("member.deleted", {"member": "1"})
    with pytest.raises(ValueError, match="personal data"):
        webhooks.queue_event("member.registered", {"member": "1", "phone": "+8613900000000"})
    with pytest.raises(ValueError, match="personal data"):
        webhooks.queue_event("coupon.issued", {"items": [{"coupon": 1, "Email": "a@b.cn"}]})
    with pytest.raises(ValueError):
        webhooks.queue_event("points.earned", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert OutboxMessage.objects.count() == 0


def test_note_2_event_filter_and_encrypted_rows(receiver):
    only_reg = endpoint_for(receiver(), events=["member.registered"], name="crm")
    every = endpoint_for(receiver(), events=["*"], name="warehouse")
    points = endpoint_for(receiver(), events=["points.earned", "points.expired"], name="app")
    assert queue("member.registered", {"member": "100000000007", "kind": "individual"}) == 2
    rows = OutboxMessage.objects.order_by("id")
    assert [(r.endpoint_id, r.channel, r.template, r.status) for r in rows] == [
        (only_reg.pk, "webhook", "member.registered", "pending"),
        (every.pk, "webhook", "member.registered", "pending"),
    ]
    # One event, one id: both endpoints receive the same payload.
    bodies = [json.loads(r.body) for r in rows]
    assert bodies[0] == bodies[1]
    payload = bodies[0]
    assert set(payload) == {"id", "type", "created_at", "data"}
    assert uuid.UUID(payload["id"]).version == 4
    assert payload["type"] == "member.registered"
    assert payload["data"] == {"member": "100000000007", "kind": "individual"}
    assert rows[0].to_address == only_reg.url
    # Body, URL and secret are ciphertext in the database.
    dump = json.dumps(raw_outbox_rows(), default=str)
    assert "100000000007" not in dump and "127.0.0.1" not in dump
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM notify_webhookendpoint")
        raw_secrets = [row[0] for row in cursor.fetchall()]
    assert all(not s.startswith("whsec_") for s in raw_secrets)
    assert queue("points.expired", {"member": "100000000007", "points": 40}) == 2
    assert OutboxMessage.objects.filter(endpoint=points).count() == 1
    assert OutboxMessage.objects.filter(endpoint=only_reg).count() == 1


def test_note_2_key_makes_queueing_idempotent_per_endpoint(receiver):
    first = endpoint_for(receiver())
    assert queue("points.earned", {"member": "1", "points": 5}, key="order-77") == 1
    assert queue("points.earned", {"member": "1", "points": 5}, key="order-77") == 0
    second = endpoint_for(receiver(), name="second")
    # The new endpoint never had this key; the old one still has it.
    assert queue("points.earned", {"member": "1", "points": 5}, key="order-77") == 1
    assert OutboxMessage.objects.filter(endpoint=first).count() == 1
    assert OutboxMessage.objects.get(endpoint=second).dedupe_key == f"wh:{second.pk}:order-77"
    long_key = "k" * 300
    assert queue("points.earned", {"member": "1"}, key=long_key) == 2
    assert queue("points.earned", {"member": "1"}, key=long_key) == 0
    assert all(len(k) <= 128 for k in OutboxMessage.objects.values_list("dedupe_key", flat=True))


def test_note_2_events_roll_back_with_the_caller(receiver):
    endpoint_for(receiver())
    with pytest.raises(RuntimeError), transaction.atomic():
        assert webhooks.queue_event("tier.changed", {"member": "1", "from": "a", "to": "b"}) == 1
        raise RuntimeError("the caller fails")
    assert OutboxMessage.objects.count() == 0


def test_note_2_a_new_endpoint_is_seen_at_once_and_a_rolled_back_one_never(receiver):
    assert queue("coupon.issued", {"member": "1", "coupon": 3}) == 0  # caches "no endpoint"
    with pytest.raises(RuntimeError), transaction.atomic():
        endpoint_for(receiver())
        assert webhooks.queue_event("coupon.issued", {"member": "1", "coupon": 3}) == 1
        raise RuntimeError("roll the endpoint back")
    assert WebhookEndpoint.objects.count() == 0
    assert queue("coupon.issued", {"member": "1", "coupon": 3}) == 0
    assert OutboxMessage.objects.count() == 0
    endpoint_for(receiver())
    assert queue("coupon.issued", {"member": "1", "coupon": 3}) == 1


def test_note_2_inactive_endpoint_gets_nothing(receiver):
    rx = receiver()
    endpoint = endpoint_for(rx)
    assert queue("redemption.created", {"member": "1", "redemption": 9}) == 1
    pending = OutboxMessage.objects.get()
    webhooks.deactivate_endpoint(endpoint=endpoint, actor=STAFF)
    pending.refresh_from_db()
    assert (pending.status, pending.last_error) == ("dead", "webhook endpoint deactivated")
    assert queue("redemption.created", {"member": "1", "redemption": 10}) == 0
    assert OutboxMessage.objects.count() == 1
    assert services.deliver(pending.pk) == "skipped"
    assert rx.requests == []


def test_note_2_delivery_stops_when_another_process_deactivated_the_endpoint(receiver):
    rx = receiver()
    endpoint = endpoint_for(rx)
    assert queue("points.expiring", {"member": "1", "points": 50}) == 1
    # Another process deactivated it after this one queued (its cache was still warm).
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    message = OutboxMessage.objects.get()
    assert services.deliver(message.pk) == "dead"
    message.refresh_from_db()
    assert (message.attempts, message.last_error) == (1, "webhook endpoint deactivated")
    assert rx.requests == []


# --- Delivery to a real receiver --------------------------------------------------------


def test_note_2_delivered_signed_to_a_real_receiver(receiver):
    rx = receiver()
    endpoint_for(rx)
    with time_machine.travel(T0, tick=False):
        assert queue("member.status_changed", {"member": "1", "from": "active", "to": "frozen"})
        message = OutboxMessage.objects.get()
        assert services.deliver(message.pk) == "sent"
    (request,) = rx.requests
    assert request["verified"] is True
    assert request["path"] == "/hooks/patron"
    headers = request["headers"]
    body = json.loads(request["body"].decode("utf-8"))
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Patron-Webhooks/1"
    assert headers["Patron-Event"] == "member.status_changed"
    assert headers["Patron-Event-Id"] == body["id"]
    assert headers["Patron-Signature"].startswith(f"t={int(T0.timestamp())},v1=")
    assert body["type"] == "member.status_changed"
    assert body["created_at"] == "2026-11-22T10:00:00.000Z"
    assert body["data"] == {"member": "1", "from": "active", "to": "frozen"}
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("sent", 1, "")
    assert message.sent_at == T0
    # Sent is final: delivering again does nothing.
    assert services.deliver(message.pk) == "skipped"
    assert len(rx.requests) == 1


def test_note_2_retry_on_500_then_success_with_a_fresh_signature(receiver):
    rx = receiver(statuses=(500, 204))
    endpoint_for(rx)
    with time_machine.travel(T0, tick=False) as traveller:
        queue("points.earned", {"member": "1", "points": 120, "order": "A-1"})
        message = OutboxMessage.objects.get()
        assert services.deliver(message.pk) == "retry"
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("pending", 1)
        assert message.last_error == "webhook endpoint answered HTTP 500"
        assert message.next_attempt_at == T0 + dt.timedelta(seconds=30)
        assert services.deliver(message.pk) == "skipped"  # not due yet
        traveller.move_to(T0 + dt.timedelta(seconds=30))
        assert services.deliver_due() == {"sent": 1, "retry": 0, "dead": 0, "skipped": 0}
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("sent", 2, "")
    first, second = rx.requests
    assert first["verified"] and second["verified"]
    assert first["body"] == second["body"]
    assert first["headers"]["Patron-Event-Id"] == second["headers"]["Patron-Event-Id"]
    assert first["headers"]["Patron-Signature"].startswith(f"t={int(T0.timestamp())},")
    assert second["headers"]["Patron-Signature"].startswith(f"t={int(T0.timestamp()) + 30},")


def test_note_2_dead_letter_after_max_attempts(receiver, settings):
    settings.PATRON_OUTBOX_MAX_ATTEMPTS = 3
    rx = receiver(statuses=(503,))
    endpoint_for(rx)
    with time_machine.travel(T0, tick=False) as traveller:
        queue("points.expired", {"member": "1", "points": 10})
        message = OutboxMessage.objects.get()
        outcomes = []
        for _ in range(3):
            outcomes.append(services.deliver(message.pk))
            message.refresh_from_db()
            traveller.move_to(message.next_attempt_at)
    assert outcomes == ["retry", "retry", "dead"]
    assert (message.status, message.attempts) == ("dead", 3)
    assert message.last_error == "webhook endpoint answered HTTP 503"
    assert len(rx.requests) == 3 and all(r["verified"] for r in rx.requests)
    assert services.deliver(message.pk) == "skipped"


def test_note_2_timeout_is_a_retry(receiver, settings):
    settings.PATRON_WEBHOOK_TIMEOUT_SECONDS = 0.3
    rx = receiver(delay=1.5)
    endpoint_for(rx)
    queue("tier.changed", {"member": "1", "from": "silver", "to": "gold"})
    message = OutboxMessage.objects.get()
    started = time.monotonic()
    assert services.deliver(message.pk) == "retry"
    assert time.monotonic() - started < 1.4
    message.refresh_from_db()
    assert message.last_error == "webhook endpoint timed out"
    assert message.status == "pending"


def test_note_2_connection_refused_and_redirect_are_retries_without_the_url(receiver):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = webhooks.create_endpoint(
        name="gone", url=f"http://127.0.0.1:{port}/x", events=["*"], actor=STAFF
    ).endpoint
    rx = receiver(statuses=(302,))
    endpoint_for(rx, name="moved")
    queue("coupon.issued", {"member": "1", "coupon": 1})
    for message in OutboxMessage.objects.all():
        assert services.deliver(message.pk) == "retry"
    errors = dict(OutboxMessage.objects.values_list("endpoint_id", "last_error"))
    assert errors[closed.pk] == "webhook endpoint unreachable (ConnectionRefusedError)"
    assert "302" in errors[next(k for k in errors if k != closed.pk)]
    assert all("127.0.0.1" not in e and "hooks" not in e for e in errors.values())
    assert len(rx.requests) == 1  # the redirect was not followed


# --- Endpoint management ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://platform.example.com/hook", "url_scheme"),
        ("file:///etc/passwd", "url_scheme"),
        ("javascript:alert(1)", "url_scheme"),
        ("platform.example.com/hook", "url_scheme"),
        ("http://", "invalid_url"),
        ("https://exa mple.com/x", "invalid_url"),
        ("https://user:secret@platform.example.com/hook", "url_credentials"),
        ("https://platform.example.com/" + "x" * 500, "too_long"),
        ("", "required"),
    ],
)
def test_note_2_bad_url_is_refused_at_creation_and_nothing_changes(url, code):
    before = state()
    with pytest.raises(ValidationFailed) as caught:
        webhooks.create_endpoint(name="p", url=url, events=["*"], actor=STAFF)
    assert caught.value.code == code
    assert [e.field for e in caught.value.errors] == ["url"]
    assert state() == before


def test_note_2_bad_name_or_events_are_refused_and_nothing_changes():
    before = state()
    with pytest.raises(ValidationFailed) as caught:
        webhooks.create_endpoint(
            name=" ", url="https://p.example.com/h", events=["points.eaten"], actor=STAFF
        )
    assert {(e.field, e.code) for e in caught.value.errors} == {
        ("name", "required"),
        ("events", "unknown_event"),
    }
    with pytest.raises(ValidationFailed) as caught:
        webhooks.create_endpoint(name="p", url="https://p.example.com/h", events=[], actor=STAFF)
    assert caught.value.code == "required"
    with pytest.raises(ValidationFailed) as caught:
        webhooks.create_endpoint(
            name="p\x00", url="https://p.example.com/h", events=["*"], actor=STAFF
        )
    assert caught.value.code == "invalid_characters"
    assert state() == before


def test_note_2_create_and_deactivate_are_audited_without_secrets():
    created = webhooks.create_endpoint(
        name="  crm ",
        url="https://crm.example.com/hooks",
        events=["points.earned", "member.registered", "points.earned"],
        actor=STAFF,
    )
    endpoint = created.endpoint
    assert created.secret.startswith("whsec_") and len(created.secret) > 40
    assert (endpoint.name, endpoint.events) == ("crm", ["member.registered", "points.earned"])
    assert WebhookEndpoint.objects.get().secret == created.secret
    event = AuditEvent.objects.get()
    assert (event.action, event.subject_type, event.subject_id) == (
        "webhook.created",
        "webhookendpoint",
        str(endpoint.pk),
    )
    assert event.details == {"events": ["member.registered", "points.earned"], "scheme": "https"}
    webhooks.deactivate_endpoint(endpoint=endpoint, actor=STAFF)
    webhooks.deactivate_endpoint(endpoint=endpoint, actor=STAFF)  # idempotent
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "details"))
    assert actions[1:] == [("webhook.deactivated", {"abandoned_deliveries": 0})]
    assert "whsec_" not in json.dumps(list(AuditEvent.objects.values_list("details", flat=True)))
    endpoint.refresh_from_db()
    assert endpoint.active is False and endpoint.deactivated_at is not None
    before = state()
    with pytest.raises(Conflict) as caught:
        webhooks.send_test_event(endpoint=endpoint, actor=STAFF)
    assert caught.value.code == "endpoint_inactive"
    assert state() == before


def test_note_2_test_event_reaches_only_that_endpoint(receiver):
    rx = receiver()
    endpoint = endpoint_for(rx)
    other = receiver()
    endpoint_for(other, name="other")
    message = webhooks.send_test_event(endpoint=endpoint, actor=STAFF)
    assert OutboxMessage.objects.count() == 1
    assert services.deliver(message.pk) == "sent"
    (request,) = rx.requests
    assert request["verified"]
    assert request["headers"]["Patron-Event"] == "webhook.test"
    assert json.loads(request["body"])["data"] == {"endpoint": endpoint.pk}
    assert other.requests == []
    assert AuditEvent.objects.filter(action="webhook.test_queued").count() == 1


def test_note_2_administrator_role_manages_webhooks():
    groups = ensure_roles()
    assert (
        groups["administrator"]
        .permissions.filter(content_type__app_label="notify", codename="manage_webhooks")
        .exists()
    )
    assert not groups["auditor"].permissions.filter(codename="manage_webhooks").exists()


def test_note_2_create_webhook_command_prints_the_secret_once():
    from io import StringIO

    out = StringIO()
    call_command(
        "create_webhook",
        "--name",
        "erp",
        "--url",
        "https://erp.example.com/patron",
        "--event",
        "points.earned",
        "--event",
        "coupon.issued",
        stdout=out,
    )
    endpoint = WebhookEndpoint.objects.get()
    text = out.getvalue()
    assert text.count(endpoint.secret) == 1
    assert "points.earned, coupon.issued" in text
    assert AuditEvent.objects.get().action == "webhook.created"
    before = state()
    with pytest.raises(CommandError, match="url"):
        call_command(
            "create_webhook", "--name", "x", "--url", "ftp://x.example.com/", "--event", "*"
        )
    assert state() == before


# --- Domain events ----------------------------------------------------------------------


def test_note_2_status_change_emits_member_status_changed(receiver):
    endpoint = endpoint_for(receiver(), events=["member.status_changed"])
    member = make_member()
    change_status(member, "frozen", "chargeback review", STAFF)
    message = OutboxMessage.objects.get(channel="webhook")
    assert message.endpoint_id == endpoint.pk
    assert json.loads(message.body)["data"] == {
        "member": member.number,
        "from": "active",
        "to": "frozen",
    }
    change_id = member.status_changes.get().pk
    assert message.dedupe_key == f"wh:{endpoint.pk}:member.status_changed:{change_id}"


def test_note_2_registration_emits_member_registered(receiver):
    from patron.members.tests.members_helpers import individual, make_documents, register

    endpoint = endpoint_for(receiver(), events=["member.registered"])
    make_documents()
    member = register(individual())
    message = OutboxMessage.objects.get(channel="webhook")
    assert message.endpoint_id == endpoint.pk
    assert json.loads(message.body)["data"] == {"member": member.number, "kind": "individual"}
    assert Member.objects.count() == 1


# --- Console ----------------------------------------------------------------------------


def test_note_2_console_requires_manage_webhooks(receiver):
    endpoint = endpoint_for(receiver())
    client = signed_in(make_staff("members.view_member", "core.view_auditevent"))
    before = state()
    assert client.get("/console/webhooks/").status_code == 403
    assert client.get(f"/console/webhooks/{endpoint.pk}/").status_code == 403
    form = {"name": "x", "url": "https://x.example.com/h", "events": ["*"]}
    assert csrf_post(client, "/console/webhooks/", form).status_code == 403
    assert csrf_post(client, f"/console/webhooks/{endpoint.pk}/deactivate/").status_code == 403
    assert csrf_post(client, f"/console/webhooks/{endpoint.pk}/test/").status_code == 403
    assert state() == before
    assert "/console/webhooks/" not in client.get("/console/").content.decode()
    assert Client().get("/console/webhooks/").status_code == 302


def test_note_2_console_create_shows_the_secret_once_and_audits():
    staff = make_staff("notify.manage_webhooks")
    client = signed_in(staff)
    page = client.get("/console/webhooks/")
    assert page.status_code == 200
    assert 'href="/console/webhooks/"' in client.get("/console/").content.decode()
    response = csrf_post(
        client,
        "/console/webhooks/",
        {"name": "ticketing", "url": "https://t.example.com/in", "events": ["points.earned"]},
    )
    assert response.status_code == 200
    assert response["Cache-Control"].count("no-store") == 1
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.created_by_id == staff.pk
    assert endpoint.secret in response.content.decode()
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_type, event.actor_id) == (
        "webhook.created",
        "staff",
        str(staff.pk),
    )
    # Never again: not on the list, not on the detail page.
    assert endpoint.secret not in client.get("/console/webhooks/").content.decode()
    detail = client.get(f"/console/webhooks/{endpoint.pk}/").content.decode()
    assert endpoint.secret not in detail and "https://t.example.com/in" in detail


def test_note_2_console_refuses_a_bad_url_and_changes_nothing():
    client = signed_in(make_staff("notify.manage_webhooks"))
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    before = state()
    response = csrf_post(
        client,
        "/console/webhooks/",
        {"name": "x", "url": "file:///etc/passwd", "events": ["*"]},
    )
    assert response.status_code == 422
    assert "Only http:// and https:// URLs" in response.content.decode()
    assert state() == before


def test_note_2_console_deactivate_test_event_and_deliveries(receiver, settings):
    settings.PATRON_OUTBOX_MAX_ATTEMPTS = 2
    staff = make_staff("notify.manage_webhooks")
    client = signed_in(staff)
    rx = receiver(statuses=(500,))
    endpoint = endpoint_for(rx)
    response = csrf_post(client, f"/console/webhooks/{endpoint.pk}/test/")
    assert response.status_code == 302
    message = OutboxMessage.objects.get()
    assert message.template == "webhook.test"
    with time_machine.travel(message.next_attempt_at, tick=False) as traveller:
        assert services.deliver(message.pk) == "retry"
        traveller.shift(dt.timedelta(minutes=5))
        assert services.deliver(message.pk) == "dead"
    page = client.get(f"/console/webhooks/{endpoint.pk}/").content.decode()
    assert "webhook.test" in page
    assert "webhook endpoint answered HTTP 500" in page
    assert 'data-status="dead"' in page
    response = csrf_post(client, f"/console/webhooks/{endpoint.pk}/deactivate/")
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.active is False
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "webhook.created",
        "webhook.test_queued",
        "webhook.deactivated",
    ]
    before = state()
    response = csrf_post(client, f"/console/webhooks/{endpoint.pk}/test/")
    assert response.status_code == 409
    assert state() == before


def test_note_2_manage_webhooks_permission_exists():
    assert Permission.objects.filter(
        content_type__app_label="notify", codename="manage_webhooks"
    ).exists()


# --- Concurrency ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_note_2_parallel_queueing_with_one_key_writes_one_row(receiver):
    """Threads race on one key; the unique dedupe key keeps one row (both databases)."""
    from django.db import connections

    endpoint_for(receiver())
    results: list = []

    def work():
        try:
            with transaction.atomic():
                results.append(webhooks.queue_event("points.earned", {"member": "1"}, key="race"))
        except Exception as exc:
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 0, 1], results
    assert OutboxMessage.objects.count() == 1
    if connection.vendor == "postgresql":
        assert connection.settings_dict["NAME"].startswith("test_")
