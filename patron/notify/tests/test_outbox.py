"""NOTE-1: notices written to the outbox in the caller's transaction, delivered after commit
with retries and a dead-letter state."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import transaction

from patron.core.models import AuditEvent
from patron.notify import services
from patron.notify.models import InboxMessage, OutboxMessage
from patron.notify.services import queue_notice
from patron.notify.tests.helpers import make_member, raw_outbox_rows
from tests.fixtures import read_sms

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def test_note_1_code_and_address_are_encrypted_in_the_outbox(sms_outbox):
    member = make_member(phone="+8613912345678", email="li@example.com")
    with transaction.atomic():
        rows = queue_notice(
            template="verification_code",
            member=member,
            channels=("sms", "email"),
            context={"code": "482913", "minutes": 10},
        )
    assert [row.channel for row in rows] == ["sms", "email"]
    raw = raw_outbox_rows()
    assert len(raw) == 2
    dump = json.dumps(raw, default=str)
    for secret in ("482913", "13912345678", "li@example.com", "验证码"):
        assert secret not in dump
    # Decrypted through the model, the text is there.
    sms = OutboxMessage.objects.get(channel="sms")
    assert sms.to_address == "+8613912345678"
    assert "482913" in sms.body and "10 分钟" in sms.body
    assert AuditEvent.objects.count() == 0


def test_note_1_delivery_happens_only_after_commit(sms_outbox, django_capture_on_commit_callbacks):
    member = make_member(phone="+8613900000001")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        queue_notice(template="welcome", member=member)
    assert read_sms(sms_outbox) == []
    assert len(callbacks) == 1
    callbacks[0]()
    lines = read_sms(sms_outbox)
    assert len(lines) == 1


def test_note_1_rolled_back_caller_leaves_no_message(
    sms_outbox, django_capture_on_commit_callbacks
):
    member = make_member()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        queue_notice(template="welcome", member=member)
        raise RuntimeError("caller fails")
    assert callbacks == []
    assert OutboxMessage.objects.count() == 0
    assert read_sms(sms_outbox) == []


def test_note_1_sms_file_backend_writes_exact_json_keys(
    sms_outbox, django_capture_on_commit_callbacks
):
    member = make_member(phone="+8613912340000", language="en")
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        (message,) = queue_notice(
            template="verification_code", member=member, context={"code": "112233"}
        )
    (line,) = read_sms(sms_outbox)
    assert set(line) == {"to", "template", "text", "sent_at"}
    assert line["to"] == "+8613912340000"
    assert line["template"] == "verification_code"
    assert line["text"] == (
        "[Patron] Your verification code is 112233. It is valid for 10 minutes. Do not share it."
    )
    assert line["sent_at"] == "2026-11-22T10:00:00+00:00"
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.SENT
    assert message.sent_at == T0
    assert message.attempts == 1


def test_note_1_explicit_to_and_language(sms_outbox, django_capture_on_commit_callbacks):
    member = make_member(phone="+8613900000002", email="old@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        queue_notice(
            template="verification_code",
            member=member,
            channels=("email",),
            to="new@example.com",
            context={"code": "654321", "minutes": 10},
            language="en",
        )
        queue_notice(
            template="verification_code",
            member=member,
            to="+8613911112222",
            context={"code": "777888"},
        )
    (email,) = mail.outbox
    assert email.to == ["new@example.com"]
    assert email.subject == "Your Patron verification code"
    assert "654321" in email.body and "10 minutes" in email.body
    (sms,) = read_sms(sms_outbox)
    assert sms["to"] == "+8613911112222"
    assert sms["text"].startswith("【Patron】您的验证码是 777888")


def test_note_1_email_channel_without_address_is_skipped(sms_outbox):
    member = make_member(email="")
    with transaction.atomic():
        rows = queue_notice(template="welcome", member=member, channels=("email",))
    assert rows == []
    assert OutboxMessage.objects.count() == 0


def test_note_1_dedupe_key_repeat_writes_nothing(sms_outbox, django_capture_on_commit_callbacks):
    member = make_member(email="a@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        first = queue_notice(
            template="kyc_approved",
            member=member,
            channels=("sms", "email"),
            dedupe_key="kyc:1:approved",
        )
        again = queue_notice(
            template="kyc_approved",
            member=member,
            channels=("sms", "email"),
            dedupe_key="kyc:1:approved",
        )
    assert len(first) == 2
    assert again == []
    assert OutboxMessage.objects.count() == 2
    assert len(read_sms(sms_outbox)) == 1
    assert len(mail.outbox) == 1


def test_note_1_inapp_channel_creates_inbox_message(django_capture_on_commit_callbacks):
    member = make_member(language="en")
    with django_capture_on_commit_callbacks(execute=True):
        (message,) = queue_notice(
            template="kyc_rejected",
            member=member,
            channels=("inapp",),
            context={"reason": "the photo is blurred"},
        )
    (inbox,) = InboxMessage.objects.filter(member=member)
    assert inbox.subject == "Real-name verification not approved"
    assert inbox.body == ("Reason: the photo is blurred. Please correct it and submit again.")
    assert inbox.template == "kyc_rejected"
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.SENT
    # Delivering again is a no-op: exactly one inbox row.
    assert services.deliver(message.pk) == "skipped"
    assert InboxMessage.objects.filter(member=member).count() == 1


@pytest.mark.parametrize(
    "template",
    [
        "verification_code",
        "password_reset_code",
        "welcome",
        "account_locked",
        "new_device",
        "status_changed",
        "kyc_approved",
        "kyc_rejected",
        "password_changed",
        "qr_login_approved",
    ],
)
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_note_1_every_template_renders_in_both_languages(template, language):
    codes = ("verification_code", "password_reset_code")  # codes never go to the in-app inbox
    channels = ("sms", "email") if template in codes else ("sms", "email", "inapp")
    context = {"code": "123456", "minutes": 10, "reason": "r", "status": "frozen", "device": "d"}
    for channel in channels:
        subject, body = services.render(template, channel, language, context)
        assert body
        assert "{{" not in body and "{%" not in body
        if channel != "sms":
            assert subject and "\n" not in subject


def test_note_1_status_changed_text(django_capture_on_commit_callbacks, sms_outbox):
    member = make_member(language="en")
    with django_capture_on_commit_callbacks(execute=True):
        queue_notice(
            template="status_changed",
            member=member,
            context={"status": "frozen", "reason": "suspected fraud"},
        )
    (line,) = read_sms(sms_outbox)
    assert line["text"] == (
        "[Patron] Your account is frozen. Reason: suspected fraud. "
        "Questions? Contact customer care."
    )


def test_note_1_transient_failure_backs_off_then_dead_letter(settings, tmp_path, caplog):
    """The SMS file cannot be written (a directory is in the way): every attempt fails."""
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    settings.PATRON_SMS = {**settings.PATRON_SMS, "BACKEND": "file", "FILE": blocker}
    settings.PATRON_OUTBOX_MAX_ATTEMPTS = 3
    member = make_member(phone="+8613955556666")
    caplog.set_level(logging.INFO)
    with time_machine.travel(T0, tick=False) as traveller:
        with transaction.atomic():
            (message,) = queue_notice(
                template="verification_code", member=member, context={"code": "909090"}
            )
        assert services.deliver(message.pk) == "retry"
        message.refresh_from_db()
        assert message.status == OutboxMessage.Status.PENDING
        assert message.attempts == 1
        assert message.next_attempt_at == T0 + dt.timedelta(seconds=30)
        assert message.last_error == "SMS file not writable (IsADirectoryError)"

        # Not due yet: nothing happens, nothing counts.
        assert services.deliver(message.pk) == "skipped"
        assert services.deliver_due() == {"sent": 0, "retry": 0, "dead": 0, "skipped": 0}

        traveller.move_to(T0 + dt.timedelta(seconds=30))
        assert services.deliver_due() == {"sent": 0, "retry": 1, "dead": 0, "skipped": 0}
        message.refresh_from_db()
        assert message.attempts == 2
        assert message.next_attempt_at == T0 + dt.timedelta(seconds=90)

        traveller.move_to(T0 + dt.timedelta(seconds=90))
        assert services.deliver_due() == {"sent": 0, "retry": 0, "dead": 1, "skipped": 0}
        message.refresh_from_db()
        assert message.status == OutboxMessage.Status.DEAD
        assert message.attempts == 3
        assert message.sent_at is None

        traveller.move_to(T0 + dt.timedelta(days=1))
        assert services.deliver(message.pk) == "skipped"
    # Nothing personal in the stored error or in the logs.
    raw = json.dumps(raw_outbox_rows(), default=str)
    assert "909090" not in raw and "13955556666" not in raw
    assert "909090" not in caplog.text and "13955556666" not in caplog.text


def test_note_1_recovers_after_failure_and_command_is_safe_twice(settings, tmp_path):
    blocker = tmp_path / "gateway"
    blocker.mkdir()
    settings.PATRON_SMS = {**settings.PATRON_SMS, "BACKEND": "file", "FILE": blocker}
    member = make_member(phone="+8613955557777")
    with time_machine.travel(T0, tick=False) as traveller:
        with transaction.atomic():
            (message,) = queue_notice(template="password_changed", member=member)
        assert services.deliver(message.pk) == "retry"
        # The gateway comes back.
        good = tmp_path / "sms.jsonl"
        settings.PATRON_SMS = {**settings.PATRON_SMS, "FILE": good}
        traveller.move_to(T0 + dt.timedelta(minutes=1))
        call_command("deliver_outbox")
        call_command("deliver_outbox")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.SENT
    assert message.attempts == 2
    assert message.last_error == ""
    assert len(read_sms(good)) == 1


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "en"), ("en-US", "en"), ("zh-hans", "zh-hans"), ("zh-tw", "zh-hans"), ("", "zh-hans")],
)
def test_note_1_language_falls_back_to_chinese(language, expected):
    member = make_member(language=language or "zh-hans")
    with transaction.atomic():
        (message,) = queue_notice(template="welcome", member=member, language=language or None)
    assert message.language == expected


def test_note_1_unknown_channel_is_a_programming_error():
    member = make_member()
    with pytest.raises(ValueError), transaction.atomic():
        queue_notice(template="welcome", member=member, channels=("pigeon",))
    assert OutboxMessage.objects.count() == 0
