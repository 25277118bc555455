"""Console forms for the loyalty program: they shape input; the services decide and refuse.

``ProgramForm`` edits a rules document as a grid (one column per tier) plus the program-wide
figures, and turns the answers back into a document for ``program.dry_run``/``publish``.
What the form does not show (tier codes, activities, the time zone) is carried over from
the document it was built from, so editing a rate never drops a setting.
"""

from __future__ import annotations

import copy
import re
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from patron.core.exceptions import PatronError
from patron.loyalty.models import Reward

TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
METRIC_FIELDS = {"spend": "spend", "orders": "orders", "loyalty": "loyalty"}
# (suffix, label, kind): one row of the tier grid. kind: text, money, rate, count.
TIER_ROWS: list[tuple[str, Any, str]] = [
    ("name", _("Name (Chinese)"), "text"),
    ("name_en", _("Name (English)"), "text"),
    ("any_spend", _("Spend at least (any of)"), "money"),
    ("any_orders", _("Orders at least (any of)"), "count"),
    ("any_loyalty", _("Loyalty score at least (any of)"), "count"),
    ("all_spend", _("Spend at least (all of)"), "money"),
    ("all_orders", _("Orders at least (all of)"), "count"),
    ("all_loyalty", _("Loyalty score at least (all of)"), "count"),
    ("points_rate", _("Points per CNY"), "rate"),
    ("discount_rate", _("Member discount (0.05 = 5% off)"), "rate"),
    ("rebate_rate", _("Cash-back rebate (0.02 = 2%)"), "rate"),
    ("birthday_coupon", _("Birthday coupon (CNY)"), "money"),
    ("expiry_extension_months", _("Expiry extension (months, once)"), "count"),
    ("benefits", _("Benefit codes (comma-separated)"), "text"),
]
THRESHOLD_ROWS = {
    "any_spend": ("any_of", "spend"),
    "any_orders": ("any_of", "orders"),
    "any_loyalty": ("any_of", "loyalty"),
    "all_spend": ("all_of", "spend"),
    "all_orders": ("all_of", "orders"),
    "all_loyalty": ("all_of", "loyalty"),
}
RATE_ROWS = ("points_rate", "discount_rate", "rebate_rate", "birthday_coupon")


def new_token() -> str:
    """A per-form idempotency token: a double submit of one form acts once."""
    return secrets.token_urlsafe(18)


def _decimal_field(label: Any, *, required: bool = False) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=required,
        max_digits=14,
        decimal_places=4,
        min_value=Decimal(0),
        widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 8}),
    )


def _count_field(label: Any, *, required: bool = False, minimum: int = 0) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        required=required,
        min_value=minimum,
        max_value=10**9,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "size": 6}),
    )


def _int_list(value: str, *, lo: int, hi: int) -> list[int]:
    parts = [p for p in re.split(r"[\s,，、;]+", value or "") if p]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise forms.ValidationError(_("Enter whole numbers separated by commas.")) from None
    if not numbers or any(not lo <= n <= hi for n in numbers):
        raise forms.ValidationError(
            _("Enter numbers from %(lo)s to %(hi)s, separated by commas.") % {"lo": lo, "hi": hi}
        )
    return numbers


def _same_or_new(old: Any, new: Decimal) -> Any:
    """Keep the document's own spelling of a number the form did not change ("2000" stays
    "2000" rather than "2000.0000"), so the audit's list of changes is only real changes."""
    try:
        if old is not None and Decimal(str(old)) == new:
            return old
    except InvalidOperation:
        pass
    return format(new.normalize(), "f") if new == new.to_integral() else str(new.normalize())


