"""Coupons and vouchers: issue and single use (BEN-1).

A coupon has a value, a minimum spend, a validity (``valid_from`` .. ``valid_until``, the
end of a day in the program's time zone) and is used once. Coupons are issued by
redemptions (``services.redemptions``), the birthday job (``jobs.issue_birthday_coupons``),
campaigns and staff compensation, all through ``issue``.

``use`` is what a platform calls at checkout. Its checks, in order: the code exists (404
``coupon_not_found``); it belongs to the member (403 ``coupon_not_owned``: the given member
number, or the member of the order when Patron knows the order); a repeat for the same
order returns the first result; used for another order (409 ``coupon_used``) or void (409
``coupon_void``); valid now (409 ``coupon_not_yet_valid`` / ``coupon_expired``); the amount
reaches the minimum spend (422 ``below_min_spend``). The switch from ``issued`` to ``used``
is one conditional UPDATE, so of two checkouts racing for one coupon exactly one wins.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict, FieldError, Forbidden, NotFound
from patron.loyalty import codes, ledger
from patron.loyalty import rules as program
from patron.loyalty.models import Coupon, Order, Redemption, Reward
from patron.members.services._common import failed, refuse
from patron.notify import webhooks

if TYPE_CHECKING:
    from patron.members.models import Member

CENT = Decimal("0.01")
MONEY_MAX = Decimal("999999999999.99")
VALID_DAYS_MAX = 3650
ORDER_ID_MAX = 64
_CODE_ATTEMPTS = 5
_CODE = re.compile(r"[A-Z0-9]{1,16}")


def money(value: object, field: str, errors: list[FieldError], *, positive: bool = False):
    """A Decimal with at most 2 places within the column's range, or a field error."""
    try:
        number = Decimal(str(value))
        if not number.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError, TypeError):
        errors.append(FieldError(field, "invalid", _("Enter an amount such as 99.50.")))
        return None
    if abs(number) > MONEY_MAX:
        errors.append(FieldError(field, "invalid", _("This amount is too large.")))
        return None
    if number != number.quantize(CENT):
        errors.append(FieldError(field, "invalid", _("Use at most two decimal places.")))
        return None
    if number < 0 or (positive and number == 0):
        errors.append(
            FieldError(
                field,
                "invalid",
                _("Enter an amount above zero.") if positive else _("Enter zero or more."),
            )
        )
        return None
    return number.quantize(CENT)


def valid_until_for(issued_at: dt.datetime, valid_days: int, rules: program.Rules) -> dt.datetime:
    """A coupon valid ``valid_days`` days counts the day of issue as the first: issued on
    22 November with 30 days, it is usable through 21 December (program time zone) and
    expired from that midnight."""
    last_day = ledger.local_date(issued_at, rules) + dt.timedelta(days=valid_days - 1)
    return ledger.end_of_day(last_day, rules)


def issue(
    member: Member,
    *,
    source: str,
    value: Decimal | str | int,
    min_spend: Decimal | str | int = Decimal(0),
    valid_days: int,
    key: str | None,
    reward: Reward | None = None,
    redemption: Redemption | None = None,
    actor: Actor,
) -> Coupon:
    """Issue one coupon to ``member``; a repeat with the same ``key`` returns the first one.

    Runs in the caller's transaction when there is one (a redemption, the birthday job) and
    in its own otherwise. Staff-issued coupons (campaign, compensation) are audited; all
    are announced to platforms as ``coupon.issued``.
    """
    errors: list[FieldError] = []
    if source not in Coupon.Source.values:
        errors.append(FieldError("source", "invalid", _("Unknown coupon source.")))
    amount = money(value, "value", errors)
    minimum = money(min_spend, "min_spend", errors)
    if isinstance(valid_days, bool) or not isinstance(valid_days, int):
        errors.append(FieldError("valid_days", "invalid", _("Enter a whole number of days.")))
    elif not 1 <= valid_days <= VALID_DAYS_MAX:
        errors.append(
            FieldError(
                "valid_days",
                "invalid",
                _("Enter from 1 to %(max)s days.") % {"max": VALID_DAYS_MAX},
            )
        )
    if key is not None and not 1 <= len(key) <= 200:
        errors.append(FieldError("key", "invalid", _("A key has 1 to 200 characters.")))
    if errors:
        raise failed(errors)
    with transaction.atomic():
        if key is not None:
            first = Coupon.objects.filter(key=key).first()
            if first is not None:
                if first.member_id != member.pk:
                    raise Conflict(
                        _("This key was used for another member's coupon."),
                        code="idempotency_key_reused",
                    )
                return first
        rules = program.current()
        now = clock.now()
        coupon = _create(
            member=member,
            source=source,
            value=amount,
            min_spend=minimum,
            valid_from=now,
            valid_until=valid_until_for(now, valid_days, rules),
            key=key,
            reward=reward,
            redemption=redemption,
            now=now,
        )
        if actor.type == "staff":
            audit.record(
                "coupon.issued",
                actor=actor,
                subject=coupon,
                details={"member_id": member.pk, "source": source, "value": str(amount)},
            )
        webhooks.queue_event(
            "coupon.issued", coupon_event(coupon, member), key=f"coupon:{coupon.pk}"
        )
        return coupon


