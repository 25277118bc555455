"""Loyalty API: order states and tiers (issue 3).

``PUT /orders/{order_id}`` is idempotent by state: sending the same state again changes
nothing and answers 200 with ``changed: false``, so no ``Idempotency-Key`` is needed (one
sent is honoured by the middleware like on any write). ``POST /orders:batch`` answers item by
item. Ids and figures only: no personal data leaves here.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Router
from pydantic import ValidationError as PydanticValidationError

from patron.api.auth import ApiKeyAuth
from patron.api.schemas.common import problems
from patron.api.schemas.orders import (
    OrderBatchIn,
    OrderBatchItemIn,
    OrderBatchOut,
    OrderIn,
    OrderOut,
    TierStatusOut,
    checked_batch_items,
)
from patron.core.audit import Actor
from patron.core.exceptions import FieldError, NotFound, PatronError, ValidationFailed
from patron.loyalty import tiers
from patron.loyalty.services import orders
from patron.members import selectors as members

router = Router(tags=["orders"])

ORDERS = ApiKeyAuth("orders:write")
READ = ApiKeyAuth("loyalty:read")


def _actor(request: HttpRequest) -> Actor:
    return Actor.api_key(request.auth.pk)  # type: ignore[attr-defined]


def _problem(error: PatronError) -> dict[str, Any]:
    """The problem+json body the single PUT would have answered with."""
    return {
        "type": f"https://patron.dev/problems/{error.code}",
        "status": error.status,
        "title": HTTPStatus(error.status).phrase,
        "detail": str(error.message),
        "code": error.code,
        "errors": [e.as_dict() for e in error.errors],
    }


def _item_errors(exc: PydanticValidationError) -> ValidationFailed:
    # The same shape ninja's validation errors get in patron.api.api.
    return ValidationFailed(
        [
            FieldError(
                ".".join(str(part) for part in item.get("loc", ())) or "body",
                item.get("type", "invalid"),
                item.get("msg", "Invalid value."),
            )
            for item in exc.errors()
        ]
    )


@router.put(
    "/orders/{order_id}",
    auth=ORDERS,
    response={200: OrderOut, **problems(401, 403, 404, 409, 422)},
    summary="Send an order's current state",
    description=(
        "Patron applies what changed since the last state it recorded for this order: "
        "**paid** earns pending points at the member's tier when paid (and upgrades the "
        "member at once when the order makes them qualify); **delivered** starts the "
        "return window (points become available when it closes); **refunded** (the total "
        "so far) and **cancelled** (only before delivery) void pending points or claw back "
        "available ones pro rata, spent points becoming debt, and undo an upgrade that no "
        "longer holds when within the return window. An order seen for the first time may "
        "come in any state.\n\n"
        "Always 200, also for a retry of the same state (`changed: false`, nothing "
        "changes). Refusals: 422 `validation_failed` (or the single field's code: "
        "`unknown_category`, `unsupported_currency`, `invalid_status`, `refund_required`, "
        "`refund_exceeds_amount`, `before_paid`, `out_of_range`...); 404 "
        "`member_not_found`; 409 `member_cancelled` (new orders), `order_conflict` "
        "(member, amount, currency, category, paid_at or delivered_at differ from what "
        "was first sent; `errors` names them), `stale_order_state` (older than the state "
        "recorded), `invalid_transition` (cancelling after delivery). Scope `orders:write`."
    ),
    operation_id="put_order",
)
def put_order(request: HttpRequest, order_id: str, payload: OrderIn):
    data = payload.model_dump()
    data["order_id"] = order_id
    return orders.apply_order(data, actor=_actor(request)).as_dict()


@router.post(
    "/orders:batch",
    auth=ORDERS,
    response={200: OrderBatchOut, **problems(401, 403, 422)},
    summary="Send up to 1,000 order states at once",
    description=(
        "For imports and high-volume senders. Each item is the body of "
        "`PUT /orders/{order_id}` with its `order_id`, checked and applied on its own: "
        "`results` has one entry per item, in order, with either `result` (as the PUT "
        "answers) or `problem` (the refusal the PUT would give). Orders not seen before "
        "are written set-based; the items of one member apply in their order. 422 "
        "`too_many_orders` above 1,000 items. Scope `orders:write`."
    ),
    operation_id="put_orders_batch",
)
def put_orders_batch(request: HttpRequest, payload: OrderBatchIn):
    items = payload.orders
    if len(items) > orders.BATCH_MAX:
        raise orders.too_many_orders()
    answers: list[Any] = [None] * len(items)
    valid: list[dict[str, Any]] = []
    where: list[int] = []
    for index, (item, data) in enumerate(zip(items, checked_batch_items(items), strict=True)):
        if data is None:  # refused: the schema itself says why, as the PUT would
            try:
                data = OrderBatchItemIn.model_validate(item).model_dump()
            except PydanticValidationError as exc:
                answers[index] = _item_errors(exc)
                continue
        valid.append(data)
        where.append(index)
    for index, answer in zip(where, orders.apply_orders(valid, actor=_actor(request)), strict=True):
        answers[index] = answer
    results = []
    for item, answer in zip(items, answers, strict=True):
        order_id = item.get("order_id") if isinstance(item, dict) else None
        entry: dict[str, Any] = {
            "order_id": order_id if isinstance(order_id, str) else None,
            "result": None,
            "problem": None,
        }
        if isinstance(answer, PatronError):
            entry["problem"] = _problem(answer)
        else:
            entry["result"] = answer.as_dict()
        results.append(entry)
    # Serialised here rather than validated against OrderBatchOut again: for 1,000 results
    # that validation cost as much as writing the orders. The shape is the same (tested).
    return HttpResponse(
        json.dumps({"results": results}, cls=DjangoJSONEncoder, ensure_ascii=False),
        content_type="application/json",
    )


@router.get(
    "/members/{number}/tier",
    auth=READ,
    response={200: TierStatusOut, **problems(401, 403, 404)},
    summary="A member's tier and what it takes to rise or keep it",
    description=(
        "`number` is the 12-digit member number. The tier and since when; the rolling "
        "window's figures (spend, orders, loyalty score); what is missing for the next "
        "tier (null at the top); and what the member must still add before the next "
        "periodic evaluation to keep the tier, counting only what stays inside the window "
        "then. Scope `loyalty:read`."
    ),
    operation_id="get_member_tier",
)
def get_tier(request: HttpRequest, number: str):
    member = members.member_by_number(number)
    if member is None:
        raise NotFound(_("No member has this number."), code="member_not_found")
    return {"member": member.number, **tiers.tier_status(member)}
