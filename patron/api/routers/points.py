"""Loyalty API: a member's points, adjustments, activities, benefits and quotes (issue 3).

Each operation checks its scope, calls one service and shapes the answer; refusals are the
services' exceptions (problem+json). Points and figures only: no personal data leaves here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema, Status
from pydantic import Field

from patron.api.auth import ApiKeyAuth
from patron.api.schemas.common import problems
from patron.api.schemas.points import (
    ActivityIn,
    ActivityOut,
    AdjustmentIn,
    AdjustmentOut,
    BenefitsOut,
    EntriesOut,
    ExtensionIn,
    ExtensionOut,
    PointsOut,
    QuoteIn,
    QuoteOut,
)
from patron.core.audit import Actor
from patron.core.exceptions import NotFound, PatronError
from patron.loyalty import selectors
from patron.loyalty.models import Account, Entry, Order
from patron.loyalty.services import activities, benefits, points
from patron.members import selectors as members
from patron.members.models import Member
from patron.members.services._common import refuse

router = Router(tags=["points"])

READ = ApiKeyAuth("loyalty:read")
ADJUST = ApiKeyAuth("points:adjust")
ORDERS = ApiKeyAuth("orders:write")
NUMBER_DOC = "`number` is the 12-digit member number."
IDEMPOTENCY_HEADER = "Idempotency-Key"
_CURSOR = re.compile(r"[1-9][0-9]{0,18}")


def idempotency_parameter(required: bool) -> dict:
    return {
        "parameters": [
            {
                "in": "header",
                "name": IDEMPOTENCY_HEADER,
                "required": required,
                "schema": {"type": "string", "maxLength": 200},
                "description": (
                    "A key unique to this change (a UUID, say). A repeat with the same key "
                    "returns the first answer and changes nothing."
                    + (" Required: without it the answer is 428." if required else "")
                ),
            }
        ]
    }


def actor(request: HttpRequest) -> Actor:
    return Actor.api_key(request.auth.pk)  # type: ignore[attr-defined]


def idempotency_key(request: HttpRequest, *, required: bool = True) -> str | None:
    """The request's Idempotency-Key scoped by the API key (two platforms may choose the same
    key), shortened to a hash when long so the ledger key fits its column.

    Missing on an operation that needs it: 428 ``idempotency_key_required`` (RFC 6585,
    Precondition Required): the request is well formed but unsafe to retry without one.
    """
    raw = (request.headers.get(IDEMPOTENCY_HEADER) or "").strip()
    if not raw:
        if not required:
            return None
        raise PatronError(
            _("Send an Idempotency-Key header with this request."),
            code="idempotency_key_required",
            status=428,
        )
    scoped = f"k{request.auth.pk}:{raw}"  # type: ignore[attr-defined]
    if len(scoped) > 100:
        digest = hashlib.sha256(raw.encode()).hexdigest()
        scoped = f"k{request.auth.pk}:sha256:{digest}"  # type: ignore[attr-defined]
    return scoped


def required_key(request: HttpRequest) -> str:
    key = idempotency_key(request, required=True)
    assert key is not None
    return key


def member_or_404(number: str) -> Member:
    member = members.member_by_number(number)
    if member is None:
        raise NotFound(_("No member has this number."), code="member_not_found")
    return member


def expiring_out(summary: selectors.PointsSummary) -> list[dict]:
    return [{"date": e.date, "points": e.points} for e in summary.expiring]


def entry_out(entry: Entry, order_ids: dict[int, str] | None = None) -> dict:
    if order_ids is None:
        order_ids = (
            {entry.order_id: Order.objects.get(pk=entry.order_id).order_id}
            if entry.order_id
            else {}
        )
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "points": entry.points,
        "pending_delta": entry.pending_delta,
        "debt_delta": entry.debt_delta,
        "reason": entry.reason,
        "order_id": order_ids.get(entry.order_id) if entry.order_id else None,
        "redemption_id": entry.redemption_id,
        "lot_id": entry.lot_id,
        "created_at": entry.created_at,
    }


@router.get(
    "/members/{number}/points",
    auth=READ,
    response={200: PointsOut, **problems(401, 403, 404)},
    summary="A member's points",
    description=(
        f"{NUMBER_DOC} Balances and the points that lapse on each of the next 24 expiry "
        "dates. Scope `loyalty:read`."
    ),
    operation_id="get_points",
)
def get_points(request: HttpRequest, number: str):
    member = member_or_404(number)
    summary = selectors.points_summary(member.pk)
    return {
        "member": member.number,
        "tier": summary.tier,
        "available": summary.available,
        "pending": summary.pending,
        "debt": summary.debt,
        "expiring": expiring_out(summary),
    }


class EntriesQuery(Schema):
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=200)


@router.get(
    "/members/{number}/points/entries",
    auth=READ,
    response={200: EntriesOut, **problems(401, 403, 404, 422)},
    summary="A member's points history",
    description=(
        f"{NUMBER_DOC} Every change of the member's balances, newest first (append-only "
        "ledger). Cursor pagination: pass `next_cursor` as `cursor`; 422 `invalid_cursor` "
        "for a cursor not given by us. Scope `loyalty:read`."
    ),
    operation_id="list_point_entries",
)
def list_entries(request: HttpRequest, number: str, query: Query[EntriesQuery]):
    member = member_or_404(number)
    before = None
    if query.cursor is not None:
        if not _CURSOR.fullmatch(query.cursor):
            raise refuse("cursor", "invalid_cursor", _("This cursor is not valid."))
        before = int(query.cursor)
    page, next_id = selectors.entries_page(member.pk, before=before, limit=query.limit)
    order_pks = {e.order_id for e in page if e.order_id}
    order_ids = dict(Order.objects.filter(pk__in=order_pks).values_list("pk", "order_id"))
    return {
        "items": [entry_out(e, order_ids) for e in page],
        "next_cursor": str(next_id) if next_id else None,
    }


def _balances(member: Member) -> dict:
    account = Account.objects.get(pk=member.pk)
    return {"available": account.available, "pending": account.pending, "debt": account.debt}


@router.post(
    "/members/{number}/points/adjustments",
    auth=ADJUST,
    response={201: AdjustmentOut, **problems(401, 403, 404, 409, 422, 428)},
    summary="Adjust a member's points (staff)",
    description=(
        f"{NUMBER_DOC} Positive `points` credit an adjustment lot available at once; "
        "negative deduct from the lots nearest to expiry, never below zero (409 "
        "`insufficient_points`). `reason` is required. `Idempotency-Key` is required "
        "(428 `idempotency_key_required` without it): the same key never adjusts twice. "
        "Audited. Scope `points:adjust`."
    ),
    operation_id="adjust_points",
    openapi_extra=idempotency_parameter(True),
)
def adjust(request: HttpRequest, number: str, payload: AdjustmentIn):
    key = required_key(request)
    member = member_or_404(number)
    entry = points.adjust(
        member, payload.points, reason=payload.reason, key=key, actor=actor(request)
    )
    return Status(201, {"entry": entry_out(entry), **_balances(member)})


@router.post(
    "/members/{number}/points/extensions",
    auth=ADJUST,
    response={200: ExtensionOut, **problems(401, 403, 404, 409, 422)},
    summary="Extend the expiry of a member's points (staff)",
    description=(
        f"{NUMBER_DOC} Moves the expiry of the member's available lots (all, or `lots`) "
        "by `months`, with a reason; 409 `lot_not_available` when a given lot is not the "
        "member's or not available. Audited. Scope `points:adjust`."
    ),
    operation_id="extend_points_expiry",
)
def extend(request: HttpRequest, number: str, payload: ExtensionIn):
    member = member_or_404(number)
    moved = points.extend_expiry(
        member,
        months=payload.months,
        reason=payload.reason,
        actor=actor(request),
        lot_ids=payload.lots,
    )
    return {"extended": moved, "expiring": expiring_out(selectors.points_summary(member.pk))}


@router.post(
    "/members/{number}/activities",
    auth=ORDERS,
    response={201: ActivityOut, **problems(401, 403, 404, 409, 422)},
    summary="Record an activity the member joined",
    description=(
        f"{NUMBER_DOC} Adds the activity's loyalty score (and its points, when the program "
        "gives any) and raises the tier at once if the member now qualifies. The same "
        "member, activity and `occurred_at` count once: a repeat returns the first record. "
        "409 `member_not_active`; 422 `in_future`. Scope `orders:write`."
    ),
    operation_id="record_activity",
)
def record_activity(request: HttpRequest, number: str, payload: ActivityIn):
    member = member_or_404(number)
    # The natural key: one member joins one activity at one moment once, whichever platform
    # reports it and with or without an Idempotency-Key.
    when = payload.occurred_at
    try:
        moment = when.astimezone(dt.UTC).isoformat() if when.tzinfo else ""
    except OverflowError:  # year 1 or 9999 at an offset: the service refuses it
        moment = when.isoformat()
    raw = f"{member.pk}:{payload.activity}:{moment}"
    key = hashlib.sha256(raw.encode()).hexdigest() if len(raw) > 150 else raw
    event = activities.record_activity(
        member, payload.activity, payload.occurred_at, key=key, actor=actor(request)
    )
    earned = Entry.objects.filter(key=event.key).values_list("points", flat=True).first() or 0
    tier = Account.objects.filter(pk=member.pk).values_list("tier", flat=True).first()
    return Status(
        201,
        {
            "id": event.pk,
            "activity": event.name,
            "score": event.score,
            "points": earned,
            "occurred_at": event.occurred_at,
            "tier": tier or benefits.tier_of(member),
        },
    )


@router.get(
    "/members/{number}/benefits",
    auth=READ,
    response={200: BenefitsOut, **problems(401, 403, 404)},
    summary="A member's tier benefits and exclusive offers",
    description=(
        f"{NUMBER_DOC} The tier's discount, points and rebate rates, birthday coupon, "
        "benefits (codes with Chinese and English labels), the member-exclusive rewards the "
        "tier opens and whether the member has priority purchase. Scope `loyalty:read`."
    ),
    operation_id="get_benefits",
)
def get_benefits(request: HttpRequest, number: str):
    return benefits.benefits(member_or_404(number))


@router.post(
    "/members/{number}/quotes",
    auth=READ,
    response={200: QuoteOut, **problems(401, 403, 404, 422)},
    summary="Member price and points for an order",
    description=(
        f"{NUMBER_DOC} The price after the member discount (rounded half up to the cent) "
        "and the points an order at that price would earn now (purchase points at the "
        "tier's rate and the category's multiplier, plus any cash-back rebate). Nothing is "
        "stored. 422 `unknown_category`. Scope `loyalty:read`."
    ),
    operation_id="quote",
)
def quote(request: HttpRequest, number: str, payload: QuoteIn):
    return benefits.quote(member_or_404(number), payload.amount, payload.category)
