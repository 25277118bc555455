"""The rewards catalog (PTS-4, BEN-2): staff create, edit, restock and withdraw rewards.

Every write is a staff action: validated field by field (every bad field reported at
once), done in one transaction with its audit event. Stock changes are relative
(``add_stock``) and made with one conditional UPDATE, so a restock never overwrites the
decrements of redemptions happening at the same moment.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict, FieldError, NotFound
from patron.loyalty import rules as program
from patron.loyalty.models import Reward
from patron.loyalty.services.coupons import VALID_DAYS_MAX, money
from patron.members.services._common import control_character_errors, failed, refuse

FIELDS = (
    "code",
    "name",
    "name_en",
    "description",
    "kind",
    "cost_points",
    "stock",
    "per_member_limit",
    "limit_period",
    "min_tier",
    "value",
    "min_spend",
    "valid_days",
    "active",
    "available_from",
    "available_until",
)
EDITABLE = tuple(f for f in FIELDS if f != "code")
POINTS_MAX = 100_000_000
STOCK_MAX = 100_000_000
_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")


def _int(
    data: dict[str, Any],
    name: str,
    errors: list[FieldError],
    *,
    minimum: int,
    maximum: int,
    optional: bool = False,
) -> int | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        errors.append(
            FieldError(
                name,
                "invalid",
                _("Enter a whole number from %(lo)s to %(hi)s.") % {"lo": minimum, "hi": maximum},
            )
        )
        return None
    return value


def _text(
    data: dict[str, Any], name: str, errors: list[FieldError], *, maximum: int, required: bool
) -> str:
    value = data.get(name)
    value = "" if value is None else value
    if not isinstance(value, str):
        errors.append(FieldError(name, "invalid", _("Enter text.")))
        return ""
    value = value.strip()
    if required and not value:
        errors.append(FieldError(name, "required", _("This field is required.")))
    elif len(value) > maximum:
        errors.append(FieldError(name, "too_long", _("At most %(n)s characters.") % {"n": maximum}))
    return value


def _moment(data: dict[str, Any], name: str, errors: list[FieldError]) -> dt.datetime | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        errors.append(FieldError(name, "invalid", _("Enter a date and time with its time zone.")))
        return None
    return value


def clean(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated values for the fields in ``data`` (all of them when creating)."""
    errors: list[FieldError] = control_character_errors(
        {k: v for k, v in data.items() if k in ("code", "name", "name_en")}
    )
    unknown = sorted(set(data) - set(FIELDS if creating else EDITABLE))
    for name in unknown:
        errors.append(FieldError(name, "unknown_field", _("This field cannot be set here.")))
    out: dict[str, Any] = {}
    present = set(FIELDS) if creating else set(data) & set(EDITABLE)
    rules = program.current()
    if "code" in present:
        code = data.get("code")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            errors.append(
                FieldError(
                    "code",
                    "invalid",
                    _(
                        "Use 1-48 lower-case letters, digits, '-' or '_', starting with a letter "
                        "or digit."
                    ),
                )
            )
        else:
            out["code"] = code
    if "name" in present:
        out["name"] = _text(data, "name", errors, maximum=100, required=True)
    if "name_en" in present:
        out["name_en"] = _text(data, "name_en", errors, maximum=100, required=False)
    if "description" in present:
        out["description"] = _text(data, "description", errors, maximum=2000, required=False)
    if "kind" in present:
        kind = data.get("kind", Reward.Kind.COUPON) if creating else data.get("kind")
        if kind not in Reward.Kind.values:
            errors.append(
                FieldError("kind", "invalid", _("Use coupon, voucher, ticket or privilege."))
            )
        else:
            out["kind"] = kind
    if "cost_points" in present:
        out["cost_points"] = _int(data, "cost_points", errors, minimum=1, maximum=POINTS_MAX)
    if "stock" in present:
        out["stock"] = _int(data, "stock", errors, minimum=0, maximum=STOCK_MAX, optional=True)
    if "per_member_limit" in present:
        out["per_member_limit"] = _int(
            data, "per_member_limit", errors, minimum=1, maximum=STOCK_MAX, optional=True
        )
    if "limit_period" in present:
        period = (
            data.get("limit_period", Reward.Period.MONTH) if creating else data.get("limit_period")
        )
        if period not in Reward.Period.values:
            errors.append(FieldError("limit_period", "invalid", _("Use day, month, year or ever.")))
        else:
            out["limit_period"] = period
    if "min_tier" in present:
        tier = data.get("min_tier") or ""
        known = {t.code for t in rules.tiers}
        if not isinstance(tier, str) or (tier and tier not in known):
            errors.append(
                FieldError(
                    "min_tier",
                    "unknown_tier",
                    _("Use a tier of the program (%(tiers)s) or leave it blank.")
                    % {"tiers": ", ".join(t.code for t in rules.tiers)},
                )
            )
        else:
            out["min_tier"] = tier
    for name in ("value", "min_spend"):
        if name in present:
            raw = data.get(name, "0") if creating else data.get(name)
            out[name] = money("0" if raw is None else raw, name, errors)
    if "valid_days" in present:
        raw_days = {"valid_days": data.get("valid_days", 30)} if creating else data
        out["valid_days"] = _int(raw_days, "valid_days", errors, minimum=1, maximum=VALID_DAYS_MAX)
    if "active" in present:
        active = data.get("active", True) if creating else data.get("active")
        if not isinstance(active, bool):
            errors.append(FieldError("active", "invalid", _("Use true or false.")))
        else:
            out["active"] = active
    for name in ("available_from", "available_until"):
        if name in present:
            out[name] = _moment(data, name, errors)
    if errors:
        raise failed(errors)
    return out