def _create(**fields) -> Coupon:
    for attempt in range(_CODE_ATTEMPTS):
        try:
            with transaction.atomic():  # savepoint: a code collision retries with a new code
                return Coupon.objects.create(
                    code=codes.new_coupon_code(),
                    member=fields["member"],
                    source=fields["source"],
                    value=fields["value"],
                    min_spend=fields["min_spend"],
                    valid_from=fields["valid_from"],
                    valid_until=fields["valid_until"],
                    key=fields["key"],
                    reward=fields["reward"],
                    redemption=fields["redemption"],
                    created_at=fields["now"],
                )
        except IntegrityError:
            key = fields["key"]
            if key is not None and Coupon.objects.filter(key=key).exists():
                raise Conflict(
                    _("This coupon is being issued by another request; retry."),
                    code="concurrent_request",
                ) from None
            if attempt == _CODE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def coupon_event(coupon: Coupon, member: Member) -> dict:
    """The ``coupon.issued`` webhook data: ids and figures only."""
    return {
        "member": member.number,
        "code": coupon.code,
        "source": coupon.source,
        "value": str(coupon.value),
        "min_spend": str(coupon.min_spend),
        "currency": coupon.currency,
        "valid_from": coupon.valid_from.isoformat(),
        "valid_until": coupon.valid_until.isoformat(),
        "reward": coupon.reward.code if coupon.reward is not None else None,
        "redemption_id": coupon.redemption_id,
    }


# --- use ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponUse:
    coupon: Coupon
    discount: Decimal  # what the coupon takes off this order: min(value, amount)
    replayed: bool  # True when this repeats an earlier use for the same order


def use(
    code: str,
    *,
    order_id: str,
    amount: Decimal | str | int,
    member_number: str | None = None,
    actor: Actor,
) -> CouponUse:
    """Use a coupon on a platform order (see the module docstring for the checks)."""
    errors: list[FieldError] = []
    order_id = (order_id or "").strip() if isinstance(order_id, str) else ""
    if not 1 <= len(order_id) <= ORDER_ID_MAX:
        errors.append(FieldError("order_id", "invalid", _("An order id has 1 to 64 characters.")))
    paid = money(amount, "amount", errors, positive=True)
    if errors:
        raise failed(errors)
    assert paid is not None
    normalised = codes.normalise(code if isinstance(code, str) else "")
    coupon = (
        Coupon.objects.select_related("member").filter(code=normalised).first()
        if _CODE.fullmatch(normalised)
        else None  # not a code we could have issued: no query (and no NUL reaches the DB)
    )
    if coupon is None:
        raise NotFound(_("No coupon has this code."), code="coupon_not_found")
    if member_number is not None and member_number != coupon.member.number:
        raise Forbidden(_("This coupon belongs to another member."), code="coupon_not_owned")
    order_member = Order.objects.filter(order_id=order_id).values_list("member_id", flat=True)
    known = order_member.first()
    if known is not None and known != coupon.member_id:
        raise Forbidden(_("This coupon belongs to another member."), code="coupon_not_owned")
    if coupon.status == Coupon.Status.USED:
        return _replay_or_refuse(coupon, order_id)
    if coupon.status == Coupon.Status.VOID:
        raise Conflict(_("This coupon was cancelled."), code="coupon_void")
    now = clock.now()
    if now < coupon.valid_from:
        raise Conflict(_("This coupon is not valid yet."), code="coupon_not_yet_valid")
    if now >= coupon.valid_until:
        raise Conflict(_("This coupon has expired."), code="coupon_expired")
    if paid < coupon.min_spend:
        raise refuse(
            "amount",
            "below_min_spend",
            _("This coupon needs a spend of at least %(min)s.") % {"min": coupon.min_spend},
        )
    with transaction.atomic():
        won = Coupon.objects.filter(pk=coupon.pk, status=Coupon.Status.ISSUED).update(
            status=Coupon.Status.USED, used_order_id=order_id, used_amount=paid, used_at=now
        )
    coupon.refresh_from_db()
    if not won:
        return _replay_or_refuse(coupon, order_id)
    return CouponUse(coupon, min(coupon.value, paid), replayed=False)


def _replay_or_refuse(coupon: Coupon, order_id: str) -> CouponUse:
    if coupon.status == Coupon.Status.USED and coupon.used_order_id == order_id:
        assert coupon.used_amount is not None
        return CouponUse(coupon, min(coupon.value, coupon.used_amount), replayed=True)
    if coupon.status == Coupon.Status.VOID:
        raise Conflict(_("This coupon was cancelled."), code="coupon_void")
    raise Conflict(_("This coupon was already used."), code="coupon_used")


# --- reads -------------------------------------------------------------------------------

PAGE_MAX = 200


def coupons_page(
    member_id: int, *, status: str | None = None, before: int | None = None, limit: int = 50
) -> tuple[list[Coupon], int | None]:
    """The member's coupons, newest first, keyset-paginated on the id (``before`` = the last
    id seen). Returns the page and the next cursor (None at the end)."""
    limit = max(1, min(limit, PAGE_MAX))
    rows = Coupon.objects.filter(member_id=member_id).select_related("reward")
    if status:
        rows = rows.filter(status=status)
    if before is not None:
        rows = rows.filter(id__lt=before)
    page = list(rows.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)
