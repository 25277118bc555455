"""REG-1..5, REG-7: registration of individuals and enterprises through the one service."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from patron.core.crypto import blind_index
from patron.core.exceptions import Conflict, ValidationFailed
from patron.core.ids import luhn_valid
from patron.core.models import AuditEvent
from patron.members.models import Consent, ConsentDocument, Member, VerificationCode
from patron.members.tests.members_helpers import (
    ADULT_ID,
    CREDIT_CODE,
    MINOR_ID,
    OTHER_CREDIT_CODE,
    TODAY,
    counts,
    documents,  # noqa: F401 (fixture)
    enterprise,
    individual,
    make_documents,
    register,
)
from patron.notify.models import OutboxMessage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]


@pytest.fixture(autouse=True)
def _today(time_machine):
    time_machine.move_to(TODAY)


def _refused(data, exc_type=ValidationFailed):
    before = counts()
    with pytest.raises(exc_type) as info:
        register(data)
    assert counts() == before, "a refused registration must write nothing"
    return info.value


def _codes(error) -> dict[str, str]:
    return {e.field: e.code for e in error.errors}


def test_reg_1_individual_is_registered_pending_with_consents_and_phone_code():
    member = register(individual(phone="138 0013 8000", email="Wang@Example.COM"))
    member.refresh_from_db()
    assert member.status == Member.Status.PENDING
    assert member.kind == "individual"
    assert member.phone == "+8613800138000"
    assert member.phone_index == blind_index("+8613800138000", "phone")
    assert member.email == "wang@example.com"  # normalised: lookups ignore case
    assert member.email_index == blind_index("wang@example.com", "email")
    assert member.birth_date == "2000-01-01"
    assert member.name == "王小明"
    assert member.user.check_password("violet tiger lantern")
    assert member.user.is_active
    assert set(Consent.objects.filter(member=member).values_list("document__kind", "granted")) == {
        ("terms", True),
        ("privacy", True),
    }
    code = VerificationCode.objects.get(member=member)
    assert code.channel == "phone" and code.target == "+8613800138000"
    sms = OutboxMessage.objects.get(member=member)
    assert (sms.channel, sms.template) == ("sms", "verification_code")
    event = AuditEvent.objects.get(action="member.registered")
    assert event.subject_id == str(member.pk)
    assert set(event.details) == {
        "kind",
        "channel",
        "user_id",
        "consent_document_ids",
        "referrer_id",
    }


def test_reg_3_member_number_is_12_digits_with_check_digit_and_not_sequential():
    numbers = [register(individual()).number for _ in range(5)]
    assert all(len(n) == 12 and n.isdigit() and luhn_valid(n) for n in numbers)
    assert len(set(numbers)) == 5
    as_ints = sorted(int(n) for n in numbers)
    assert any(b - a > 1000 for a, b in itertools.pairwise(as_ints))


def test_reg_1_enterprise_is_registered_with_credit_code():
    member = register(enterprise(credit_code="9111 0000-8021 00433b"))
    member.refresh_from_db()
    assert member.kind == "enterprise"
    assert member.credit_code == CREDIT_CODE
    assert member.credit_code_index == blind_index(CREDIT_CODE, "credit_code")
    assert member.company_name == "北京星光影城有限公司"
    assert member.contact_name == "李华"
    assert member.name == "北京星光影城有限公司"


def test_reg_4_adult_by_id_number_alone_takes_the_embedded_birth_date():
    member = register(individual(birth_date=None, id_number=ADULT_ID))
    member.refresh_from_db()
    assert member.birth_date == "2000-01-01"
    assert member.id_number == ADULT_ID
    assert member.id_number_index == blind_index(ADULT_ID, "id_number")


def test_reg_4_turning_18_today_is_allowed():
    register(individual(birth_date=dt.date(2008, 11, 22)))


def test_reg_4_minor_by_birth_date_is_refused():
    error = _refused(individual(birth_date=dt.date(2008, 11, 23)))
    assert error.status == 422
    assert error.code == "minor"
    assert _codes(error) == {"birth_date": "minor"}


def test_reg_4_minor_by_id_number_is_refused():
    error = _refused(individual(birth_date=None, id_number=MINOR_ID))
    assert _codes(error) == {"id_number": "minor"}


def test_reg_4_minor_by_id_number_with_matching_birth_date_is_refused():
    error = _refused(individual(birth_date=dt.date(2008, 11, 23), id_number=MINOR_ID))
    assert _codes(error) == {"birth_date": "minor"}


def test_reg_4_id_number_with_bad_checksum_is_refused():
    error = _refused(individual(id_number="110105200001011237"))
    assert _codes(error) == {"id_number": "invalid_id_number"}


def test_reg_4_id_number_and_birth_date_that_disagree_are_refused():
    error = _refused(individual(birth_date=dt.date(1999, 1, 1), id_number=ADULT_ID))
    assert _codes(error) == {"id_number": "id_birth_date_mismatch"}


def test_reg_4_individual_without_birth_date_or_id_number_is_refused():
    error = _refused(individual(birth_date=None))
    assert _codes(error) == {"birth_date": "required"}


def test_reg_1_bad_credit_code_is_refused():
    error = _refused(enterprise(credit_code="91110000802100433C"))
    assert _codes(error) == {"credit_code": "invalid_credit_code"}


def test_reg_1_enterprise_needs_company_credit_code_and_contact():
    error = _refused(enterprise(company_name="", credit_code=None, contact_name=" "))
    assert error.code == "validation_failed"
    assert _codes(error) == {
        "company_name": "required",
        "credit_code": "required",
        "contact_name": "required",
    }


def test_reg_2_every_bad_field_is_reported_at_once():
    error = _refused(
        individual(
            username="x",
            phone="12345",
            email="not-an-email",
            password="short",
            name="",
            accepted=[],
        )
    )
    assert error.code == "validation_failed"
    fields = {(e.field, e.code) for e in error.errors}
    assert {
        ("username", "invalid_username"),
        ("phone", "invalid_phone"),
        ("email", "invalid_email"),
        ("password", "password_too_short"),
        ("name", "required"),
        ("accepted", "consent_required"),
    } <= fields


def test_reg_2_password_like_the_phone_is_refused():
    error = _refused(individual(phone="+8613912345678", password="x13912345678x"))
    assert _codes(error) == {"password": "password_too_similar"}


def test_reg_2_common_password_is_refused():
    error = _refused(individual(password="password123"))
    assert _codes(error) == {"password": "password_too_common"}


def test_reg_2_individual_fields_are_not_taken_from_enterprises_and_back():
    error = _refused(enterprise(id_number=ADULT_ID))
    assert _codes(error) == {"id_number": "not_allowed"}
    error = _refused(individual(credit_code=CREDIT_CODE))
    assert _codes(error) == {"credit_code": "not_allowed"}


def test_reg_2_unknown_referrer_is_refused():
    error = _refused(individual(referrer="123456789012"))
    assert _codes(error) == {"referrer": "unknown_referrer"}


def test_reg_2_referrer_is_recorded():
    referrer = register(individual())
    member = register(individual(referrer=referrer.number))
    assert member.referrer == referrer


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"username": "member_taken"}, "username", "username_taken"),
        ({"phone": "+8613900000999"}, "phone", "phone_taken"),
        ({"email": "TAKEN@example.com"}, "email", "email_taken"),
    ],
)
def test_reg_2_duplicate_username_phone_or_email_is_a_409(changes, field, code):
    register(individual(username="member_taken", phone="+8613900000999", email="TAKEN@example.com"))
    error = _refused(individual(**changes), Conflict)
    assert error.status == 409
    assert error.code == code
    assert _codes(error) == {field: code}


def test_reg_2_duplicate_phone_in_another_format_is_a_409():
    register(individual(phone="+86 139-0000-0999"))
    error = _refused(individual(phone="13900000999"), Conflict)
    assert error.code == "phone_taken"


def test_reg_2_duplicate_email_in_another_case_is_a_409():
    register(individual(email="Wang.Li@Example.com"))
    error = _refused(individual(email="wang.li@example.COM"), Conflict)
    assert error.code == "email_taken"


def test_reg_1_duplicate_credit_code_is_a_409():
    register(enterprise(credit_code=CREDIT_CODE))
    error = _refused(enterprise(credit_code=CREDIT_CODE.lower()), Conflict)
    assert error.code == "credit_code_taken"
    register(enterprise(credit_code=OTHER_CREDIT_CODE))


def test_reg_5_missing_consent_is_refused():
    error = _refused(individual(accepted=["terms@1.0"]))
    assert error.code == "consent_required"
    assert _codes(error) == {"accepted": "consent_required"}


def test_reg_5_outdated_consent_version_is_refused():
    make_documents("2.0")
    # 2.0 is published after 1.0 (the module's documents), so it is now the current version.
    ConsentDocument.objects.filter(version="2.0").update(published_at=TODAY - dt.timedelta(days=1))
    error = _refused(individual(accepted=["terms@1.0", "privacy@2.0"]))
    assert error.code == "consent_version_mismatch"
    member = register(individual(accepted=["terms@2.0", "privacy@2.0"]))
    assert set(
        Consent.objects.filter(member=member).values_list("document__version", flat=True)
    ) == {"2.0"}


def test_reg_5_a_future_version_is_not_current_yet():
    ConsentDocument.objects.create(
        kind="terms", version="3.0", title="t", body="b", published_at=TODAY + dt.timedelta(days=3)
    )
    register(individual(accepted=["terms@1.0", "privacy@1.0"]))


def test_priv_1_marketing_opt_in_is_separate_and_recorded():
    quiet = register(individual())
    assert not quiet.marketing_opt_in
    assert not Consent.objects.filter(member=quiet, document__kind="marketing").exists()
    keen = register(individual(marketing_opt_in=True))
    assert keen.marketing_opt_in
    consent = Consent.objects.get(member=keen, document__kind="marketing")
    assert consent.granted and consent.channel == "api"


def test_reg_6_registration_from_an_ip_over_its_daily_cap_is_refused(settings):
    settings.PATRON_VERIFICATION = {**settings.PATRON_VERIFICATION, "DAILY_CAP_PER_IP": 2}
    register(individual(), ip="203.0.113.9")
    register(individual(), ip="203.0.113.9")
    from patron.core.exceptions import RateLimited

    before = counts()
    with pytest.raises(RateLimited):
        register(individual(), ip="203.0.113.9")
    assert counts() == before
