"""Loyalty API: the rewards catalog, redemptions and coupons (issue 3, PTS-4, BEN-1).

Each operation checks its scope, calls one service and shapes the answer; refusals are the
services' exceptions (problem+json).
"""

from __future__ import annotations

import re

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema, Status
from pydantic import Field

from patron.api.auth import ApiKeyAuth
from patron.api.routers.points import (
    actor,
    idempotency_key,
    idempotency_parameter,
    member_or_404,
    required_key,
)
from patron.api.schemas.common import problems
from patron.api.schemas.rewards import (
    CouponsOut,
    CouponUseIn,
    CouponUseOut,
    RedemptionIn,
    RedemptionOut,
    RewardsOut,
)
from patron.loyalty.models import Coupon, Redemption, Reward
from patron.loyalty.services import coupons, redemptions, rewards
from patron.members.services._common import refuse

router = Router(tags=["rewards"])

READ = ApiKeyAuth("loyalty:read")
REDEEM = ApiKeyAuth("rewards:redeem")
ORDERS = ApiKeyAuth("orders:write")
NUMBER_DOC = "`number` is the 12-digit member number."
_CURSOR = re.compile(r"[1-9][0-9]{0,18}")


def reward_out(reward: Reward) -> dict:
    return {
        "code": reward.code,
        "name": reward.name,
        "name_en": reward.name_en,
        "description": reward.description,
        "kind": reward.kind,
        "cost_points": reward.cost_points,
        "stock": reward.stock,
        "per_member_limit": reward.per_member_limit,
        "limit_period": reward.limit_period,
        "min_tier": reward.min_tier,
        "value": reward.value,
        "min_spend": reward.min_spend,
        "valid_days": reward.valid_days,
        "available_from": reward.available_from,
        "available_until": reward.available_until,
    }


def coupon_out(coupon: Coupon, reward_code: str | None = None) -> dict:
    return {
        "code": coupon.code,
        "source": coupon.source,
        "status": coupon.status,
        "value": coupon.value,
        "min_spend": coupon.min_spend,
        "currency": coupon.currency,
        "valid_from": coupon.valid_from,
        "valid_until": coupon.valid_until,
        "reward": reward_code
        if reward_code is not None
        else (coupon.reward.code if coupon.reward is not None else None),
        "redemption_id": coupon.redemption_id,
        "used_order_id": coupon.used_order_id,
        "used_at": coupon.used_at,
    }


def redemption_out(redemption: Redemption) -> dict:
    redemption = Redemption.objects.select_related("member", "reward").get(pk=redemption.pk)
    return {
        "id": redemption.pk,
        "member": redemption.member.number,
        "reward": redemption.reward.code,
        "quantity": redemption.quantity,
        "points": redemption.points,
        "status": redemption.status,
        "created_at": redemption.created_at,
        "cancelled_at": redemption.cancelled_at,
        "coupons": [
            coupon_out(c, redemption.reward.code) for c in redemption.coupons.order_by("id")
        ],
    }


class RewardsQuery(Schema):
    member: str | None = Field(
        None, description="A member number: only the rewards this member's tier may redeem."
    )


@router.get(
    "/rewards",
    auth=READ,
    response={200: RewardsOut, **problems(401, 403, 404)},
    summary="The rewards catalog",
    description=(
        "Active rewards offered now, cheapest first. With `member`, only those the member's "
        "tier may redeem. Scope `loyalty:read`."
    ),
    operation_id="list_rewards",
)
def list_rewards(request: HttpRequest, query: Query[RewardsQuery]):
    tier = None
    if query.member is not None:
        from patron.loyalty.services.benefits import tier_of

        tier = tier_of(member_or_404(query.member))
    return {"items": [reward_out(r) for r in rewards.catalog(tier=tier)]}


