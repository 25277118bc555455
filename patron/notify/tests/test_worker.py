"""NOTE-1 / OPS-1: the worker's periodic sweep picks up retries that became due."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction

from patron.core.management.commands.worker import PeriodicSweep
from patron.notify import services
from patron.notify.models import OutboxMessage
from patron.notify.services import queue_notice
from patron.notify.tests.helpers import make_member
from tests.fixtures import read_sms

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def test_note_1_periodic_sweep_delivers_a_retry_once_it_is_due(settings, tmp_path, sms_outbox):
    settings.PATRON_SMS = {**settings.PATRON_SMS, "FILE": tmp_path}  # a directory: fails
    member = make_member()
    sweep = PeriodicSweep(interval=30)
    with time_machine.travel(T0, tick=False) as traveller:
        with transaction.atomic():
            (message,) = queue_notice(template="account_locked", member=member)
        assert services.deliver(message.pk) == "retry"
        settings.PATRON_SMS = {**settings.PATRON_SMS, "FILE": sms_outbox}

        assert sweep.tick() is False  # backoff not over: nothing enqueued
        assert read_sms(sms_outbox) == []

        traveller.move_to(T0 + dt.timedelta(seconds=30))
        assert sweep.tick() is True  # enqueued; the test task backend runs it at once
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.SENT
    assert len(read_sms(sms_outbox)) == 1
    assert sweep.tick() is False


def test_ops_1_scheduler_thread_stops_at_once():
    sweep = PeriodicSweep(interval=3600)
    sweep.start()
    sweep.stop()
    sweep.join(timeout=5)
    assert not sweep.is_alive()
