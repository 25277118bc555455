"""API keys remembered per process (patron.api.keys): revocation and scope changes made in
this process apply at once, those made elsewhere within PATRON_API_KEY_CACHE_SECONDS."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patron.api import keys
from patron.api.models import ApiKey
from patron.core import clock
from patron.core.audit import Actor
from tests.fixtures import PlatformClient

pytestmark = pytest.mark.django_db
UNKNOWN_MEMBER = "/api/v1/members/123456789012"  # 404 with a valid key, 401 without


@pytest.fixture(autouse=True)
def _empty_key_cache():
    keys.forget_cached_keys()
    yield
    keys.forget_cached_keys()


def _key_queries(captured) -> int:
    return sum("api_apikey" in q["sql"] for q in captured.captured_queries)


def test_api_key_is_looked_up_once_then_remembered(settings, api_key_factory):
    settings.PATRON_API_KEY_CACHE_SECONDS = 60
    client = PlatformClient(api_key_factory().secret)
    assert client.get(UNKNOWN_MEMBER).status_code == 404
    with CaptureQueriesContext(connection) as captured:
        assert client.get(UNKNOWN_MEMBER).status_code == 404
    assert _key_queries(captured) == 0
    # Only digests are held, never the token itself.
    assert all(len(digest) == 64 for digest in keys._cached)


def test_api_key_revoked_in_this_process_is_refused_at_once(settings, api_key_factory):
    settings.PATRON_API_KEY_CACHE_SECONDS = 60
    created = api_key_factory()
    client = PlatformClient(created.secret)
    assert client.get(UNKNOWN_MEMBER).status_code == 404  # remembered now

    keys.revoke_api_key(key=created.api_key, actor=Actor.system())

    response = client.get(UNKNOWN_MEMBER)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_api_key_scope_removed_in_this_process_is_refused_at_once(settings, api_key_factory):
    settings.PATRON_API_KEY_CACHE_SECONDS = 60
    created = api_key_factory(scopes=["members:read"])
    client = PlatformClient(created.secret)
    assert client.get(UNKNOWN_MEMBER).status_code == 404

    key = ApiKey.objects.get(pk=created.api_key.pk)
    key.scopes = ["loyalty:read"]
    key.save(update_fields=["scopes"])  # as the admin does

    response = client.get(UNKNOWN_MEMBER)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_api_key_revoked_by_another_process_is_refused_within_the_cache_time(
    settings, api_key_factory
):
    settings.PATRON_API_KEY_CACHE_SECONDS = 0.5
    created = api_key_factory()
    client = PlatformClient(created.secret)
    assert client.get(UNKNOWN_MEMBER).status_code == 404
    # Another process revokes: this one sees only the row change (no signal here).
    ApiKey.objects.filter(pk=created.api_key.pk).update(revoked_at=clock.now())

    assert client.get(UNKNOWN_MEMBER).status_code == 404  # the documented delay
    time.sleep(0.6)
    assert client.get(UNKNOWN_MEMBER).status_code == 401


def test_api_key_cache_off_looks_the_key_up_every_time(settings, api_key_factory):
    settings.PATRON_API_KEY_CACHE_SECONDS = 0
    created = api_key_factory()
    client = PlatformClient(created.secret)
    assert client.get(UNKNOWN_MEMBER).status_code == 404
    ApiKey.objects.filter(pk=created.api_key.pk).update(revoked_at=clock.now())
    assert client.get(UNKNOWN_MEMBER).status_code == 401
    assert keys._cached == {}


def test_api_wrong_or_revoked_tokens_are_never_remembered(settings, api_key_factory):
    settings.PATRON_API_KEY_CACHE_SECONDS = 60
    created = api_key_factory()
    wrong = PlatformClient(created.secret[:-2] + "xx")
    assert wrong.get(UNKNOWN_MEMBER).status_code == 401
    assert keys._cached == {}
    keys.revoke_api_key(key=created.api_key, actor=Actor.system())
    assert PlatformClient(created.secret).get(UNKNOWN_MEMBER).status_code == 401
    assert keys._cached == {}
    # Each refused token costs its lookup, as before the cache.
    with CaptureQueriesContext(connection) as captured:
        assert wrong.get(UNKNOWN_MEMBER).status_code == 401
    assert _key_queries(captured) == 1
