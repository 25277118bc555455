"""What a headless sign-in costs besides argon2 (AUTH-2, AUTH-5; issue 2's sign-in target).

The sign-in keeps every rule (rate limits, lockout, MFA stage, session cap and list, device
notices); these tests pin the answer and the work around it so that a change that adds
statements or alters the payload shows up here.
"""

from __future__ import annotations

import pytest
from allauth.headless.adapter import DefaultHeadlessAdapter
from allauth.usersessions.models import UserSession
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from patron.members.allauth_adapter import HeadlessAdapter
from patron.members.models import KnownDevice, User
from patron.members.tests.auth_helpers import headless_login, make_member, session_token

# Statements one headless sign-in of a known member from a known device holding one earlier
# session may run, savepoints of the test's transaction included (with the per-process cache
# the tests use; the shared database cache adds one statement per cache operation, about
# 20). Measured at 25 on SQLite and 29 on PostgreSQL (where the bookkeeping takes one
# transaction, so savepoints here) when this was written.
SIGN_IN_STATEMENTS = 30
AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_auth_2_headless_user_payload_is_allauths_without_the_email_lookup():
    member = make_member(username="payload")
    user = member.user
    ours = HeadlessAdapter().serialize_user(user)
    assert ours == DefaultHeadlessAdapter().serialize_user(user)
    assert ours == {
        "id": user.pk,
        "display": "payload",
        "has_usable_password": True,
        "username": "payload",
    }
    with CaptureQueriesContext(connection) as captured:
        HeadlessAdapter().serialize_user(user)
    assert captured.captured_queries == []


@pytest.mark.django_db
def test_auth_2_headless_sign_in_stays_within_its_statement_budget():
    make_member(username="budget")
    headless_login(Client(HTTP_USER_AGENT=AGENT), "budget")  # the device is known now

    with CaptureQueriesContext(connection) as captured:
        response = headless_login(Client(HTTP_USER_AGENT=AGENT), "budget")

    assert response.status_code == 200, response.content
    statements = [q["sql"] for q in captured.captured_queries]
    assert not [sql for sql in statements if "account_emailaddress" in sql]
    assert len(statements) <= SIGN_IN_STATEMENTS, "\n".join(statements)


@pytest.mark.django_db(transaction=True)
def test_auth_5_sign_in_commits_session_record_device_and_last_login():
    member = make_member(username="committed")
    before = (Session.objects.count(), UserSession.objects.count(), KnownDevice.objects.count())

    response = headless_login(Client(HTTP_USER_AGENT=AGENT), "committed")

    assert response.status_code == 200, response.content
    token = session_token(response)
    assert Session.objects.filter(session_key=token).exists()
    assert UserSession.objects.filter(user=member.user, session_key=token).exists()
    assert KnownDevice.objects.filter(user=member.user).count() == 1
    assert User.objects.get(pk=member.user.pk).last_login is not None
    after = (Session.objects.count(), UserSession.objects.count(), KnownDevice.objects.count())
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


def _sign_in_n(username: str, n: int) -> list[str]:
    return [
        session_token(headless_login(Client(HTTP_USER_AGENT=f"{AGENT} n{i}"), username))
        for i in range(n)
    ]


@pytest.mark.django_db
def test_auth_5_sign_in_drops_ended_session_records_as_allauth_would():
    from django.contrib.auth import HASH_SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from patron.core import clock

    member = make_member(username="purger")
    ended, expired, stale_hash, live = _sign_in_n("purger", 4)
    Session.objects.filter(session_key=ended).delete()  # signed out, or cleared
    Session.objects.filter(session_key=expired).update(expire_date=clock.now())
    store = SessionStore(session_key=stale_hash)
    store[HASH_SESSION_KEY] = "not-the-current-password-hash"  # a password changed since
    store.save()

    (newest,) = _sign_in_n("purger", 1)

    kept = set(UserSession.objects.filter(user=member.user).values_list("session_key", flat=True))
    assert kept == {live, newest}
    # allauth's own check finds nothing more to drop.
    assert {s.session_key for s in UserSession.objects.purge_and_list(member.user)} == kept
    assert not Session.objects.filter(session_key=stale_hash).exists()  # flushed, as before


@pytest.mark.django_db
def test_auth_5_sign_in_checks_live_sessions_in_one_query_however_many():
    make_member(username="holder")
    _sign_in_n("holder", 1)
    with CaptureQueriesContext(connection) as one:
        _sign_in_n("holder", 1)
    _sign_in_n("holder", 5)  # seven live sessions now
    with CaptureQueriesContext(connection) as many:
        _sign_in_n("holder", 1)
    assert len(many.captured_queries) == len(one.captured_queries)
    assert UserSession.objects.filter(user__username="holder").count() == 8
