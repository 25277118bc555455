"""Publishing program rule versions and trying them first (TIER-1, TIER-2, TIER-5, PTS-1).

- ``publish``: a new ``ProgramVersion`` (versions are never edited), validated by
  ``rules.parse`` so a bad document is refused field by field and changes nothing; audited
  in the same transaction; this process's rules cache is dropped (others see the new
  version within ``rules.CACHE_SECONDS``).
- ``dry_run``: "if these rules applied today, N members would move up and M down": one
  set-based SQL statement over every account (the same window figures and tier ``CASE`` the
  periodic evaluation uses), grouped by (tier now, tier under the new rules, tier under the
  rules in force) so its cost is one aggregate pass however many members there are.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.exceptions import Conflict, FieldError, ValidationFailed
from patron.loyalty import figures
from patron.loyalty import rules as program
from patron.loyalty.models import ProgramVersion

NOTE_MAX = 200
STAMP = "%Y-%m-%d %H:%M"
_ADVISORY_LOCK_KEY = 0x5052_4F47  # "PROG"
# A version may not take effect in the past: lots already earned name the version that
# earned them, and history is not rewritten. A minute's grace covers a slow form.
PAST_GRACE = dt.timedelta(minutes=1)


def _refuse(field: str, code: str, message: str) -> ValidationFailed:
    error = ValidationFailed([FieldError(field, code, message)], message=str(message))
    error.code = code
    return error


def _lock_versions() -> None:
    """Serialise publishers: a transaction-scoped advisory lock on PostgreSQL (a row lock on
    "the newest version" would not do: a publisher arriving after a commit locks the newer
    row and races the one still waiting on the older); SQLite's IMMEDIATE transactions
    already admit one writer at a time."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def _as_json(data: dict[str, Any]) -> dict[str, Any]:
    """The document as plain JSON (Decimals from forms become strings, as the defaults are)."""
    return json.loads(json.dumps(data, default=str))


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level keys whose value changed, and ``tiers.<code>`` for each changed tier: what
    the audit event says changed (figures only, no free text)."""
    changed = sorted(k for k in set(old) | set(new) if k != "tiers" and old.get(k) != new.get(k))
    old_tiers = {t.get("code"): t for t in old.get("tiers") or [] if isinstance(t, dict)}
    new_tiers = {t.get("code"): t for t in new.get("tiers") or [] if isinstance(t, dict)}
    for code in sorted(set(old_tiers) | set(new_tiers), key=str):
        if old_tiers.get(code) != new_tiers.get(code):
            changed.append(f"tiers.{code}")
    if [t.get("code") for t in old.get("tiers") or []] != [
        t.get("code") for t in new.get("tiers") or []
    ]:
        changed.append("tiers.order")
    return changed


def latest_document() -> tuple[int, dict[str, Any]]:
    """The newest version's number and document, in force or scheduled (0 and the defaults
    when nothing was published yet): what a new version edits and supersedes."""
    latest = ProgramVersion.objects.order_by("-version").values_list("version", "rules").first()
    if latest is None:
        return 0, _as_json(program.parse(program.DEFAULT_RULES).raw)
    return latest[0], latest[1]


def publish(
    rules_json: dict[str, Any],
    *,
    note: str,
    effective_at: dt.datetime | None = None,
    actor: audit.Actor,
    created_by: Any = None,
    based_on: int | None = None,
) -> ProgramVersion:
    """Store ``rules_json`` as the next version, in force from ``effective_at`` (now when
    omitted). Refusals (``ValidationFailed`` with field errors, ``Conflict``) change nothing.

    The stored document is the complete one (the defaults filled in), so a version means the
    same thing even if the defaults in code change later. ``based_on``: the version the
    edit started from (the console's form); if another version was published since, 409
    ``rules_changed`` rather than silently undoing it.
    """
    note = (note or "").strip()
    if not note:
        raise _refuse("note", "note_required", _("Say what changed and why."))
    if len(note) > NOTE_MAX:
        raise _refuse("note", "note_too_long", _("At most %(n)s characters.") % {"n": NOTE_MAX})
    parsed = program.parse(rules_json)  # ValidationFailed (code invalid_rules) names each field
    document = _as_json(parsed.raw)
    now = clock.now()
    effective_at = effective_at or now
    if effective_at < now - PAST_GRACE:
        raise _refuse(
            "effective_at",
            "effective_in_past",
            _("A new version takes effect now or later, never in the past."),
        )
    try:
        with transaction.atomic():
            _lock_versions()
            latest = ProgramVersion.objects.order_by("-version").first()
            number = (latest.version if latest is not None else 0) + 1
            if based_on is not None and based_on != number - 1:
                raise Conflict(
                    _(
                        "Version %(v)s was published while you were editing. "
                        "Reload the page to start from it."
                    )
                    % {"v": number - 1},
                    code="rules_changed",
                )
            if latest is not None and effective_at < latest.effective_at:
                # The newest effective version wins: an earlier start would never apply.
                raise Conflict(
                    _("Version %(v)s takes effect at %(at)s; a newer one cannot start before.")
                    % {"v": latest.version, "at": clock.local(latest.effective_at).strftime(STAMP)},
                    code="effective_before_latest",
                    errors=[
                        FieldError(
                            "effective_at",
                            "effective_before_latest",
                            _("Choose a time at or after the latest version's."),
                        )
                    ],
                )
            previous = latest.rules if latest is not None else _as_json(program.DEFAULT_RULES)
            version = ProgramVersion.objects.create(
                version=number,
                rules=document,
                note=note,
                effective_at=effective_at,
                created_at=now,
                created_by=created_by if getattr(created_by, "pk", None) else None,
            )
            audit.record(
                "loyalty.program_published",
                actor=actor,
                subject=version,
                details={
                    "version": number,
                    "effective_at": effective_at.isoformat(),
                    "changed": _changed_keys(previous, document),
                },
            )
            transaction.on_commit(program.forget)
    except IntegrityError:
        # Two publishers both started from "no version yet": the unique version number
        # let only one through.
        raise Conflict(
            _("Another version was published at the same moment. Reload and try again."),
            code="version_conflict",
        ) from None
    program.forget()
    return version


def dry_run(rules_json: dict[str, Any], *, at: dt.datetime | None = None) -> dict[str, Any]:
    """What the rules in ``rules_json`` would do to every member's tier if evaluated at
    ``at`` (now): ``{up, down, same, by_tier: {code: {from, to}}, baseline: {up, down, same}}``.

    ``from`` counts members at each tier now, ``to`` under the new rules; ``up``/``down``
    compare each member's tier now with the highest tier the new rules give them (ranks in
    the new rules; a tier the new rules drop counts as their base tier, as everywhere else).
    ``baseline`` is the same comparison under the rules in force, so staff can tell the
    change their edit causes from downgrades the next evaluation would make anyway.
    Members who never had a loyalty account hold the base tier with no figures and are not
    counted. Raises ``ValidationFailed`` for a bad document.
    """
    new = program.parse(rules_json)
    base = program.current()
    at = at or clock.now()
    window, window_params = figures.window_sql(at, new)
    new_case, new_params = figures.tier_case_sql(new, "w.spend", "w.orders", "w.loyalty")
    if base.window_months == new.window_months:
        source, source_params = f"({window}) w", window_params
        base_case, base_params = figures.tier_case_sql(base, "w.spend", "w.orders", "w.loyalty")
    else:  # the rules in force count over their own window
        base_window, base_window_params = figures.window_sql(at, base)
        source = f"({window}) w JOIN ({base_window}) b ON b.member_id = w.member_id"
        source_params = [*window_params, *base_window_params]
        base_case, base_params = figures.tier_case_sql(base, "b.spend", "b.orders", "b.loyalty")
    rank_from, rank_from_params = figures.tier_rank_case_sql(new, "g.from_tier")
    rank_to, rank_to_params = figures.tier_rank_case_sql(new, "g.to_tier")
    base_rank_from, base_rank_from_params = figures.tier_rank_case_sql(base, "g.from_tier")
    base_rank_to, base_rank_to_params = figures.tier_rank_case_sql(base, "g.base_tier")
    sql = f"""
        SELECT g.from_tier, g.to_tier, g.n,
               {rank_from} AS from_rank, {rank_to} AS to_rank,
               {base_rank_from} AS base_from_rank, {base_rank_to} AS base_to_rank
        FROM (
            SELECT t.from_tier, t.to_tier, t.base_tier, COUNT(*) AS n
            FROM (
                SELECT w.tier AS from_tier, {new_case} AS to_tier, {base_case} AS base_tier
                FROM {source}
            ) t
            GROUP BY t.from_tier, t.to_tier, t.base_tier
        ) g
    """  # noqa: S608 - fixed fragments only; every value is a parameter
    params = [
        *rank_from_params,
        *rank_to_params,
        *base_rank_from_params,
        *base_rank_to_params,
        *new_params,
        *base_params,
        *source_params,
    ]
    result: dict[str, Any] = {
        "up": 0,
        "down": 0,
        "same": 0,
        "by_tier": {t.code: {"from": 0, "to": 0} for t in new.tiers},
        "baseline": {"up": 0, "down": 0, "same": 0},
        "at": at,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for from_tier, to_tier, *numbers in rows:
        n, from_rank, to_rank, b_from, b_to = (int(v) for v in numbers)
        move = "up" if to_rank > from_rank else "down" if to_rank < from_rank else "same"
        result[move] += n
        base_move = "up" if b_to > b_from else "down" if b_to < b_from else "same"
        result["baseline"][base_move] += n
        result["by_tier"].setdefault(from_tier, {"from": 0, "to": 0})["from"] += n
        result["by_tier"].setdefault(to_tier, {"from": 0, "to": 0})["to"] += n
    return result
