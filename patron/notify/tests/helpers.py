"""Test helpers for notify: a member row made directly (notify must not depend on the
registration flow), and raw-row reads that bypass field decryption."""

from __future__ import annotations

import itertools

from django.db import connection

from patron.core.crypto import blind_index
from patron.members import normalize
from patron.members.models import Member, User

_seq = itertools.count(1)


def make_member(
    *,
    phone: str | None = None,
    email: str = "",
    language: str = "zh-hans",
    **extra,
) -> Member:
    n = next(_seq)
    phone = phone or f"+86138{n:08d}"
    user = User.objects.create_user(f"notify{n}", None)
    return Member.objects.create(
        user=user,
        number=f"{900000000000 + n}",
        kind=Member.Kind.INDIVIDUAL,
        status=Member.Status.ACTIVE,
        phone=phone,
        phone_index=blind_index(phone, "phone"),
        email=email,
        email_index=blind_index(normalize.email_or_none(email) or "", "email") if email else None,
        language=language,
        **extra,
    )


def raw_outbox_rows() -> list[tuple]:
    """Every outbox row exactly as the database holds it (no decryption)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_address, subject, body, dedupe_key, template, last_error"
            " FROM notify_outboxmessage"
        )
        return cursor.fetchall()
