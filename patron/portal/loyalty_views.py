"""Portal: the member's loyalty pages (issue 3, "Portal and console"; TIER-6, PTS-4, BEN-1).

- my tier: progress bars toward the next tier (spend, orders, loyalty score) and what keeps
  the current one at the next evaluation (``tiers.tier_status``), my benefits
  (``benefits.benefits``), points balance, points expiring soon;
- points history (cursor pages of ledger entries);
- the rewards catalog and redeeming: a POST with CSRF and a per-form token that is the
  idempotency key, so a double submit (double click, resent form) redeems once;
- my coupons.

Reads only here, except redeeming, which is ``redemptions.redeem``'s.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Case, IntegerField, Q, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import PatronError
from patron.loyalty import rules as program
from patron.loyalty import selectors as loyalty_selectors
from patron.loyalty.models import Coupon, Reward
from patron.members.models import Member
from patron.portal.views import member_required

SOON_DAYS = 30
HISTORY_PAGE = 20
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
METRIC_LABELS = {
    "spend": gettext_lazy("Spend"),
    "orders": gettext_lazy("Orders"),
    "loyalty": gettext_lazy("Loyalty score"),
}


def _name(obj: Any) -> str:
    """The English name in English, the Chinese one otherwise (objects or dicts)."""
    get = obj.get if isinstance(obj, dict) else lambda k, d="": getattr(obj, k, d)
    return (get("name_en", "") if get_language() == "en" else "") or get("name", "")


# --- my tier ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    metric: str
    label: str
    current: Decimal | int
    target: Decimal | int
    percent: int
    done: bool
    left: Decimal | int


def _bar(metric: str, current: Decimal | int, target: Decimal) -> Bar:
    target_value: Decimal | int = target if metric == "spend" else int(target)
    left = max(target - Decimal(current), Decimal(0))
    percent = 100 if target <= 0 else min(100, int(Decimal(current) * 100 / target))
    return Bar(
        metric=metric,
        label=str(METRIC_LABELS[metric]),
        current=current,
        target=target_value,
        percent=percent,
        done=Decimal(current) >= target,
        left=left if metric == "spend" else int(left),
    )


def progress(tier: program.Tier, window: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars toward ``tier``: an "any of" group (reaching one bar is enough) and an "all of"
    group (each bar is needed), each with whether it is met."""
    groups = []
    for kind, thresholds in (("any", tier.any_of), ("all", tier.all_of)):
        if not thresholds:
            continue
        bars = [_bar(metric, window[metric], value) for metric, value in thresholds.items()]
        met = any(b.done for b in bars) if kind == "any" else all(b.done for b in bars)
        groups.append({"kind": kind, "bars": bars, "met": met})
    return groups


def _retain(tier: program.Tier, missing: dict[str, Any]) -> list[dict[str, Any]]:
    """What is still needed to keep ``tier``, grouped like the thresholds; only the
    groups not yet met, each listing the gaps."""
    groups = []
    for kind, thresholds in (("any", tier.any_of), ("all", tier.all_of)):
        gaps = [
            {"metric": m, "label": str(METRIC_LABELS[m]), "left": missing[m]}
            for m in thresholds
            if missing[m]
        ]
        if not thresholds or (kind == "any" and len(gaps) < len(thresholds)) or not gaps:
            continue
        groups.append({"kind": kind, "gaps": gaps})
    return groups


@require_GET
@member_required
def tier(request: HttpRequest) -> HttpResponse:
    from patron.loyalty import tiers
    from patron.loyalty.services import benefits as benefit_service

    member: Member = request.member  # type: ignore[attr-defined]
    rules = program.current()
    status = tiers.tier_status(member)
    current = rules.tier(status["tier"])
    upcoming = rules.tier(status["next"]["tier"]) if status["next"] else None
    summary = loyalty_selectors.points_summary(member.pk, limit=3)
    perks = benefit_service.benefits(member)
    return render(
        request,
        "portal/loyalty/tier.html",
        {
            "member": member,
            "status": status,
            "tier_name": _name(current),
            "next_name": _name(upcoming) if upcoming else "",
            "progress": progress(upcoming, status["window"]) if upcoming else [],
            "retain": _retain(current, status["retain"]["missing"]) if current.rank else [],
            "is_base": current.rank == 0,
            "window_months": rules.window_months,
            "summary": summary,
            "soon": loyalty_selectors.expiring_within(member.pk, SOON_DAYS),
            "soon_days": SOON_DAYS,
            "benefits": perks,
            "benefit_labels": [
                b["en"] if get_language() == "en" else b["zh"] for b in perks["benefits"]
            ],
            "discount_percent": (Decimal(perks["discount_rate"]) * 100).normalize(),
            "rebate_percent": (Decimal(perks["rebate_rate"]) * 100).normalize(),
            "tiers": [
                {"code": t.code, "name": _name(t), "current": t.code == current.code}
                for t in rules.tiers
            ],
        },
    )


# --- points history -----------------------------------------------------------------------


