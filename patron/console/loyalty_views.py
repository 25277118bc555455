"""Console pages for the loyalty program (issue 3, "Portal and console"):

- program rules: the version in force, the history, an edit form per tier with a dry run
  ("if these rules applied today, N members would move up/down") and publishing with a note
  (``loyalty.view_programversion`` to look, ``loyalty.add_programversion`` to change);
- the rewards catalog and its stock (``loyalty.view_reward`` / ``loyalty.change_reward``);
- a member's ledger: balances, lots, entries with allocations, tier history
  (``loyalty.view_entry``), with manual adjustments and expiry extensions
  (``loyalty.add_entry``; a reason is required, the service audits);
- the points liability report with an inline SVG chart (``loyalty.view_entry``).

Views are thin: reads through ``patron.console.loyalty_selectors`` and the loyalty
selectors, every change through one loyalty service (which validates and audits).
"""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from patron.console import loyalty_selectors as selectors
from patron.console import selectors as console_selectors
from patron.console.loyalty_forms import (
    AdjustmentForm,
    ExtensionForm,
    ProgramForm,
    RewardForm,
    StockForm,
    StockLimitForm,
    new_token,
)
from patron.console.views import _form_errors, staff_page
from patron.core import audit, clock
from patron.core.exceptions import PatronError
from patron.loyalty import rules as program
from patron.loyalty import selectors as loyalty_selectors
from patron.loyalty.models import ProgramVersion, Reward
from patron.loyalty.services import program as program_service

VIEW_RULES = "loyalty.view_programversion"
EDIT_RULES = "loyalty.add_programversion"
VIEW_CATALOG = "loyalty.view_reward"
EDIT_CATALOG = "loyalty.change_reward"
VIEW_LEDGER = "loyalty.view_entry"
ADJUST = "loyalty.add_entry"
LOTS_PER_PAGE = 50


def _tier_label(tier: program.Tier) -> str:
    return tier.name_en if get_language() == "en" and tier.name_en else tier.name


def _tier_names(rules: program.Rules) -> dict[str, str]:
    return {t.code: _tier_label(t) for t in rules.tiers}


# --- program rules ----------------------------------------------------------------------


def _program_context(request: HttpRequest, form: ProgramForm | None) -> dict[str, Any]:
    rules = program.current()
    latest = selectors.latest_version()
    in_force = (
        ProgramVersion.objects.filter(version=rules.version).first() if rules.version else None
    )
    return {
        "rules": rules,
        "in_force": in_force,
        "scheduled": latest if latest is not None and latest.effective_at > clock.now() else None,
        "history": selectors.versions(),
        "form": form,
        "tier_names": _tier_names(rules),
        "can_edit": request.user.has_perm(EDIT_RULES),
    }


@require_http_methods(["GET", "POST"])
@staff_page(VIEW_RULES)
def program_rules(request: HttpRequest) -> HttpResponse:
    """GET: the rules and the edit form. POST ``action=dry_run``: the counts of members who
    would move, shown above the same form; POST ``action=publish``: a new version."""
    can_edit = request.user.has_perm(EDIT_RULES)
    based_on, base = program_service.latest_document()
    if request.method == "GET":
        form = ProgramForm(base=base, based_on=based_on) if can_edit else None
        return render(request, "console/loyalty/program.html", _program_context(request, form))
    if not can_edit:
        raise PermissionDenied
    form = ProgramForm(request.POST, base=base, based_on=based_on)
    action = request.POST.get("action")
    context = _program_context(request, form)
    status = 422
    if action not in ("dry_run", "publish"):
        form.add_error(None, _("Choose dry run or publish."))
    elif form.is_valid():
        document = form.document()
        try:
            if action == "dry_run":
                result = program_service.dry_run(document)
                names = {
                    t["code"]: (t.get("name_en") if get_language() == "en" else None) or t["name"]
                    for t in document["tiers"]
                }
                context["dry_run"] = result
                context["dry_run_rows"] = [
                    {"code": code, "name": names.get(code, code), **counts}
                    for code, counts in result["by_tier"].items()
                ]
                status = 200
            else:
                version = program_service.publish(
                    document,
                    note=form.cleaned_data["note"],
                    effective_at=form.cleaned_data["effective_at"],
                    actor=audit.Actor.user(request.user),
                    created_by=request.user,
                    based_on=form.cleaned_data["based_on"],
                )
                messages.success(
                    request,
                    _("Published version %(v)s, in force from %(at)s.")
                    % {
                        "v": version.version,
                        "at": clock.local(version.effective_at).strftime("%Y-%m-%d %H:%M"),
                    },
                )
                return redirect("console:loyalty_program")
        except PatronError as error:
            form.place_errors(error)
            status = error.status
    return render(request, "console/loyalty/program.html", context, status=status)


