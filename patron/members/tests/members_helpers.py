"""Helpers for the member-core tests: consent documents, registration input, row counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from itertools import count

import pytest
from django.contrib.auth.models import Group

from patron.core import audit
from patron.core.models import AuditEvent
from patron.members.models import (
    Consent,
    ConsentDocument,
    Member,
    MemberStatusChange,
    PasswordHistory,
    PaymentMethod,
    User,
    VerificationCode,
)
from patron.members.services.registration import RegistrationInput, register_member
from patron.notify.models import OutboxMessage

PASSWORD = "violet tiger lantern"
ADULT_ID = "110105200001011238"  # born 2000-01-01
MINOR_ID = "110105200811231232"  # born 2008-11-23: 17 on 2026-11-22
CREDIT_CODE = "91110000802100433B"
OTHER_CREDIT_CODE = "91310000MA1FL8LQ34"
TODAY = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
_seq = count(1)

COUNTED = (Member, User, Consent, VerificationCode, OutboxMessage, AuditEvent)


def counts(*extra) -> dict[str, int]:
    """Row counts of everything a member service could write."""
    models = (*COUNTED, MemberStatusChange, PaymentMethod, PasswordHistory, Group, *extra)
    return {model.__name__: model.objects.count() for model in models}


def make_documents(version: str = "1.0") -> dict[str, ConsentDocument]:
    docs = {}
    for kind, required in (("terms", True), ("privacy", True), ("sensitive", False)):
        docs[kind] = ConsentDocument.objects.create(
            kind=kind,
            version=version,
            title=f"{kind} 中文",
            body="正文",
            title_en=kind.title(),
            body_en="Body",
            required=required,
            published_at=TODAY - dt.timedelta(days=30),
        )
    docs["marketing"] = ConsentDocument.objects.create(
        kind="marketing",
        version=version,
        title="营销信息",
        body="正文",
        title_en="Marketing",
        body_en="Body",
        required=False,
        published_at=TODAY - dt.timedelta(days=30),
    )
    return docs


@pytest.fixture
def documents(db) -> dict[str, ConsentDocument]:
    return make_documents()


def individual(**changes) -> RegistrationInput:
    n = next(_seq)
    data = RegistrationInput(
        kind="individual",
        username=f"member_{n}",
        password=PASSWORD,
        phone=f"+86139{n:08d}",
        email=f"member{n}@example.com",
        name="王小明",
        birth_date=dt.date(2000, 1, 1),
        id_number=None,
        address="北京市朝阳区建国路 1 号",
        accepted=["terms@1.0", "privacy@1.0"],
    )
    return replace(data, **changes)


def enterprise(**changes) -> RegistrationInput:
    n = next(_seq)
    data = RegistrationInput(
        kind="enterprise",
        username=f"company_{n}",
        password=PASSWORD,
        phone=f"+86137{n:08d}",
        email=f"office{n}@example.cn",
        name="",
        birth_date=None,
        company_name="北京星光影城有限公司",
        credit_code=CREDIT_CODE,
        contact_name="李华",
        accepted=["terms@1.0", "privacy@1.0"],
    )
    return replace(data, **changes)


def register(data: RegistrationInput | None = None, **kwargs) -> Member:
    return register_member(
        data=data or individual(),
        channel=kwargs.pop("channel", "api"),
        actor=kwargs.pop("actor", audit.Actor.system()),
        **kwargs,
    )
