"""Payment methods (REG-10): a payment provider's token and display facts, never a card.

Patron is not a card-holder-data environment. Anything that looks like a primary account
number (13 to 19 digits, optionally grouped by spaces or dashes, passing the Luhn check) in
any field is refused with ``card_number_refused``, and the refusal never repeats the value.
Longer digit runs are not judged: provider tokens may be long numbers, and any 19-digit
window of a random number passes Luhn one time in ten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.exceptions import Conflict, FieldError, NotFound
from patron.core.ids import luhn_valid
from patron.members.models import Member, PaymentMethod
from patron.members.services._common import control_character_errors, failed

# A maximal run of digits in which single spaces or dashes may separate groups.
_DIGIT_RUN = re.compile(r"(?<![\d])\d(?:[ -]?\d)*(?![\d])")
_PROVIDER = re.compile(r"^[a-z0-9_.-]{2,32}$")
TOKEN_MAX = 512


def looks_like_card_number(value: str) -> bool:
    """Whether the text holds a 13-19 digit Luhn-valid run (with or without separators)."""
    for match in _DIGIT_RUN.finditer(value or ""):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


@dataclass
class PaymentMethodInput:
    provider: str
    token: str
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None


def _validate(data: PaymentMethodInput) -> list[FieldError]:
    errors = control_character_errors(vars(data))
    if errors:
        return errors
    for name in ("provider", "token", "brand", "last4"):
        if looks_like_card_number(str(getattr(data, name) or "")):
            errors.append(
                FieldError(
                    name,
                    "card_number_refused",
                    _("Card numbers are never accepted: send the payment provider's token."),
                )
            )
    if errors:
        return errors  # say nothing else about a field that held a card number
    if not _PROVIDER.match((data.provider or "").strip()):
        errors.append(
            FieldError(
                "provider", "invalid_provider", _("2 to 32 lower-case letters, digits, _ . or -.")
            )
        )
    token = (data.token or "").strip()
    if not token:
        errors.append(FieldError("token", "required", _("The provider's token is required.")))
    elif len(token) > TOKEN_MAX:
        errors.append(
            FieldError("token", "too_long", _("At most %(n)d characters.") % {"n": TOKEN_MAX})
        )
    if len((data.brand or "").strip()) > 32:
        errors.append(FieldError("brand", "too_long", _("At most 32 characters.")))
    if data.last4 and not re.fullmatch(r"\d{4}", data.last4):
        errors.append(FieldError("last4", "invalid_last4", _("Exactly four digits.")))
    if (data.exp_month is None) != (data.exp_year is None):
        errors.append(FieldError("exp_month", "incomplete_expiry", _("Give month and year.")))
    elif data.exp_month is not None and data.exp_year is not None:
        if not 1 <= data.exp_month <= 12:
            errors.append(FieldError("exp_month", "invalid_month", _("A month from 1 to 12.")))
        elif not 2000 <= data.exp_year <= 2100:
            errors.append(FieldError("exp_year", "invalid_year", _("A four-digit year.")))
        else:
            today = clock.today()
            if (data.exp_year, data.exp_month) < (today.year, today.month):
                errors.append(FieldError("exp_year", "card_expired", _("This card has expired.")))
    return errors


def add_payment_method(
    *, member: Member, data: PaymentMethodInput, actor: audit.Actor
) -> PaymentMethod:
    """Bind a provider token to the member; refuses card numbers and cancelled members."""
    errors = _validate(data)
    if errors:
        raise failed(errors)
    with transaction.atomic():
        member = Member.objects.select_for_update().get(pk=member.pk)
        if member.status == Member.Status.CANCELLED:
            raise Conflict(
                _("The member is cancelled; cancellation is final."), code="member_cancelled"
            )
        method = PaymentMethod.objects.create(
            member=member,
            provider=data.provider.strip(),
            token=data.token.strip(),
            brand=(data.brand or "").strip(),
            last4=data.last4 or "",
            exp_month=data.exp_month,
            exp_year=data.exp_year,
            created_at=clock.now(),
        )
        audit.record(
            "member.payment_method_added",
            actor=actor,
            subject=member,
            details={"payment_method_id": method.pk, "provider": method.provider},
        )
    return method


def remove_payment_method(*, member: Member, method_id: int, actor: audit.Actor) -> PaymentMethod:
    """Unbind a token (kept, marked removed, for the payment history)."""
    with transaction.atomic():
        method = (
            PaymentMethod.objects.select_for_update()
            .filter(member=member, pk=method_id, removed_at__isnull=True)
            .first()
        )
        if method is None:
            raise NotFound(_("No such payment method."))
        method.removed_at = clock.now()
        method.save(update_fields=["removed_at"])
        audit.record(
            "member.payment_method_removed",
            actor=actor,
            subject=member,
            details={"payment_method_id": method.pk},
        )
    return method