@require_GET
@staff_page(VIEW_RULES)
def program_version(request: HttpRequest, version: int) -> HttpResponse:
    found = ProgramVersion.objects.select_related("created_by").filter(version=version).first()
    if found is None:
        raise Http404
    rules = program.parse(found.rules, found.version)
    return render(
        request,
        "console/loyalty/program_version.html",
        {"version": found, "rules": rules, "tier_names": _tier_names(rules)},
    )


# --- rewards catalog --------------------------------------------------------------------


def _tier_choices() -> list[tuple[str, str]]:
    return [(t.code, _tier_label(t)) for t in program.current().tiers[1:]]


@require_GET
@staff_page(VIEW_CATALOG)
def rewards(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/loyalty/rewards.html",
        {
            "rewards": selectors.rewards(),
            "can_edit": request.user.has_perm(EDIT_CATALOG),
            "tier_names": _tier_names(program.current()),
        },
    )


@require_http_methods(["GET", "POST"])
@staff_page(VIEW_CATALOG, EDIT_CATALOG)
def reward_new(request: HttpRequest) -> HttpResponse:
    from patron.loyalty.services import rewards as catalog

    initial = {
        "kind": Reward.Kind.COUPON,
        "limit_period": Reward.Period.MONTH,
        "valid_days": 30,
        "value": "0",
        "min_spend": "0",
        "active": True,
    }
    form = RewardForm(request.POST or None, initial=initial, tiers=_tier_choices(), editing=False)
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                reward = catalog.create_reward(form.values(), actor=audit.Actor.user(request.user))
            except PatronError as error:
                _form_errors(form, error)
                status = error.status
            else:
                messages.success(
                    request, _("Added %(code)s to the catalog.") % {"code": reward.code}
                )
                return redirect("console:loyalty_reward", code=reward.code)
    return render(
        request, "console/loyalty/reward_form.html", {"form": form, "reward": None}, status=status
    )


def _reward_page(
    request: HttpRequest,
    reward: Reward,
    *,
    form: RewardForm | None = None,
    stock_form: Any = None,
    status: int = 200,
) -> HttpResponse:
    initial = {name: getattr(reward, name) for name in RewardForm.base_fields if name != "code"}
    initial["min_tier"] = reward.min_tier
    if form is None:
        form = RewardForm(initial=initial, tiers=_tier_choices(), editing=True)
    if stock_form is None:
        stock_form = StockLimitForm() if reward.stock is None else StockForm()
    return render(
        request,
        "console/loyalty/reward_form.html",
        {"form": form, "reward": reward, "stock_form": stock_form},
        status=status,
    )


def _reward_or_404(code: str) -> Reward:
    reward = Reward.objects.filter(code=code).first()
    if reward is None:
        raise Http404
    return reward


@require_http_methods(["GET", "POST"])
@staff_page(VIEW_CATALOG, EDIT_CATALOG)
def reward_edit(request: HttpRequest, code: str) -> HttpResponse:
    from patron.loyalty.services import rewards as catalog

    reward = _reward_or_404(code)
    if request.method == "GET":
        return _reward_page(request, reward)
    form = RewardForm(request.POST, tiers=_tier_choices(), editing=True)
    if not form.is_valid():
        return _reward_page(request, reward, form=form, status=422)
    try:
        catalog.update_reward(reward, form.values(), actor=audit.Actor.user(request.user))
    except PatronError as error:
        _form_errors(form, error)
        return _reward_page(request, reward, form=form, status=error.status)
    messages.success(request, _("Saved %(code)s.") % {"code": reward.code})
    return redirect("console:loyalty_reward", code=reward.code)