def _check_window(start: dt.datetime | None, end: dt.datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise refuse(
            "available_until",
            "window_not_ordered",
            _("The end of availability must come after its start."),
        )


def create_reward(data: dict[str, Any], *, actor: Actor) -> Reward:
    """A new catalog item; 422 naming every bad field, 409 ``reward_code_taken``."""
    values = clean(data, creating=True)
    _check_window(values.get("available_from"), values.get("available_until"))
    try:
        with transaction.atomic():
            reward = Reward.objects.create(**values)
            audit.record(
                "reward.created",
                actor=actor,
                subject=reward,
                details={"code": reward.code, "cost_points": reward.cost_points},
            )
    except IntegrityError:
        raise Conflict(
            _("A reward with this code exists."),
            code="reward_code_taken",
            errors=[FieldError("code", "reward_code_taken", _("A reward with this code exists."))],
        ) from None
    return reward


def get_reward(code: str) -> Reward:
    reward = Reward.objects.filter(code=code).first() if isinstance(code, str) else None
    if reward is None:
        raise NotFound(_("No reward has this code."), code="reward_not_found")
    return reward


def update_reward(reward: Reward, changes: dict[str, Any], *, actor: Actor) -> Reward:
    """Change the given fields (the code never changes); audited with the changed names."""
    values = clean(changes, creating=False)
    with transaction.atomic():
        locked = Reward.objects.select_for_update().get(pk=reward.pk)
        _check_window(
            values.get("available_from", locked.available_from),
            values.get("available_until", locked.available_until),
        )
        changed = sorted(k for k, v in values.items() if getattr(locked, k) != v)
        for name in changed:
            setattr(locked, name, values[name])
        if changed:
            locked.save(update_fields=changed)
            audit.record("reward.updated", actor=actor, subject=locked, details={"fields": changed})
    return locked


def add_stock(reward: Reward, quantity: int, *, actor: Actor) -> Reward:
    """Add (or, negative, withdraw) stock. 409 ``stock_unlimited`` when the reward has no
    stock limit; 409 ``out_of_stock`` when withdrawing more than is left."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity == 0:
        raise refuse("quantity", "invalid", _("Enter a whole number other than zero."))
    if abs(quantity) > STOCK_MAX:
        raise refuse("quantity", "invalid", _("This quantity is too large."))
    with transaction.atomic():
        current = Reward.objects.filter(pk=reward.pk).values_list("stock", flat=True).first()
        if current is None:
            raise Conflict(
                _("This reward has no stock limit; set a stock first."), code="stock_unlimited"
            )
        rows = Reward.objects.filter(pk=reward.pk, stock__gte=max(0, -quantity))
        if quantity > 0:
            rows = rows.filter(stock__lte=STOCK_MAX - quantity)
        if not rows.update(stock=F("stock") + quantity):
            if quantity > 0:
                raise refuse("quantity", "invalid", _("This quantity is too large."))
            raise Conflict(_("Not that much stock is left."), code="out_of_stock")
        reward = Reward.objects.get(pk=reward.pk)
        audit.record(
            "reward.stock_added",
            actor=actor,
            subject=reward,
            details={"quantity": quantity, "stock": reward.stock},
        )
    return reward


def deactivate(reward: Reward, *, actor: Actor) -> Reward:
    """Withdraw a reward from the catalog; redemptions already made stay valid."""
    return update_reward(reward, {"active": False}, actor=actor)


def activate(reward: Reward, *, actor: Actor) -> Reward:
    return update_reward(reward, {"active": True}, actor=actor)


# --- reads (the catalog the API and portal show) ----------------------------------------


def catalog(*, tier: str | None = None) -> list[Reward]:
    """Active rewards offered now, cheapest first; with ``tier``, only those it may redeem."""
    now = clock.now()
    rows = (
        Reward.objects.filter(active=True)
        .filter(Q(available_from__isnull=True) | Q(available_from__lte=now))
        .filter(Q(available_until__isnull=True) | Q(available_until__gt=now))
        .order_by("cost_points", "code")
    )
    if tier is None:
        return list(rows)
    rules = program.current()
    rank = rules.rank(tier)
    return [r for r in rows if not r.min_tier or rules.rank(r.min_tier) <= rank]