@router.post(
    "/members/{number}/redemptions",
    auth=REDEEM,
    response={201: RedemptionOut, **problems(401, 403, 404, 409, 422, 428)},
    summary="Redeem points for a reward",
    description=(
        f"{NUMBER_DOC} Spends `quantity` x the reward's cost from the points nearest to "
        "expiry and issues one code per item (coupon, voucher, ticket or privilege). "
        "Refusals, in order: 422 `invalid` quantity (1-100); 409 `member_not_active`; 404 "
        "`reward_not_found`; 409 `reward_not_available`; 403 `tier_too_low`; 409 "
        "`limit_reached` (per member per period in the program's time zone); 409 "
        "`out_of_stock`; 409 `insufficient_points`. `Idempotency-Key` is required (428 "
        "without it); a repeat returns the first redemption. Scope `rewards:redeem`."
    ),
    operation_id="redeem",
    openapi_extra=idempotency_parameter(True),
)
def redeem(request: HttpRequest, number: str, payload: RedemptionIn):
    key = required_key(request)
    member = member_or_404(number)
    redemption = redemptions.redeem(
        member, payload.reward, payload.quantity, key=key, actor=actor(request)
    )
    return Status(201, redemption_out(redemption))


@router.post(
    "/redemptions/{redemption_id}/cancel",
    auth=REDEEM,
    response={200: RedemptionOut, **problems(401, 403, 404, 409)},
    summary="Cancel a redemption while its codes are unused",
    description=(
        "Voids the redemption's coupons, returns the stock and puts the points back into "
        "exactly the lots they came from (points whose lot expired meanwhile are not "
        "restored). 409 `coupon_used` when a code was used; 409 `already_cancelled`, "
        "except for a repeat with the same `Idempotency-Key`, which returns the cancelled "
        "redemption. Scope `rewards:redeem`."
    ),
    operation_id="cancel_redemption",
    openapi_extra=idempotency_parameter(False),
)
def cancel(request: HttpRequest, redemption_id: int):
    key = idempotency_key(request, required=False)
    redemption = redemptions.cancel(redemption_id, key=key, actor=actor(request))
    return redemption_out(redemption)


class CouponsQuery(Schema):
    status: str | None = Field(None, description="issued, used or void")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=200)


@router.get(
    "/members/{number}/coupons",
    auth=READ,
    response={200: CouponsOut, **problems(401, 403, 404, 422)},
    summary="A member's coupons",
    description=(
        f"{NUMBER_DOC} Newest first, optionally by `status`; cursor pagination. "
        "Scope `loyalty:read`."
    ),
    operation_id="list_coupons",
)
def list_coupons(request: HttpRequest, number: str, query: Query[CouponsQuery]):
    member = member_or_404(number)
    if query.status is not None and query.status not in Coupon.Status.values:
        raise refuse("status", "invalid", _("Use issued, used or void."))
    before = None
    if query.cursor is not None:
        if not _CURSOR.fullmatch(query.cursor):
            raise refuse("cursor", "invalid_cursor", _("This cursor is not valid."))
        before = int(query.cursor)
    page, next_id = coupons.coupons_page(
        member.pk, status=query.status, before=before, limit=query.limit
    )
    return {
        "items": [coupon_out(c) for c in page],
        "next_cursor": str(next_id) if next_id else None,
    }


@router.post(
    "/coupons/{code}/use",
    auth=ORDERS,
    response={200: CouponUseOut, **problems(401, 403, 404, 409, 422)},
    summary="Use a coupon on an order",
    description=(
        "Checks, in order: 404 `coupon_not_found`; 403 `coupon_not_owned` (the `member` "
        "given, or the member of the order when Patron knows it, is not the owner); a "
        "repeat for the same `order_id` returns the first result (`replayed: true`); 409 "
        "`coupon_used` (used on another order), `coupon_void`, `coupon_not_yet_valid`, "
        "`coupon_expired`; 422 `below_min_spend`. Single use is enforced atomically. "
        "Scope `orders:write`."
    ),
    operation_id="use_coupon",
)
def use_coupon(request: HttpRequest, code: str, payload: CouponUseIn):
    result = coupons.use(
        code,
        order_id=payload.order_id,
        amount=payload.amount,
        member_number=payload.member,
        actor=actor(request),
    )
    return {
        "coupon": coupon_out(result.coupon),
        "discount": result.discount,
        "replayed": result.replayed,
    }
