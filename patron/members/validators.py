"""Checks on identity data (REG-1, REG-4, KYC-1, KYC-2).

Each check raises ``core.exceptions.ValidationFailed`` naming the field and a stable code,
so every entry point (API, portal, headless) refuses the same input the same way.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError

from patron.core.exceptions import ValidationFailed


def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_adult(birth: dt.date, today: dt.date, field: str = "birth_date") -> None:
    """REG-4: members must be at least PATRON_MINIMUM_AGE (18) years old."""
    if birth > today:
        raise ValidationFailed.single(
            field, "birth_date_in_future", "The birth date is in the future."
        )
    minimum = settings.PATRON_MINIMUM_AGE
    if age_on(birth, today) < minimum:
        raise ValidationFailed.single(
            field, "minor", f"Members must be at least {minimum} years old."
        )


def check_id_number(value: str, field: str = "id_number") -> tuple[str, dt.date]:
    """GB 11643 resident ID number: returns (normalised number, embedded birth date)."""
    try:
        number = ric.validate(value)
        birth = ric.get_birth_date(number)
    except StdnumError as exc:
        raise ValidationFailed.single(
            field, "invalid_id_number", "The ID number is not a valid resident ID number."
        ) from exc
    return number, birth


def check_credit_code(value: str, field: str = "credit_code") -> str:
    """GB 32100 unified social credit code: returns the normalised code."""
    try:
        return uscc.validate(value)
    except StdnumError as exc:
        raise ValidationFailed.single(
            field, "invalid_credit_code", "The unified social credit code is not valid."
        ) from exc
