"""Redeeming points for rewards, and cancelling a redemption while unused (PTS-4, PTS-7).

``redeem`` checks, in order (each refusal changes nothing):

- ``quantity`` 1..``QUANTITY_MAX`` (422 ``invalid``);
- the member is active (409 ``member_not_active``);
- the reward exists (404 ``reward_not_found``), is active and within its availability
  window (409 ``reward_not_available``);
- the member's tier ranks at least the reward's ``min_tier`` (403 ``tier_too_low``);
- the member's limit per period: the quantities of the member's *active* redemptions of
  this reward since the period began (day, month or year in the program's time zone, or
  ``ever``) plus this one stay within ``per_member_limit`` (409 ``limit_reached``);
- enough stock (409 ``out_of_stock``) and enough points (409 ``insufficient_points``).

Concurrency: the member's account is locked first (``ledger.lock_account``), so one
member's redemptions run one at a time and can neither spend the same points twice nor
overrun a limit. Stock is taken with one conditional ``UPDATE ... SET stock = stock - q
WHERE stock >= q``, which holds the reward row until commit: when many members race for the
last item exactly one UPDATE matches. Lock order: account, then reward.

Idempotency: the caller's key (the request's ``Idempotency-Key``, scoped by the caller) is
the redemption's unique key ``redeem:<key>`` and its ledger entry's key; a repeat returns
the first redemption, whatever happened since.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import translation
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict, Forbidden, NotFound
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Coupon, Entry, Redemption, Reward
from patron.loyalty.services import coupons
from patron.members.services._common import refuse
from patron.notify import services as notices
from patron.notify import webhooks

if TYPE_CHECKING:
    from patron.members.models import Member

QUANTITY_MAX = 100
ID_MAX = 2**63 - 1


def _key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 180:
        raise refuse("key", "invalid", _("An idempotency key has 1 to 180 characters."))
    return f"redeem:{key}"


def period_start(period: str, now: dt.datetime, rules: program.Rules) -> dt.datetime | None:
    """When the current limit period began in the program's time zone (None: ``ever``)."""
    if period == Reward.Period.EVER:
        return None
    tz = zoneinfo.ZoneInfo(rules.time_zone)
    local = now.astimezone(tz)
    day = local.date()
    if period == Reward.Period.MONTH:
        day = day.replace(day=1)
    elif period == Reward.Period.YEAR:
        day = day.replace(month=1, day=1)
    return dt.datetime.combine(day, dt.time(), tzinfo=tz)


def redeemed_in_period(member_id: int, reward: Reward, now: dt.datetime, rules) -> int:
    """Quantity of the member's active redemptions of ``reward`` in the current period."""
    rows = Redemption.objects.filter(
        member_id=member_id, reward=reward, status=Redemption.Status.ACTIVE
    )
    start = period_start(reward.limit_period, now, rules)
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    return rows.aggregate(n=Sum("quantity"))["n"] or 0


def _first(redemption: Redemption, member: Member, reward_code: str, quantity: int) -> Redemption:
    if (
        redemption.member_id != member.pk
        or redemption.reward.code != reward_code
        or redemption.quantity != quantity
    ):
        raise Conflict(
            _("This Idempotency-Key was used for another redemption."),
            code="idempotency_key_reused",
        )
    return redemption


def _chinese() -> bool:
    return (translation.get_language() or "").lower().startswith("zh")


def _check_available(reward: Reward, now: dt.datetime) -> None:
    if not reward.active:
        raise Conflict(_("This reward is no longer offered."), code="reward_not_available")
    if reward.available_from is not None and now < reward.available_from:
        raise Conflict(_("This reward is not offered yet."), code="reward_not_available")
    if reward.available_until is not None and now >= reward.available_until:
        raise Conflict(_("This reward is no longer offered."), code="reward_not_available")


def redeem(
    member: Member, reward_code: str, quantity: int, *, key: str, actor: Actor
) -> Redemption:
    """Spend points on ``quantity`` of a reward; issues one coupon code per item."""
    full_key = _key(key)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise refuse("quantity", "invalid", _("Enter a whole number."))
    first = Redemption.objects.select_related("reward").filter(key=full_key).first()
    if first is not None:
        return _first(first, member, reward_code, quantity)
    if not 1 <= quantity <= QUANTITY_MAX:
        raise refuse(
            "quantity", "invalid", _("Redeem from 1 to %(max)s at a time.") % {"max": QUANTITY_MAX}
        )
    if member.status != member.Status.ACTIVE:
        raise Conflict(_("Only active members can redeem points."), code="member_not_active")
    reward = (
        Reward.objects.filter(code=reward_code).first() if isinstance(reward_code, str) else None
    )
    if reward is None:
        raise NotFound(_("No reward has this code."), code="reward_not_found")
    rules = program.current()
    try:
        with transaction.atomic():
            account = ledger.lock_account(member.pk)
            # A parallel request with this key may have committed while we waited.
            first = Redemption.objects.select_related("reward").filter(key=full_key).first()
            if first is not None:
                return _first(first, member, reward_code, quantity)
            return _redeem(member, account, reward, quantity, full_key, rules, actor)
    except IntegrityError:
        # Same key, another member (different account locks): the first one stands.
        first = Redemption.objects.select_related("reward").filter(key=full_key).first()
        if first is None:
            raise
        return _first(first, member, reward_code, quantity)


