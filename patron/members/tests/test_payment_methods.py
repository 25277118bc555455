"""REG-10: payment methods are provider tokens only; card numbers are refused everywhere."""

from __future__ import annotations

import pytest
from django.db import connection

from patron.core import audit
from patron.core.exceptions import ValidationFailed
from patron.members.models import PaymentMethod
from patron.members.services.payment_methods import (
    PaymentMethodInput,
    add_payment_method,
    looks_like_card_number,
)
from patron.members.tests.members_helpers import (
    TODAY,
    counts,
    documents,  # noqa: F401 (fixture)
    individual,
    register,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]
ACTOR = audit.Actor.api_key(1)


@pytest.fixture(autouse=True)
def _today(time_machine):
    time_machine.move_to(TODAY, tick=False)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "card:5555555555554444;",
        "378282246310005",  # 15-digit American Express
        "6212345678901232",  # a UnionPay-like 16-digit number passing Luhn
        "4000000000000000006",  # 19 digits
    ],
)
def test_reg_10_card_numbers_are_recognised(text):
    assert looks_like_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "tok_2c9f8e7a41b6",
        "4111111111111112",  # fails Luhn
        "411111111111",  # 12 digits
        "41111111111111111111111",  # 23 digits: a long numeric token, not a card
        "2029-12",
        "",
    ],
)
def test_reg_10_other_values_are_not_card_numbers(text):
    assert not looks_like_card_number(text)


def test_reg_10_token_is_bound_encrypted():
    member = register(individual())
    method = add_payment_method(
        member=member,
        data=PaymentMethodInput(
            provider="wechatpay",
            token="wxp_tok_91ab",
            brand="visa",
            last4="4242",
            exp_month=1,
            exp_year=2027,
        ),
        actor=ACTOR,
    )
    method.refresh_from_db()
    assert method.token == "wxp_tok_91ab"
    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM members_paymentmethod WHERE id = %s", [method.pk])
        assert "wxp_tok_91ab" not in cursor.fetchone()[0]


@pytest.mark.parametrize("field", ["token", "brand", "provider", "last4"])
def test_reg_10_card_number_in_any_field_is_refused_and_nothing_stored(field):
    member = register(individual())
    values = {"provider": "alipay", "token": "tok_1", "brand": "visa", "last4": "1111"}
    values[field] = "4111 1111 1111 1111"
    before = counts()
    with pytest.raises(ValidationFailed) as info:
        add_payment_method(member=member, data=PaymentMethodInput(**values), actor=ACTOR)
    assert info.value.code == "card_number_refused"
    assert [(e.field, e.code) for e in info.value.errors] == [(field, "card_number_refused")]
    assert "4111" not in str(info.value) and "4111" not in str(info.value.errors)
    assert counts() == before
    assert PaymentMethod.objects.count() == 0


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"provider": "X"}, "provider", "invalid_provider"),
        ({"token": " "}, "token", "required"),
        ({"last4": "12a4"}, "last4", "invalid_last4"),
        ({"exp_month": 13, "exp_year": 2030}, "exp_month", "invalid_month"),
        ({"exp_month": 12, "exp_year": None}, "exp_month", "incomplete_expiry"),
        ({"exp_month": 10, "exp_year": 2026}, "exp_year", "card_expired"),
    ],
)
def test_reg_10_other_refusals_write_nothing(changes, field, code):
    member = register(individual())
    values = {"provider": "alipay", "token": "tok_1", **changes}
    before = counts()
    with pytest.raises(ValidationFailed) as info:
        add_payment_method(member=member, data=PaymentMethodInput(**values), actor=ACTOR)
    assert [(e.field, e.code) for e in info.value.errors] == [(field, code)]
    assert counts() == before


def test_reg_10_this_month_is_not_expired_yet():
    member = register(individual())
    add_payment_method(
        member=member,
        data=PaymentMethodInput(provider="alipay", token="t", exp_month=11, exp_year=2026),
        actor=ACTOR,
    )
