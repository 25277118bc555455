"""REG-5, PRIV-1, PRIV-9: consent documents, append-only decisions, the new-version gate."""

from __future__ import annotations

import datetime as dt

import pytest

from patron.core import audit
from patron.core.exceptions import Conflict, ValidationFailed
from patron.core.models import AuditEvent
from patron.members import selectors
from patron.members.models import Consent, ConsentDocument
from patron.members.services.consents import accept_current, record_consent
from patron.members.services.status import change_status
from patron.members.tests.members_helpers import (
    TODAY,
    counts,
    documents,  # noqa: F401 (fixture)
    individual,
    register,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]
ACTOR = audit.Actor("member", "1")


@pytest.fixture(autouse=True)
def _today(time_machine):
    time_machine.move_to(TODAY, tick=False)


def _new_version(kind: str, version: str, days_ago: int = 1, required: bool = True):
    return ConsentDocument.objects.create(
        kind=kind,
        version=version,
        title=f"{kind} {version}",
        body="正文",
        title_en=kind,
        body_en="Body",
        required=required,
        published_at=TODAY - dt.timedelta(days=days_ago),
    )


def test_reg_5_current_documents_are_the_latest_published_per_kind():
    _new_version("privacy", "2.0")
    _new_version("terms", "9.0", days_ago=-5)  # staged for later
    current = {d.kind: d.version for d in selectors.current_documents()}
    assert current == {"terms": "1.0", "privacy": "2.0", "sensitive": "1.0", "marketing": "1.0"}
    assert [d.kind for d in selectors.current_documents()] == [
        "terms",
        "privacy",
        "sensitive",
        "marketing",
    ]


def test_priv_9_new_version_makes_consent_missing_until_accepted(time_machine):
    member = register(individual())
    assert selectors.missing_consents(member) == []
    new = _new_version("privacy", "2.0", days_ago=-1)
    assert selectors.missing_consents(member) == []  # not published yet
    time_machine.move_to(TODAY + dt.timedelta(days=2))
    assert selectors.missing_consents(member) == [new]
    consents = accept_current(member=member, channel="portal", actor=ACTOR)
    assert [c.document for c in consents] == [new]
    assert selectors.missing_consents(member) == []


def test_priv_1_decisions_are_appended_and_the_latest_counts():
    member = register(individual())
    before = Consent.objects.count()
    record_consent(
        member=member, document="marketing", version="1.0", granted=True, channel="api", actor=ACTOR
    )
    member.refresh_from_db()
    assert member.marketing_opt_in is True
    assert selectors.has_granted(member, "marketing")
    record_consent(
        member=member,
        document="marketing",
        version="1.0",
        granted=False,
        channel="portal",
        actor=ACTOR,
    )
    member.refresh_from_db()
    assert member.marketing_opt_in is False
    assert not selectors.has_granted(member, "marketing")
    assert Consent.objects.count() == before + 2
    history = selectors.consent_history(member)
    assert [(c.document.kind, c.granted) for c in history[:2]] == [
        ("marketing", False),
        ("marketing", True),
    ]
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions[-2:] == ["consent.granted", "consent.withdrawn"]


def test_priv_9_withdrawing_a_required_document_reopens_the_gate():
    member = register(individual())
    record_consent(
        member=member, document="terms", version="1.0", granted=False, channel="api", actor=ACTOR
    )
    assert [d.kind for d in selectors.missing_consents(member)] == ["terms"]


@pytest.mark.parametrize(
    ("document", "version", "code"),
    [
        ("terms", "0.9", "unknown_document"),
        ("nonsense", "1.0", "unknown_document"),
        ("privacy", "1.0", "consent_version_mismatch"),  # 2.0 is current
    ],
)
def test_reg_5_unknown_or_outdated_documents_are_refused(document, version, code):
    member = register(individual())
    _new_version("privacy", "2.0")
    before = counts()
    with pytest.raises(ValidationFailed) as info:
        record_consent(
            member=member,
            document=document,
            version=version,
            granted=True,
            channel="api",
            actor=ACTOR,
        )
    assert info.value.code == code
    assert counts() == before


def test_reg_11_cancelled_member_records_no_consent():
    member = register(individual())
    change_status(member, "cancelled", "Asked", ACTOR)
    before = counts()
    with pytest.raises(Conflict):
        record_consent(
            member=member,
            document="marketing",
            version="1.0",
            granted=True,
            channel="api",
            actor=ACTOR,
        )
    assert counts() == before