@require_POST
@staff_page(VIEW_CATALOG, EDIT_CATALOG)
def reward_stock(request: HttpRequest, code: str) -> HttpResponse:
    """Add or withdraw stock (relative: never overwrites concurrent redemptions), or put a
    limit on a reward that had none."""
    from patron.loyalty.services import rewards as catalog

    reward = _reward_or_404(code)
    actor = audit.Actor.user(request.user)
    form: Any = StockLimitForm(request.POST) if reward.stock is None else StockForm(request.POST)
    if not form.is_valid():
        return _reward_page(request, reward, stock_form=form, status=422)
    try:
        if reward.stock is None:
            reward = catalog.update_reward(
                reward, {"stock": form.cleaned_data["stock"]}, actor=actor
            )
        else:
            reward = catalog.add_stock(reward, form.cleaned_data["quantity"], actor=actor)
    except PatronError as error:
        _form_errors(form, error)
        return _reward_page(request, reward, stock_form=form, status=error.status)
    messages.success(
        request,
        _("%(code)s: stock is now %(stock)s.") % {"code": reward.code, "stock": reward.stock},
    )
    return redirect("console:loyalty_reward", code=reward.code)


# --- a member's ledger ------------------------------------------------------------------


def _member_or_404(number: str) -> Any:
    member = console_selectors.member_detail(number)
    if member is None:
        raise Http404
    return member


