"""Idempotency-Key on registration, and parallel registrations of one phone (REG-2, REG-3)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from patron.api.models import IdempotencyRecord
from patron.core import audit
from patron.core.exceptions import Conflict
from patron.members.models import Member, User
from patron.members.tests.members_helpers import (
    counts,
    documents,  # noqa: F401 (fixture)
    individual,
    register,
)
from patron.members.tests.test_api_members import body

# With transaction=True the documents fixture commits its rows, which the threads need.
pytestmark = pytest.mark.usefixtures("documents")


@pytest.mark.django_db
def test_reg_3_same_key_and_body_replays_the_first_201_without_a_second_member(platform):
    first = platform.post_json("/api/v1/members", body(), idempotency_key="reg-001")
    assert first.status_code == 201
    before = counts()
    again = platform.post_json("/api/v1/members", body(), idempotency_key="reg-001")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert counts() == before
    assert Member.objects.count() == 1


@pytest.mark.django_db
def test_reg_3_same_key_with_another_body_is_409_idempotency_key_reused(platform):
    platform.post_json("/api/v1/members", body(), idempotency_key="reg-002")
    before = counts()
    response = platform.post_json(
        "/api/v1/members",
        body(username="someone_else", phone="13900000003", email=None),
        idempotency_key="reg-002",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert counts() == before


@pytest.mark.django_db
def test_reg_3_a_refused_request_does_not_burn_its_key(platform):
    before = counts()
    response = platform.post_json(
        "/api/v1/members", body(birth_date="2010-01-01"), idempotency_key="reg-003"
    )
    assert response.status_code == 422
    assert counts() == before
    assert IdempotencyRecord.objects.count() == 0
    response = platform.post_json("/api/v1/members", body(), idempotency_key="reg-003")
    assert response.status_code == 201


def _in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # the test inspects what each thread ended with
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_reg_2_parallel_registrations_of_one_phone_make_exactly_one_member():
    size = 4

    def work(index: int):
        return register(
            individual(phone="+8613911112222", email=f"racer{index}@example.com"),
            actor=audit.Actor.system(),
        )

    results = _in_threads(size, work)
    members = [r for r in results if isinstance(r, Member)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(members) == 1, results
    assert len(conflicts) == size - 1, results
    assert {c.code for c in conflicts} == {"phone_taken"}
    assert Member.objects.count() == 1
    assert User.objects.count() == 1  # no user left behind by the losers
    if connection.vendor == "postgresql":
        assert connection.settings_dict["NAME"].startswith("test_")


@pytest.mark.django_db(transaction=True)
def test_reg_3_parallel_requests_with_one_idempotency_key_make_one_member(api_key_factory):
    from tests.fixtures import PlatformClient

    secret = api_key_factory().secret
    size = 3

    def work(index: int):
        return PlatformClient(secret).post_json(
            "/api/v1/members", body(), idempotency_key="parallel-1"
        )

    responses = _in_threads(size, work)
    statuses = sorted(getattr(r, "status_code", r) for r in responses)
    assert statuses == [201] * size, responses
    assert len({r.json()["number"] for r in responses}) == 1
    assert Member.objects.count() == 1