@require_GET
@member_required
def points(request: HttpRequest) -> HttpResponse:
    member: Member = request.member  # type: ignore[attr-defined]
    before = request.GET.get("before", "")
    page, cursor = loyalty_selectors.entries_page(
        member.pk, before=int(before) if before.isdigit() else None, limit=HISTORY_PAGE
    )
    summary = loyalty_selectors.points_summary(member.pk, limit=12)
    return render(
        request,
        "portal/loyalty/points.html",
        {
            "summary": summary,
            "value": (
                Decimal(summary.available) / Decimal(program.current().points_per_cny)
            ).quantize(Decimal("0.01")),
            "entries": page,
            "next_cursor": cursor,
            "first_page": not before,
            "soon": loyalty_selectors.expiring_within(member.pk, SOON_DAYS),
            "soon_days": SOON_DAYS,
        },
    )


# --- rewards and redeeming ------------------------------------------------------------------


class RedeemForm(forms.Form):
    quantity = forms.IntegerField(min_value=1, max_value=100, initial=1)
    token = forms.CharField(max_length=64)

    def clean_token(self) -> str:
        token = self.cleaned_data["token"]
        if not TOKEN.fullmatch(token):
            raise forms.ValidationError(_("Reload the page and try again."))
        return token


def offered_rewards() -> list[Reward]:
    now = clock.now()
    return list(
        Reward.objects.filter(active=True)
        .filter(Q(available_from__isnull=True) | Q(available_from__lte=now))
        .filter(Q(available_until__isnull=True) | Q(available_until__gt=now))
        .order_by("cost_points", "code")
    )


def _catalog(
    request: HttpRequest, member: Member, *, failed: str = "", error: str = "", status: int = 200
) -> HttpResponse:
    rules = program.current()
    summary = loyalty_selectors.points_summary(member.pk, limit=0)
    rank = rules.rank(summary.tier)
    items = []
    for reward in offered_rewards():
        needs = rules.tier(reward.min_tier) if reward.min_tier else None
        items.append(
            {
                "reward": reward,
                "name": _name(reward),
                "tier_ok": needs is None or rank >= needs.rank,
                "tier_name": _name(needs) if needs else "",
                "affordable": summary.available >= reward.cost_points,
                "in_stock": reward.stock is None or reward.stock > 0,
                # A fresh token per form and per page view: the redemption's idempotency key.
                "token": secrets.token_urlsafe(18),
                "error": error if reward.code == failed else "",
            }
        )
    response = render(
        request,
        "portal/loyalty/rewards.html",
        {"items": items, "summary": summary},
        status=status,
    )
    response["Cache-Control"] = "no-store"  # a cached page would reuse spent tokens
    return response


@require_GET
@member_required
def rewards(request: HttpRequest) -> HttpResponse:
    return _catalog(request, request.member)  # type: ignore[attr-defined]


@require_POST
@never_cache
@member_required
def redeem(request: HttpRequest, code: str) -> HttpResponse:
    """Redeem ``quantity`` of a reward. The key is scoped to the member, so a token can
    never touch another member's redemption."""
    from patron.loyalty.services import redemptions

    member: Member = request.member  # type: ignore[attr-defined]
    form = RedeemForm(request.POST)
    if not form.is_valid():
        first = next(iter(form.errors.values()))[0]
        return _catalog(request, member, failed=code, error=first, status=422)
    try:
        redemption = redemptions.redeem(
            member,
            code,
            form.cleaned_data["quantity"],
            key=f"portal:{member.pk}:{form.cleaned_data['token']}",
            actor=Actor.user(request.user),
        )
    except PatronError as exc:
        return _catalog(request, member, failed=code, error=str(exc.message), status=exc.status)
    codes = list(redemption.coupons.values_list("code", flat=True))
    messages.success(
        request,
        _("Redeemed %(n)s × %(name)s for %(points)s points. Your codes: %(codes)s")
        % {
            "n": redemption.quantity,
            "name": _name(redemption.reward),
            "points": redemption.points,
            "codes": ", ".join(codes),
        },
    )
    return redirect("portal:loyalty_coupons")


# --- my coupons -----------------------------------------------------------------------------


@require_GET
@member_required
def coupons(request: HttpRequest) -> HttpResponse:
    member: Member = request.member  # type: ignore[attr-defined]
    now = clock.now()
    usable = Q(status=Coupon.Status.ISSUED, valid_until__gt=now)
    rows = (
        Coupon.objects.filter(member=member)
        .select_related("reward")
        .annotate(
            usable_first=Case(
                When(usable, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("usable_first", "valid_until", "-id")[:200]
    )
    items = []
    for coupon in rows:
        if coupon.status == Coupon.Status.ISSUED and coupon.valid_until <= now:
            state, label = "expired", _("Expired")
        elif coupon.status == Coupon.Status.ISSUED and coupon.valid_from > now:
            state, label = "later", _("Not yet valid")
        elif coupon.status == Coupon.Status.ISSUED:
            state, label = "issued", _("Ready to use")
        else:
            state, label = coupon.status, coupon.get_status_display()
        items.append(
            {
                "coupon": coupon,
                "state": state,
                "label": label,
                "name": _name(coupon.reward) if coupon.reward else coupon.get_source_display(),
                "last_day": (coupon.valid_until - dt.timedelta(microseconds=1)),
            }
        )
    return render(request, "portal/loyalty/coupons.html", {"items": items})
