"""The admin at /console/admin/ (PRIV-2, PRIV-10, AUTH-6): masked, read-only where records
change through services, no lookups on encrypted columns, audited staff changes."""

from __future__ import annotations

import pytest
from django.db import transaction

from patron.api.keys import create_api_key
from patron.console.tests.helpers import csrf_post, make_staff, signed_in
from patron.core import audit
from patron.core.audit import Actor
from patron.core.models import AuditEvent
from patron.members.models import Member, User
from patron.notify.models import OutboxMessage
from patron.notify.services import queue_notice
from patron.notify.tests.helpers import make_member

pytestmark = pytest.mark.django_db

PHONE = "+8613912348765"


@pytest.fixture
def admin_client():
    return signed_in(make_staff(superuser=True))


@pytest.fixture
def event() -> AuditEvent:
    with transaction.atomic():
        return audit.record("demo.done", actor=Actor.system(), subject_type="demo", subject_id=1)


def test_priv_10_audit_events_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, event):
    base = "/console/admin/core/auditevent/"
    assert admin_client.get(base).status_code == 200
    assert admin_client.get(f"{base}add/").status_code == 403
    view = admin_client.get(f"{base}{event.pk}/change/")
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()
    assert admin_client.get(f"{base}{event.pk}/delete/").status_code == 403
    before = list(AuditEvent.objects.values_list("id", "hash", "details"))
    response = csrf_post(admin_client, f"{base}{event.pk}/change/", {"action": "edited"})
    assert response.status_code == 403
    response = csrf_post(admin_client, f"{base}{event.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert list(AuditEvent.objects.values_list("id", "hash", "details")) == before


def test_priv_2_member_admin_is_masked_and_searches_exactly(admin_client):
    member = make_member(phone=PHONE, name="张伟")
    other = make_member()
    page = admin_client.get("/console/admin/members/member/").content.decode()
    assert member.number in page and "+86139****8765" in page
    assert PHONE not in page and "张伟" not in page
    found = admin_client.get("/console/admin/members/member/", {"q": PHONE}).content.decode()
    assert member.number in found and other.number not in found
    detail = admin_client.get(f"/console/admin/members/member/{member.pk}/change/")
    assert detail.status_code == 200
    assert PHONE not in detail.content.decode()
    assert member.phone_index not in detail.content.decode()


@pytest.mark.parametrize(
    "lookup", ["phone_index", "phone", "email_index__startswith", "user__password"]
)
def test_priv_2_admin_refuses_lookups_on_encrypted_or_secret_columns(admin_client, lookup):
    member = make_member(phone=PHONE)
    response = admin_client.get("/console/admin/members/member/", {lookup: member.phone_index})
    assert response.status_code == 400


def test_priv_2_admin_never_shows_api_key_digests_or_outbox_texts(admin_client):
    key = create_api_key(name="Shop", scopes=["members:read"], actor=Actor.system()).api_key
    member = make_member(phone=PHONE)
    with transaction.atomic():
        (message,) = queue_notice(
            template="verification_code", member=member, context={"code": "135790"}
        )
    keys = admin_client.get(f"/console/admin/api/apikey/{key.pk}/change/").content.decode()
    assert key.prefix in keys and key.digest not in keys
    assert admin_client.get("/console/admin/api/apikey/add/").status_code == 403
    outbox = admin_client.get(
        f"/console/admin/notify/outboxmessage/{message.pk}/change/"
    ).content.decode()
    assert "verification_code" in outbox
    assert "135790" not in outbox and PHONE not in outbox


def test_note_1_admin_requeues_dead_letters_with_an_audit_event(admin_client):
    member = make_member()
    with transaction.atomic():
        (message,) = queue_notice(template="welcome", member=member)
    OutboxMessage.objects.filter(pk=message.pk).update(status="dead", attempts=6)
    response = csrf_post(
        admin_client,
        "/console/admin/notify/outboxmessage/",
        {"action": "requeue", "_selected_action": [message.pk]},
    )
    assert response.status_code == 302
    message.refresh_from_db()
    # Re-queued and (with the test task backend) delivered after commit.
    assert message.status in ("pending", "sent")
    assert message.attempts in (0, 1)
    (event,) = AuditEvent.objects.filter(action="outbox.requeued")
    assert event.subject_id == str(message.pk)


def test_auth_6_staff_account_changes_in_the_admin_are_audited(admin_client):
    response = csrf_post(
        admin_client,
        "/console/admin/members/user/add/",
        {
            "username": "new-reviewer",
            "usable_password": "true",
            "password1": "a long unusual passphrase 42",
            "password2": "a long unusual passphrase 42",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(username="new-reviewer")
    (created,) = AuditEvent.objects.filter(action="staff_user.created")
    assert created.subject_id == str(user.pk)
    assert "a long unusual passphrase 42" not in str(created.details)
    assert not Member.objects.filter(user=user).exists()
