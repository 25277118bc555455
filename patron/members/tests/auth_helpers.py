"""Helpers for the sign-in tests (AUTH-*): members made straight in the database.

They build rows directly rather than through registration so that the sign-in tests do
not depend on every registration rule; the encrypted fields and blind indexes are set as
the registration service sets them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time
from itertools import count

from django.test import Client

from patron.core import clock
from patron.core.crypto import blind_index
from patron.members import normalize
from patron.members.models import ConsentDocument, Member, User

PASSWORD = "correct horse battery"
_seq = count(1)


def make_member(
    *,
    username: str | None = None,
    password: str = PASSWORD,
    phone: str | None = None,
    email: str = "",
    status: str = Member.Status.ACTIVE,
    language: str = "en",
) -> Member:
    n = next(_seq)
    username = username or f"member{n}"
    phone = phone or f"+86138{n:08d}"
    user = User.objects.create_user(username=username, password=password)
    return Member.objects.create(
        user=user,
        number=f"{900000000000 + n}",
        kind=Member.Kind.INDIVIDUAL,
        status=status,
        name="Li Hua",
        phone=phone,
        phone_index=blind_index(phone, "phone"),
        phone_verified_at=clock.now() if status != Member.Status.PENDING else None,
        email=email,
        email_index=blind_index(normalize.email_or_none(email) or "", "email") if email else None,
        language=language,
    )


def make_staff(*, username: str = "staffer", password: str = PASSWORD) -> User:
    return User.objects.create_user(username=username, password=password, is_staff=True)


def publish(kind: str = "terms", version: str = "1.0", required: bool = True):
    return ConsentDocument.objects.create(
        kind=kind, version=version, title=f"{kind} {version}", body="...", required=required
    )


def headless_login(client: Client, identifier: str, password: str = PASSWORD, **extra):
    return client.post(
        "/api/auth/app/v1/auth/login",
        json.dumps({"username": identifier, "password": password}),
        content_type="application/json",
        **extra,
    )


def session_token(response) -> str:
    return response.json()["meta"]["session_token"]


def totp_code(secret_b32: str, at: float | None = None, period: int = 30) -> str:
    """RFC 6238 TOTP (SHA-1, 6 digits): what an authenticator app shows."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // period)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"
