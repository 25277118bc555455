"""OPS-1: ``patron demo``, ``createadmin`` and ``create-api-key``; secrets printed once."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from patron.api.keys import SCOPES, key_from_token
from patron.api.models import ApiKey
from patron.members.models import ConsentDocument, Member, User
from patron.members.selectors import missing_consents
from patron.members.tests.members_helpers import counts
from tests.fixtures import PlatformClient

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_ops_1_demo_creates_documents_roles_admin_key_and_active_members():
    out = run("demo", "--if-empty")
    docs = {(d.kind, d.version, d.required) for d in ConsentDocument.objects.all()}
    assert docs == {
        ("terms", "1.0", True),
        ("privacy", "1.0", True),
        ("sensitive", "1.0", False),
        ("marketing", "1.0", False),
    }
    assert all(
        d.title and d.body and d.title_en and d.body_en for d in ConsentDocument.objects.all()
    )
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert list(admin.groups.values_list("name", flat=True)) == ["administrator"]
    password = re.search(r"administrator: admin / (\S+)", out).group(1)
    assert admin.check_password(password)
    assert password not in admin.password
    secret = re.search(r"API key \(all scopes\): (\S+)", out).group(1)
    key = key_from_token(secret)
    assert sorted(key.scopes) == sorted(SCOPES)
    members = Member.objects.order_by("id")
    assert members.count() == 3
    assert {m.status for m in members} == {"active"}
    assert all(m.phone_verified_at for m in members)
    assert all(missing_consents(m) == [] for m in members)
    assert {m.kind for m in members} == {"individual", "enterprise"}
    member_password = re.search(r"demo members: .* / password (\S+)", out).group(1)
    assert Client().login(username="demo_wang", password=member_password)
    response = PlatformClient(secret).get(f"/api/v1/members/{members[0].number}")
    assert response.status_code == 200
    # Loyalty demo data: a catalog and a history whose delivered orders are past their
    # return window (available points) plus a recent paid order (pending points).
    from patron.loyalty.models import Account, Reward
    from patron.loyalty.verify import verify_ledger

    assert Reward.objects.count() == 3
    points = PlatformClient(secret).get(f"/api/v1/members/{members[0].number}/points").json()
    assert points["available"] > 0 and points["pending"] == 0
    assert Account.objects.filter(pending__gt=0).exists()
    assert verify_ledger().ok


def test_ops_1_demo_if_empty_does_nothing_the_second_time():
    run("demo", "--if-empty")
    before = counts(ApiKey, ConsentDocument)
    out = run("demo", "--if-empty")
    assert "nothing to do" in out
    assert counts(ApiKey, ConsentDocument) == before


def test_ops_1_demo_without_if_empty_keeps_the_admin_and_adds_a_key():
    run("demo")
    admin_hash = User.objects.get(username="admin").password
    out = run("demo")
    assert "exists already" in out
    assert User.objects.get(username="admin").password == admin_hash
    assert Member.objects.count() == 3
    assert ApiKey.objects.count() == 2


def test_auth_6_createadmin_prints_a_random_password_once():
    out = run("createadmin", "--username", "boss")
    password = re.search(r"password \(shown once, store it now\): (\S+)", out).group(1)
    user = User.objects.get(username="boss")
    assert user.check_password(password) and user.is_staff and user.is_superuser
    assert user.groups.filter(name="administrator").exists()
    before = counts()
    with pytest.raises(CommandError, match="already exists"):
        run("createadmin", "--username", "BOSS")
    assert counts() == before


def test_api_create_api_key_command_prints_the_key_once():
    out = run(
        "create_api_key", "--name", "shop", "--scope", "members:read", "--scope", "kyc:callback"
    )
    secret = re.search(r"key \(shown once, store it now\): (\S+)", out).group(1)
    key = key_from_token(secret)
    assert key.name == "shop"
    assert key.scopes == ["kyc:callback", "members:read"]
    assert secret not in str(ApiKey.objects.values_list("digest", "prefix"))
    before = counts(ApiKey)
    with pytest.raises(CommandError, match="known scopes"):
        run("create_api_key", "--name", "shop", "--scope", "members:everything")
    assert counts(ApiKey) == before