def _redeem(
    member: Member,
    account: Account,
    reward: Reward,
    quantity: int,
    full_key: str,
    rules: program.Rules,
    actor: Actor,
) -> Redemption:
    now = clock.now()
    reward.refresh_from_db()
    _check_available(reward, now)
    if reward.min_tier and rules.rank(account.tier) < rules.rank(reward.min_tier):
        needed = rules.tier(reward.min_tier)
        raise Forbidden(
            _("This reward is for %(tier)s members and above.")
            % {"tier": needed.name if _chinese() else needed.name_en},
            code="tier_too_low",
        )
    if reward.per_member_limit is not None:
        used = redeemed_in_period(member.pk, reward, now, rules)
        if used + quantity > reward.per_member_limit:
            raise Conflict(
                _("You can redeem this reward %(limit)s times per period; %(used)s used.")
                % {"limit": reward.per_member_limit, "used": used},
                code="limit_reached",
            )
    if reward.stock is not None and reward.stock < quantity:
        raise Conflict(_("This reward is out of stock."), code="out_of_stock")
    points = reward.cost_points * quantity
    if account.available < points:
        raise ledger.InsufficientPoints(account.available, points)
    with transaction.atomic():  # savepoint: a key taken meanwhile is an IntegrityError
        redemption = Redemption.objects.create(
            member=member,
            reward=reward,
            quantity=quantity,
            points=points,
            key=full_key,
            created_at=now,
        )
    ledger.spend(
        account,
        points,
        key=full_key,
        actor=actor,
        kind=Entry.Kind.REDEEM,
        redemption_id=redemption.pk,
        reason=reward.code,
    )
    # Last, so the hot reward row is held for as short a time as possible.
    if reward.stock is not None:
        taken = Reward.objects.filter(pk=reward.pk, stock__gte=quantity).update(
            stock=F("stock") - quantity
        )
        if not taken:
            raise Conflict(_("This reward is out of stock."), code="out_of_stock")
    issued = [
        coupons.issue(
            member,
            source=Coupon.Source.REDEMPTION,
            value=reward.value,
            min_spend=reward.min_spend,
            valid_days=reward.valid_days,
            key=f"{full_key}:{i}",
            reward=reward,
            redemption=redemption,
            actor=actor,
        )
        for i in range(1, quantity + 1)
    ]
    if actor.type == "staff":
        audit.record(
            "redemption.created",
            actor=actor,
            subject=redemption,
            details={"member_id": member.pk, "reward": reward.code, "quantity": quantity},
        )
    webhooks.queue_event(
        "redemption.created",
        {
            "id": redemption.pk,
            "member": member.number,
            "reward": reward.code,
            "kind": reward.kind,
            "quantity": quantity,
            "points": points,
            "coupons": [c.code for c in issued],
        },
        key=f"redemption:{redemption.pk}",
    )
    notices.queue_notice(
        template="rewards_redeemed",
        member=member,
        channels=("inapp",),
        context={
            "reward": reward.name,
            "reward_en": reward.name_en or reward.name,
            "quantity": quantity,
            "points": points,
        },
        dedupe_key=f"rewards_redeemed:{redemption.pk}",
    )
    return redemption


def cancel(redemption_id: int, *, key: str | None, actor: Actor) -> Redemption:
    """Cancel an active redemption whose coupons are all unused: the coupons become void,
    the stock returns and exactly the lots it spent get their points back.

    A repeat with the same ``key`` returns the cancelled redemption; otherwise cancelling
    twice is 409 ``already_cancelled``. A used coupon: 409 ``coupon_used``.
    """
    member_id = None
    if (
        isinstance(redemption_id, int)
        and not isinstance(redemption_id, bool)
        and 1 <= redemption_id <= ID_MAX
    ):
        rows = Redemption.objects.filter(pk=redemption_id).values_list("member_id", flat=True)
        member_id = rows.first()
    if member_id is None:
        raise NotFound(_("No redemption has this id."), code="redemption_not_found")
    cancel_key = f"redeem_cancel:{redemption_id}:{key or 'once'}"
    if len(cancel_key) > 200:
        raise refuse("key", "invalid", _("An idempotency key has 1 to 180 characters."))
    with transaction.atomic():
        account = ledger.lock_account(member_id)
        redemption = (
            Redemption.objects.select_for_update().select_related("reward").get(pk=redemption_id)
        )
        if redemption.status == Redemption.Status.CANCELLED:
            if key and ledger.existing(cancel_key) is not None:
                return redemption
            raise Conflict(_("This redemption is already cancelled."), code="already_cancelled")
        voided = Coupon.objects.filter(redemption=redemption, status=Coupon.Status.ISSUED).update(
            status=Coupon.Status.VOID
        )
        if voided != redemption.coupons.count():
            raise Conflict(_("A coupon of this redemption was already used."), code="coupon_used")
        now = clock.now()
        Reward.objects.filter(pk=redemption.reward_id, stock__isnull=False).update(
            stock=F("stock") + redemption.quantity
        )
        spent = Entry.objects.get(redemption=redemption, kind=Entry.Kind.REDEEM)
        ledger.restore(account, spent, key=cancel_key, actor=actor)
        redemption.status = Redemption.Status.CANCELLED
        redemption.cancelled_at = now
        redemption.save(update_fields=["status", "cancelled_at"])
        if actor.type == "staff":
            audit.record(
                "redemption.cancelled",
                actor=actor,
                subject=redemption,
                details={"member_id": member_id, "reward": redemption.reward.code},
            )
    return redemption
