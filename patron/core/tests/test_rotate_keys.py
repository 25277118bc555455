"""PRIV-2: `patron rotate-keys` re-encrypts every personal field with the new primary key."""

from __future__ import annotations

import base64
import io

import pytest
from django.core.management import call_command
from django.db import connection

from patron.core.crypto import KeyRing
from patron.members.models import Member
from patron.members.tests.members_helpers import individual, make_documents, register

pytestmark = pytest.mark.django_db

NEW_KEY = base64.b64encode(bytes(range(100, 132))).decode()


def _raw(column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM members_member WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_priv_2_rotation_moves_every_row_to_the_new_key_and_keeps_the_data(settings):
    make_documents()
    member = register(individual(email="rotate@example.com"))
    old_ring = settings.PATRON_FIELD_KEYS
    assert KeyRing.key_id_of(_raw("phone", member.pk)) == KeyRing.parse(old_ring).primary_id

    settings.PATRON_FIELD_KEYS = f"k9:{NEW_KEY},{old_ring}"
    out = io.StringIO()
    call_command("rotate_keys", "--batch-size", "1", stdout=out)
    assert "members.Member: 1 rows re-encrypted" in out.getvalue()

    for column in ("phone", "email", "name"):
        assert KeyRing.key_id_of(_raw(column, member.pk)) == "k9"
    # Only the new key is needed now: the old one can be dropped from the ring.
    settings.PATRON_FIELD_KEYS = f"k9:{NEW_KEY}"
    reloaded = Member.objects.get(pk=member.pk)
    assert (reloaded.phone, reloaded.email) == (member.phone, "rotate@example.com")
