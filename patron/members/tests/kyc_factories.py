"""Builders for the KYC tests: members, reviewers, valid ID numbers and in-memory images.

Members are made straight in the database (as the registration service stores them) so the
KYC tests do not depend on every registration rule. Images are drawn with Pillow in memory;
noise makes them incompressible, so cutting bytes off really cuts pixel data.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zlib
from itertools import count

from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Permission
from PIL import Image
from stdnum.cn import ric

from patron.core import clock
from patron.core.crypto import blind_index
from patron.core.models import AuditEvent
from patron.members.models import (
    Consent,
    ConsentDocument,
    KycSubmission,
    Member,
    User,
)
from patron.notify.models import OutboxMessage

PASSWORD = "correct horse battery"
_seq = count(1)


def id_number_for(birth: dt.date, area: str = "110101", sequence: str = "123") -> str:
    """A valid GB 11643 number for someone born on ``birth`` (Beijing Dongcheng by default)."""
    body = f"{area}{birth:%Y%m%d}{sequence}"
    return body + ric.calc_check_digit(body + "0")  # it ignores the last character


ADULT_BIRTH = dt.date(1990, 3, 7)
ADULT_ID = id_number_for(ADULT_BIRTH)


def with_bad_checksum(number: str) -> str:
    last = number[-1]
    return number[:-1] + ("0" if last != "0" else "1")


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (240, 160)) -> bytes:
    noise = Image.effect_noise(size, 64).convert("RGB")
    out = io.BytesIO()
    noise.save(out, format=fmt)
    return out.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height``: a decompression bomb."""
    real = image_bytes("PNG", (8, 8))
    ihdr_data = struct.pack(">II", width, height) + real[24:29]
    chunk = b"IHDR" + ihdr_data
    ihdr = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return real[:8] + ihdr + real[33:]


def make_member(
    *,
    name: str = "王小明",
    birth_date: dt.date | None = ADULT_BIRTH,
    id_number: str = "",
    kind: str = Member.Kind.INDIVIDUAL,
    status: str = Member.Status.ACTIVE,
    email: str = "",
    contact_name: str = "",
    password: str = PASSWORD,
    language: str = "en",
) -> Member:
    n = next(_seq)
    phone = f"+86139{n:08d}"
    user = User.objects.create_user(username=f"kycmember{n}", password=password)
    return Member.objects.create(
        user=user,
        number=f"{800000000000 + n}",
        kind=kind,
        status=status,
        name=name,
        phone=phone,
        phone_index=blind_index(phone, "phone"),
        phone_verified_at=clock.now() if status != Member.Status.PENDING else None,
        email=email,
        email_index=blind_index(email, "email") if email else None,
        birth_date=birth_date.isoformat() if birth_date else "",
        id_number=id_number,
        id_number_index=blind_index(id_number, "id_number") if id_number else None,
        contact_name=contact_name,
        company_name="示例科技有限公司" if kind == Member.Kind.ENTERPRISE else "",
        language=language,
    )


def make_staff(*, permissions: tuple[str, ...] = (), username: str | None = None) -> User:
    n = next(_seq)
    user = User.objects.create_user(
        username=username or f"staff{n}", password=PASSWORD, is_staff=True
    )
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    # Staff must have TOTP to use any page (AUTH-3); these tests are not about sign-in.
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.TOTP, data={"secret": "not used by these tests"}
    )
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


def make_reviewer(**kwargs) -> User:
    return make_staff(permissions=("members.review_kyc", "members.view_kycsubmission"), **kwargs)


PUBLISHED_LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def publish_sensitive(version: str = "1.0", **kwargs) -> ConsentDocument:
    return ConsentDocument.objects.create(
        kind=ConsentDocument.Kind.SENSITIVE,
        version=version,
        title="敏感个人信息处理同意书",
        body="我们为实名认证处理您的身份证号码和证件照片。",
        title_en="Consent to processing sensitive personal information",
        body_en="We process your ID number and ID photos for real-name verification.",
        required=False,
        # Long before any test's frozen clock: "a day before the real now" would be in the
        # future of tests that travel back to a fixed date.
        published_at=kwargs.pop("published_at", PUBLISHED_LONG_AGO),
        **kwargs,
    )


def grant(member: Member, document: ConsentDocument, granted: bool = True) -> Consent:
    return Consent.objects.create(member=member, document=document, granted=granted, channel="test")


def state(member: Member | None = None) -> dict:
    """Everything a KYC refusal must leave untouched."""
    snapshot = {
        "submissions": KycSubmission.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "audit": AuditEvent.objects.count(),
        "consents": Consent.objects.count(),
    }
    if member is not None:
        fresh = Member.objects.get(pk=member.pk)
        snapshot["member"] = (
            fresh.kyc_verified_at,
            fresh.name,
            fresh.id_number,
            fresh.birth_date,
            fresh.status,
        )
    return snapshot


def decision_state(submission: KycSubmission) -> dict:
    fresh = KycSubmission.objects.defer("front_image", "back_image").get(pk=submission.pk)
    return {
        **state(submission.member),
        "submission": (
            fresh.status,
            fresh.reviewed_by_id,
            fresh.reviewed_at,
            fresh.review_note,
            fresh.provider_result,
            fresh.provider_reference,
        ),
    }