class ProgramForm(forms.Form):
    """The rules document as a form. ``base`` is the newest version's document (or the
    defaults); ``based_on`` its version number, which publishing checks."""

    window_months = _count_field(_("Qualifying window (months)"), required=True, minimum=1)
    evaluation_months = forms.CharField(
        label=_("Evaluation months"),
        help_text=_(
            "Months (1-12) whose first day runs the periodic evaluation, e.g. 1, 4, 7, 10."
        ),
    )
    return_window_days = _count_field(_("Return window (days after delivery)"), required=True)
    expiry_months = _count_field(_("Points expire after (months)"), required=True, minimum=1)
    reminder_days = forms.CharField(
        label=_("Expiry reminders (days before)"), help_text=_("For example: 30, 7")
    )
    points_per_cny = _count_field(_("Value of a point: points per 1 CNY"), required=True, minimum=1)
    referral_referrer = _count_field(_("Referral: points for the referrer"), required=True)
    referral_referee = _count_field(_("Referral: points for the new member"), required=True)
    referral_loyalty = _count_field(_("Referral: loyalty score for the referrer"), required=True)
    birthday_coupon_valid_days = _count_field(
        _("Birthday coupon valid for (days)"), required=True, minimum=1
    )
    categories = forms.CharField(
        label=_("Order categories and point multipliers"),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("One per line: category = multiplier, e.g. ticket = 1.5"),
    )
    note = forms.CharField(
        label=_("Note for this version"),
        max_length=200,
        required=False,  # the service requires it when publishing, not for a dry run
        help_text=_("What changed and why; shown in the version history."),
    )
    effective_at = forms.DateTimeField(
        label=_("Takes effect at"),
        required=False,
        help_text=_("Leave empty for now. Format: 2026-12-01 00:00"),
    )
    based_on = forms.IntegerField(widget=forms.HiddenInput, min_value=0)

    def __init__(self, *args: Any, base: dict[str, Any], based_on: int, **kwargs: Any) -> None:
        self.base = copy.deepcopy(base)
        super().__init__(*args, initial=self._initial(self.base, based_on), **kwargs)
        self.tier_codes = [str(t.get("code", "")) for t in self.base.get("tiers") or []]
        for i, tier in enumerate(self.base.get("tiers") or []):
            title = tier.get("name_en") or tier.get("code")
            for suffix, label, kind in TIER_ROWS:
                if kind == "text":
                    field: forms.Field = forms.CharField(
                        label=label,
                        required=suffix == "name",
                        max_length=200 if suffix == "benefits" else 50,
                        widget=forms.TextInput(attrs={"size": 12}),
                    )
                elif kind == "count":
                    field = _count_field(label)
                else:
                    field = _decimal_field(label, required=suffix in RATE_ROWS)
                field.widget.attrs["aria-label"] = f"{title}: {label}"
                self.fields[f"tier{i}_{suffix}"] = field

    @staticmethod
    def _initial(doc: dict[str, Any], based_on: int) -> dict[str, Any]:
        referral = doc.get("referral") or {}
        initial: dict[str, Any] = {
            "window_months": doc.get("window_months"),
            "evaluation_months": ", ".join(str(m) for m in doc.get("evaluation_months") or []),
            "return_window_days": doc.get("return_window_days"),
            "expiry_months": doc.get("expiry_months"),
            "reminder_days": ", ".join(str(d) for d in doc.get("reminder_days") or []),
            "points_per_cny": doc.get("points_per_cny"),
            "referral_referrer": referral.get("referrer", 0),
            "referral_referee": referral.get("referee", 0),
            "referral_loyalty": referral.get("loyalty", 0),
            "birthday_coupon_valid_days": doc.get("birthday_coupon_valid_days"),
            "categories": "\n".join(
                f"{code} = {value}" for code, value in (doc.get("categories") or {}).items()
            ),
            "based_on": based_on,
        }
        for i, tier in enumerate(doc.get("tiers") or []):
            for suffix, _label, _kind in TIER_ROWS:
                if suffix in THRESHOLD_ROWS:
                    group, metric = THRESHOLD_ROWS[suffix]
                    value = (tier.get(group) or {}).get(metric)
                elif suffix == "benefits":
                    value = ", ".join(tier.get("benefits") or [])
                else:
                    value = tier.get(suffix)
                initial[f"tier{i}_{suffix}"] = value
        return initial

    def clean_evaluation_months(self) -> list[int]:
        return sorted(set(_int_list(self.cleaned_data["evaluation_months"], lo=1, hi=12)))

    def clean_reminder_days(self) -> list[int]:
        days = _int_list(self.cleaned_data["reminder_days"], lo=1, hi=365)
        return sorted(set(days), reverse=True)

    def clean_categories(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in (self.cleaned_data["categories"] or "").splitlines():
            if not line.strip():
                continue
            match = re.fullmatch(r"\s*([A-Za-z0-9_-]{1,32})\s*[=:：]\s*([0-9.]+)\s*", line)
            if match is None:
                raise forms.ValidationError(
                    _("Write each line as: category = multiplier (e.g. ticket = 1.5).")
                )
            found[match.group(1)] = match.group(2)
        if not found:
            raise forms.ValidationError(_("At least one category is required."))
        return found

    # --- the document ------------------------------------------------------------------

    def tier_grid(self) -> list[dict[str, Any]]:
        """Rows of the tier table for the template: a label and one bound field per tier."""
        return [
            {
                "label": label,
                "fields": [self[f"tier{i}_{suffix}"] for i in range(len(self.tier_codes))],
            }
            for suffix, label, _kind in TIER_ROWS
        ]

    def document(self) -> dict[str, Any]:
        """The edited rules document (call after ``is_valid()``)."""
        data = self.cleaned_data
        doc = copy.deepcopy(self.base)
        for name in (
            "window_months",
            "return_window_days",
            "expiry_months",
            "points_per_cny",
            "birthday_coupon_valid_days",
            "evaluation_months",
            "reminder_days",
        ):
            doc[name] = data[name]
        doc["referral"] = {
            **(doc.get("referral") or {}),
            "referrer": data["referral_referrer"],
            "referee": data["referral_referee"],
            "loyalty": data["referral_loyalty"],
        }
        old_categories = doc.get("categories") or {}
        doc["categories"] = {
            code: _same_or_new(old_categories.get(code), Decimal(value))
            for code, value in data["categories"].items()
        }
        for i, tier in enumerate(doc.get("tiers") or []):
            get = lambda suffix, i=i: data.get(f"tier{i}_{suffix}")  # noqa: E731
            tier["name"] = get("name") or tier.get("code")
            tier["name_en"] = get("name_en") or ""
            for group in ("any_of", "all_of"):
                old = tier.get(group) or {}
                new: dict[str, Any] = {}
                for suffix, (g, metric) in THRESHOLD_ROWS.items():
                    value = get(suffix)
                    if g != group or value is None:
                        continue
                    if metric == "spend":
                        new[metric] = _same_or_new(old.get(metric), Decimal(value))
                    else:
                        new[metric] = int(value)
                tier[group] = new
            for suffix in RATE_ROWS:
                tier[suffix] = _same_or_new(tier.get(suffix), get(suffix))
            months = get("expiry_extension_months")
            tier["expiry_extension_months"] = int(months or 0)
            tier["benefits"] = [b for b in re.split(r"[\s,，、]+", get("benefits") or "") if b]
        return doc

    def place_errors(self, error: PatronError) -> None:
        """Put the rules parser's field errors (``tiers[1].points_rate``) next to the inputs."""
        for field_error in error.errors:
            name = _field_name(field_error.field)
            if name in self.fields:
                self.add_error(name, str(field_error.message))
            else:
                self.add_error(None, f"{field_error.field}: {field_error.message}")
        if not error.errors:
            self.add_error(None, str(error.message))


def _field_name(path: str) -> str:
    """Form field name for a rules path: ``tiers[1].any_of.spend`` -> ``tier1_any_spend``."""
    match = re.fullmatch(r"tiers\[(\d+)\]\.(\w+)(?:\.(\w+))?", path)
    if match:
        index, name, metric = match.groups()
        if name in ("any_of", "all_of") and metric:
            return f"tier{index}_{name[:3]}_{metric}"
        return f"tier{index}_{name}"
    if path.startswith("categories"):
        return "categories"
    if path.startswith("referral."):
        return "referral_" + path.split(".", 1)[1]
    return path


# --- rewards catalog --------------------------------------------------------------------


class RewardForm(forms.Form):
    """A catalog item. Stock is changed on its own form (relative changes only)."""

    code = forms.CharField(
        label=_("Code"),
        max_length=48,
        help_text=_("Lower-case letters, digits, '-' or '_'; cannot be changed later."),
    )
    name = forms.CharField(label=_("Name (Chinese)"), max_length=100)
    name_en = forms.CharField(label=_("Name (English)"), max_length=100, required=False)
    description = forms.CharField(
        label=_("Description"), widget=forms.Textarea(attrs={"rows": 3}), required=False
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=Reward.Kind.choices)
    cost_points = forms.IntegerField(label=_("Cost in points"), min_value=1)
    stock = forms.IntegerField(
        label=_("Stock"),
        min_value=0,
        required=False,
        help_text=_("Leave empty for unlimited."),
    )
    per_member_limit = forms.IntegerField(
        label=_("Limit per member"), min_value=1, required=False, help_text=_("Empty: no limit.")
    )
    limit_period = forms.ChoiceField(label=_("Limit period"), choices=Reward.Period.choices)
    min_tier = forms.ChoiceField(label=_("Lowest tier allowed"), required=False)
    value = forms.DecimalField(
        label=_("Coupon value (CNY)"), min_value=0, max_digits=14, decimal_places=2
    )
    min_spend = forms.DecimalField(
        label=_("Minimum spend to use it (CNY)"), min_value=0, max_digits=14, decimal_places=2
    )
    valid_days = forms.IntegerField(label=_("Valid for (days)"), min_value=1)
    active = forms.BooleanField(label=_("Offered in the catalog"), required=False)
    available_from = forms.DateTimeField(
        label=_("Offered from"), required=False, help_text=_("Format: 2026-12-01 00:00")
    )
    available_until = forms.DateTimeField(label=_("Offered until"), required=False)

    def __init__(self, *args: Any, tiers: list[tuple[str, str]], editing: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["min_tier"].choices = [("", _("Any tier")), *tiers]
        if editing:
            del self.fields["code"]
            del self.fields["stock"]

    def values(self) -> dict[str, Any]:
        """The service's input: every field, ``None`` for an empty optional one."""
        return dict(self.cleaned_data)


class StockForm(forms.Form):
    quantity = forms.IntegerField(
        label=_("Add to stock (negative to withdraw)"),
        widget=forms.TextInput(attrs={"inputmode": "numeric"}),
    )


class StockLimitForm(forms.Form):
    stock = forms.IntegerField(label=_("Limit the stock to"), min_value=0)


# --- a member's points --------------------------------------------------------------------


class TokenField(forms.CharField):
    def __init__(self) -> None:
        super().__init__(widget=forms.HiddenInput, max_length=64)

    def validate(self, value: Any) -> None:
        super().validate(value)
        if not TOKEN.fullmatch(value or ""):
            raise forms.ValidationError(_("Reload the page and try again."))


class AdjustmentForm(forms.Form):
    points = forms.IntegerField(
        label=_("Points"),
        help_text=_("Positive to add, negative to take away."),
        widget=forms.TextInput(attrs={"inputmode": "numeric"}),
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        required=False,  # the service refuses a missing reason, with its stable code
        help_text=_("Required. Shown in the member's ledger and kept with the entry."),
    )
    token = TokenField()


class ExtensionForm(forms.Form):
    months = forms.IntegerField(label=_("Extend by (months)"), min_value=1, max_value=60)
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)
    lots = forms.CharField(
        label=_("Only these lots"),
        required=False,
        help_text=_("Lot numbers separated by commas; empty for all available points."),
    )

    def clean_lots(self) -> list[int] | None:
        value = self.cleaned_data["lots"]
        if not value.strip():
            return None
        return _int_list(value, lo=1, hi=2**62)