def _ledger_page(
    request: HttpRequest,
    member: Any,
    *,
    adjust_form: AdjustmentForm | None = None,
    extend_form: ExtensionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    from patron.loyalty import tiers

    rules = program.current()
    summary = loyalty_selectors.points_summary(member.pk)
    lots_page = Paginator(selectors.lots(member.pk), LOTS_PER_PAGE).get_page(
        request.GET.get("lots")
    )
    before = request.GET.get("before", "")
    entries, next_cursor = selectors.entries(
        member.pk, before=int(before) if before.isdigit() else None
    )
    can_adjust = request.user.has_perm(ADJUST)
    response = render(
        request,
        "console/loyalty/member.html",
        {
            "member": member,
            "masked": console_selectors.MaskedMember.of(member),
            "summary": summary,
            "value": selectors.value_cny(summary.available, rules),
            "status": tiers.tier_status(member),
            "tier_names": _tier_names(rules),
            "lots_page": lots_page,
            "lot_rows": selectors.lot_rows(lots_page.object_list, rules),
            "entries": entries,
            "next_cursor": next_cursor,
            "first_page": not before,
            "tier_history": selectors.tier_history(member.pk),
            "can_adjust": can_adjust,
            "adjust_form": adjust_form or AdjustmentForm(initial={"token": new_token()}),
            "extend_form": extend_form or ExtensionForm(),
            "can_view_member": request.user.has_perm("members.view_member"),
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@staff_page(VIEW_LEDGER)
def member_ledger(request: HttpRequest, number: str) -> HttpResponse:
    return _ledger_page(request, _member_or_404(number))


@require_POST
@staff_page(VIEW_LEDGER, ADJUST)
def member_adjust(request: HttpRequest, number: str) -> HttpResponse:
    """A manual adjustment. The form's token is the idempotency key: submitting the same
    form twice (a double click, a resent POST) changes the balance once."""
    from patron.loyalty.services import points

    member = _member_or_404(number)
    form = AdjustmentForm(request.POST)
    if not form.is_valid():
        return _ledger_page(request, member, adjust_form=form, status=422)
    try:
        entry = points.adjust(
            member,
            form.cleaned_data["points"],
            reason=form.cleaned_data["reason"],
            key=f"console:{form.cleaned_data['token']}",
            actor=audit.Actor.user(request.user),
        )
    except PatronError as error:
        _form_errors(form, error)
        return _ledger_page(request, member, adjust_form=form, status=error.status)
    messages.success(
        request,
        _("Adjusted the balance by %(points)+d points (entry %(id)s).")
        % {"points": entry.points, "id": entry.pk},
    )
    return redirect("console:loyalty_member", number=member.number)


@require_POST
@staff_page(VIEW_LEDGER, ADJUST)
def member_extend(request: HttpRequest, number: str) -> HttpResponse:
    """Extend the expiry of the member's available points (all, or chosen lots), with a reason."""
    from patron.loyalty.services import points

    member = _member_or_404(number)
    form = ExtensionForm(request.POST)
    if not form.is_valid():
        return _ledger_page(request, member, extend_form=form, status=422)
    try:
        moved = points.extend_expiry(
            member,
            months=form.cleaned_data["months"],
            reason=form.cleaned_data["reason"],
            actor=audit.Actor.user(request.user),
            lot_ids=form.cleaned_data["lots"],
        )
    except PatronError as error:
        if any(e.field == "lot_ids" for e in error.errors):
            error.errors = [
                type(e)("lots", e.code, e.message) if e.field == "lot_ids" else e
                for e in error.errors
            ]
        _form_errors(form, error)
        return _ledger_page(request, member, extend_form=form, status=error.status)
    messages.success(
        request,
        _("Extended %(n)s lots by %(months)s months.")
        % {"n": moved, "months": form.cleaned_data["months"]},
    )
    return redirect("console:loyalty_member", number=member.number)


@require_GET
@staff_page(VIEW_LEDGER)
def member_lookup(request: HttpRequest) -> HttpResponse:
    """Jump to a member's ledger by member number."""
    number = (request.GET.get("number") or "").strip()
    if number and console_selectors.member_detail(number) is not None:
        return redirect("console:loyalty_member", number=number)
    if number:
        messages.error(request, _("No member has this number."))
    return redirect("console:loyalty_home")


# --- home and liability report ----------------------------------------------------------


@require_GET
@staff_page()
def loyalty_home(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not any(user.has_perm(p) for p in (VIEW_RULES, VIEW_CATALOG, VIEW_LEDGER)):
        raise PermissionDenied
    return render(request, "console/loyalty/home.html", {"rules": program.current()})


CHART_WIDTH = 720
CHART_HEIGHT = 260
BAR_MAX = 56
CHART_MARGIN = {"top": 16, "right": 8, "bottom": 44, "left": 64}


def bar_chart(rows: list[tuple[str, int]]) -> dict[str, Any]:
    """Geometry of an inline SVG bar chart (no JavaScript): one bar per (label, value), a
    y axis with four gridlines at round values. The template draws it; the same figures
    are in a table next to it for screen readers."""
    inner_w = CHART_WIDTH - CHART_MARGIN["left"] - CHART_MARGIN["right"]
    inner_h = CHART_HEIGHT - CHART_MARGIN["top"] - CHART_MARGIN["bottom"]
    top = max([value for _label, value in rows] + [1])
    # Four gridlines at a round step (1, 2 or 5 times a power of ten) reaching the top bar.
    raw = top / 4
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    scale_max = step * 4
    slot = inner_w / max(len(rows), 1)
    bars = []
    for i, (label, value) in enumerate(rows):
        h = inner_h * value / scale_max
        width = min(slot * 0.7, BAR_MAX)
        bars.append(
            {
                "x": round(CHART_MARGIN["left"] + i * slot + (slot - width) / 2, 1),
                "y": round(CHART_MARGIN["top"] + inner_h - h, 1),
                "w": round(width, 1),
                "h": round(h, 1),
                "label": label,
                "value": value,
                "label_x": round(CHART_MARGIN["left"] + i * slot + slot / 2, 1),
                "show_label": len(rows) <= 12 or i % max(1, len(rows) // 12) == 0,
            }
        )
    ticks = [
        {"y": round(CHART_MARGIN["top"] + inner_h - inner_h * k / 4, 1), "value": int(step * k)}
        for k in range(5)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": CHART_MARGIN["left"],
        "right": CHART_WIDTH - CHART_MARGIN["right"],
        "base": CHART_MARGIN["top"] + inner_h,
        "label_y": CHART_MARGIN["top"] + inner_h + 18,
        "bars": bars,
        "ticks": ticks,
    }


class LiabilityForm(forms.Form):
    as_of = forms.DateField(
        label=gettext_lazy("As of the end of"),
        required=False,
        help_text=gettext_lazy("Empty for now. Format: 2026-12-31"),
    )


@require_GET
@staff_page(VIEW_LEDGER)
def liability(request: HttpRequest) -> HttpResponse:
    """Outstanding points and their value by expiry month, debt and breakage (PTS-8), for
    now or for the end of a past day, with a bar chart of the months."""
    from patron.loyalty import reports

    form = LiabilityForm(request.GET or None)
    as_of = form.cleaned_data.get("as_of") if form.is_valid() else None
    status = 200 if not form.errors else 422
    try:
        report = reports.points_liability(as_of)
    except PatronError as error:
        _form_errors(form, error)
        report, status = reports.points_liability(), error.status
    months = report["by_expiry_month"]
    return render(
        request,
        "console/loyalty/liability.html",
        {
            "form": form,
            "report": report,
            "chart": bar_chart([(row["month"], row["points"]) for row in months]),
        },
        status=status,
    )
