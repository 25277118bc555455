"""PRIV-2: no plaintext personal data anywhere in the database after registrations."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection

from patron.core import audit
from patron.members.services.consents import record_consent
from patron.members.services.payment_methods import PaymentMethodInput, add_payment_method
from patron.members.services.profile import update_profile
from patron.members.services.status import change_status
from patron.members.services.verification import confirm_code, send_code
from patron.members.tests.members_helpers import (
    ADULT_ID,
    CREDIT_CODE,
    TODAY,
    documents,  # noqa: F401 (fixture)
    enterprise,
    individual,
    register,
)
from patron.notify.models import OutboxMessage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("documents")]

SECRETS = {
    "phone": ["13912345678", "8613912345678", "139 1234 5678"],
    "email": ["xiaoming.wang@example.org", "xiaoming.wang"],
    "name": ["王小明"],
    "address": ["建国路"],
    "id_number": [ADULT_ID, "11010520000101"],
    "enterprise phone": ["13787654321"],
    "enterprise email": ["finance@starlight.example.net"],
    "contact": ["李华"],
    "credit code": [CREDIT_CODE, "802100433"],
    "new phone": ["13600001111"],
    "new email": ["new.mail@example.org"],
    "payment token": ["tok_live_secret_91ab"],
}


def _text_columns() -> list[tuple[str, str]]:
    """Every text-like column of every table in the test database."""
    columns = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                kind = connection.introspection.get_field_type(column.type_code, column)
                if (
                    kind in ("CharField", "TextField", "JSONField")
                    or "text" in str(column.type_code).lower()
                ):
                    columns.append((table, column.name))
    return columns


def _everything_stored() -> str:
    chunks = []
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, column in _text_columns():
            cursor.execute(f"SELECT {qn(column)} FROM {qn(table)}")  # noqa: S608 (names from introspection)
            chunks.extend(str(row[0]) for row in cursor.fetchall() if row[0] is not None)
    return "\n".join(chunks)


def test_priv_2_raw_database_holds_no_plaintext_personal_data(time_machine):
    time_machine.move_to(TODAY, tick=False)
    actor = audit.Actor.system()
    person = register(
        individual(
            phone="139 1234 5678",
            email="xiaoming.wang@example.org",
            name="王小明",
            id_number=ADULT_ID,
            birth_date=dt.date(2000, 1, 1),
            address="北京市朝阳区建国路 1 号",
            marketing_opt_in=True,
        ),
        ip="203.0.113.77",
    )
    company = register(
        enterprise(
            phone="13787654321",
            email="finance@starlight.example.net",
            contact_name="李华",
            credit_code=CREDIT_CODE,
        )
    )
    code = re.search(r"\d{6}", OutboxMessage.objects.filter(member=person).last().body).group()
    confirm_code(member=person, channel="phone", code=code)
    time_machine.move_to(TODAY + dt.timedelta(minutes=2), tick=False)
    update_profile(
        member=person,
        changes={"phone": "13600001111", "email": "new.mail@example.org"},
        actor=actor,
    )
    send_code(member=company, channel="email")
    add_payment_method(
        member=person,
        data=PaymentMethodInput(provider="alipay", token="tok_live_secret_91ab", last4="4242"),
        actor=actor,
    )
    record_consent(
        member=person,
        document="marketing",
        version="1.0",
        granted=False,
        channel="api",
        actor=actor,
    )
    change_status(company, "frozen", "Documents under review", actor)

    stored = _everything_stored()
    assert len(stored) > 1000  # the scan did read the tables
    assert "Documents under review" in stored  # a plain column is visible to the scan
    for what, needles in SECRETS.items():
        for needle in needles:
            assert needle not in stored, f"plaintext {what} found in the database"
    assert "203.0.113.77" not in stored
