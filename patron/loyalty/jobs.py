"""The loyalty program's periodic jobs (PTS-2/3/5/6, TIER-3, TIER-4, BEN-1, OPS-2).

Each job is ``job(as_of: date) -> counts`` and a ``patron <job-name> --as-of DATE`` command.
``as_of`` is a business date in the program's time zone and every job works **as of the
start of that day** (midnight, program time zone), the moment the scheduler runs the day's
jobs just after (``PATRON_JOBS_HOUR``, 02:00 by default):

- ``release_pending_points``: pending lots whose return window closed by then become
  available; then referrals whose referee's first order became final are rewarded;
- ``expire_points``: lots whose expiry passed by then (``expires_at`` <= that midnight:
  their last usable day was the day before) expire, after lots of tiers with an expiry
  extension are extended once instead;
- ``remind_expiring_points``: members whose points have their last usable day
  ``as_of + d`` (each ``d`` of ``rules.reminder_days``) are told, once per stage;
- ``issue_birthday_coupons``: members whose birthday is ``as_of`` get their tier's coupon;
- ``evaluate_tiers``: every member moves to the highest tier the window ending at that
  midnight qualifies for (run by the scheduler on evaluation days only);
- ``notify_tier_changes()``: tier changes not yet told are told (notice + webhook).

Runs are resumable and safe to repeat (``jobs_runner``): the bulk paths are set-based SQL
per chunk of member ids; Python loops only where each member gets a notice or where the
ledger's primitives do the work (debt repayment, referrals). See docs/jobs.md.
"""

# Raw SQL here interpolates only fixed fragments and placeholders; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import calendar
import datetime as dt
import logging
from collections import Counter
from typing import Any

from django.db import transaction

from patron.core import clock
from patron.core.audit import Actor
from patron.core.crypto import blind_index
from patron.core.tasks import enqueue_on_commit
from patron.loyalty import figures, ledger
from patron.loyalty import jobs_runner as runner
from patron.loyalty import rules as program
from patron.loyalty.jobs_runner import execute, fetchall, fetchone
from patron.loyalty.models import (
    Account,
    Allocation,
    Coupon,
    Entry,
    ExpiryReminder,
    Lot,
    TierChange,
)
from patron.loyalty.rules import Rules
from patron.members.models import Member
from patron.notify import webhooks
from patron.notify.models import WebhookEndpoint
from patron.notify.services import queue_notice

log = logging.getLogger("patron.loyalty.jobs")

SYSTEM = Actor.system()
NOTICE_CHANNELS = ("sms", "email", "inapp")
BIRTHDAY_PURPOSE = "birthday"
EVALUATION_REASON = "quarterly_evaluation"
NOTIFY_BATCH = 500


# --- dates -------------------------------------------------------------------------------


def day_start(day: dt.date, rules: Rules) -> dt.datetime:
    """Midnight at the start of ``day`` in the program's time zone (aware)."""
    return ledger.end_of_day(day - dt.timedelta(days=1), rules)


def today(rules: Rules | None = None) -> dt.date:
    """Today in the program's time zone (the commands' default ``--as-of``)."""
    return ledger.local_date(clock.now(), rules or program.current())


def is_evaluation_day(day: dt.date, rules: Rules) -> bool:
    return day.day == 1 and day.month in rules.evaluation_months


def _webhooks_on() -> bool:
    """Whether any platform endpoint could want an event: lets the bulk jobs skip the
    per-member event loop entirely in the common case of no endpoints."""
    return WebhookEndpoint.objects.filter(active=True).exists()


def _extension_tiers(rules: Rules) -> dict[str, int]:
    return {t.code: t.expiry_extension_months for t in rules.tiers if t.expiry_extension_months}


def _in_list(values: list[Any]) -> str:
    return ", ".join(["%s"] * len(values))


# --- release pending points (PTS-3) and referrals (PTS-2) ---------------------------------

_RELEASING = """
    SELECT l.id AS lot_id, l.member_id AS member_id, l.remaining AS remaining,
           l.order_id AS order_id, l.release_at AS release_at
    FROM loyalty_lot l
    WHERE {members} AND l.status = 'pending' AND l.release_at <= %s
"""


def release_pending_points(
    as_of: dt.date, *, chunk: int = runner.CHUNK, max_chunks: int | None = None
) -> dict[str, int]:
    """Pending lots whose ``release_at`` passed by the start of ``as_of`` become available
    (``available_at = release_at``; expiry ``expiry_months`` after that day); accounts with
    debt repay it from them first. Then due referrals are rewarded."""
    rules = program.current()
    progress = runner.start("release_pending_points", as_of)
    if progress is None:
        return runner.already_done()
    cutoff = day_start(as_of, rules)
    ids = runner.member_ids(
        "SELECT DISTINCT member_id FROM loyalty_lot WHERE status = 'pending' AND release_at <= %s"
        " AND member_id > %s ORDER BY member_id",
        [cutoff, progress.cursor],
    )

    def work(chunk_ids: list[int]) -> dict[str, int]:
        return _release_chunk(chunk_ids, cutoff, rules)

    if not runner.run_chunks(progress, ids, work, size=chunk, max_chunks=max_chunks):
        return dict(progress.counts)
    referrals = _reward_referrals(cutoff, rules)
    return runner.finish(progress, {"referrals": referrals})


def _release_chunk(ids: list[int], cutoff: dt.datetime, rules: Rules) -> dict[str, int]:
    lo, hi, now = ids[0], ids[-1], clock.now()
    runner.lock_accounts(ids)
    chunk_sql, chunk_params = runner.members_in("l.member_id", ids)
    runner.create_temp(
        "loyalty_releasing",
        _RELEASING.format(members=chunk_sql),
        [*chunk_params, cutoff],
        entry_ids=True,
    )
    lots, points, first, last = fetchone(
        "SELECT COUNT(*), COALESCE(SUM(remaining), 0), MIN(release_at), MAX(release_at)"
        " FROM loyalty_releasing"
    )
    if not lots:
        runner.drop_temp("loyalty_releasing")
        return {}
    _release_days(runner.aware(first), runner.aware(last), rules)
    execute(
        "UPDATE loyalty_lot SET status = 'available', available_at = release_at,"
        " expires_at = (SELECT d.expires_at FROM loyalty_release_days d"
        "               WHERE loyalty_lot.release_at >= d.lo AND loyalty_lot.release_at < d.hi)"
        " WHERE member_id BETWEEN %s AND %s AND status = 'pending'"
        " AND id IN (SELECT lot_id FROM loyalty_releasing)",
        [lo, hi],
    )
    execute(
        "INSERT INTO loyalty_entry (id, member_id, kind, points, pending_delta, debt_delta, key,"
        " order_id, lot_id, redemption_id, reason, actor_type, actor_id, created_at)"
        " SELECT entry_id, member_id, 'release', remaining, -remaining, 0,"
        " 'release:' || CAST(lot_id AS TEXT), order_id, lot_id, NULL, '', 'system', '', %s"
        " FROM loyalty_releasing",
        [now],
    )
    members = execute(
        "UPDATE loyalty_account SET pending = pending - x.total,"
        " available = available + x.total, updated_at = %s"
        " FROM (SELECT member_id, SUM(remaining) AS total FROM loyalty_releasing"
        "       GROUP BY member_id) x"
        " WHERE loyalty_account.member_id BETWEEN %s AND %s"
        " AND loyalty_account.member_id = x.member_id",
        [now, lo, hi],
    )
    repaid = _repay_debts(lo, hi, now)
    runner.drop_temp("loyalty_releasing")
    runner.drop_temp("loyalty_release_days")
    return {"lots": lots, "points": int(points), "members": members, "debt_repaid": repaid}


def _release_days(first: dt.datetime, last: dt.datetime, rules: Rules) -> None:
    """A temp table mapping each local day of the release times to the expiry of points
    that became available that day (date arithmetic in Python: one rule on both DBs)."""
    runner.drop_temp("loyalty_release_days")
    kind = runner.datetime_type()
    execute(f"CREATE TEMP TABLE loyalty_release_days (lo {kind}, hi {kind}, expires_at {kind})")
    day, end = ledger.local_date(first, rules), ledger.local_date(last, rules)
    rows = []
    while day <= end:
        rows.append((day_start(day, rules), ledger.end_of_day(day, rules), _expiry(day, rules)))
        day += dt.timedelta(days=1)
    runner.executemany(
        "INSERT INTO loyalty_release_days (lo, hi, expires_at) VALUES (%s, %s, %s)", rows
    )


def _expiry(day: dt.date, rules: Rules) -> dt.datetime:
    return ledger.end_of_day(ledger.add_months(day, rules.expiry_months), rules)


def _repay_debts(lo: int, hi: int, now: dt.datetime) -> int:
    """Members with debt repay it from the points just released (nearest expiry first):
    the few such members go through Python, with the ledger's entry shapes."""
    rows = fetchall(
        "SELECT DISTINCT r.member_id FROM loyalty_releasing r"
        " JOIN loyalty_account a ON a.member_id = r.member_id"
        " WHERE a.member_id BETWEEN %s AND %s AND a.debt > 0 ORDER BY r.member_id",
        [lo, hi],
    )
    repaid = 0
    for (member_id,) in rows:
        account = Account.objects.get(pk=member_id)  # locked by the chunk
        lot_ids = [
            row[0]
            for row in fetchall(
                "SELECT lot_id FROM loyalty_releasing WHERE member_id = %s", [member_id]
            )
        ]
        lots = Lot.objects.filter(pk__in=lot_ids, remaining__gt=0).order_by("expires_at", "id")
        for lot in lots:
            take = min(account.debt, lot.remaining)
            if take <= 0:
                break
            entry = Entry.objects.create(
                member_id=member_id,
                kind=Entry.Kind.DEBT_REPAY,
                points=-take,
                debt_delta=-take,
                lot=lot,
                key=f"release:{lot.pk}:repay",
                actor_type=SYSTEM.type,
                actor_id=SYSTEM.id,
                created_at=now,
            )
            Allocation.objects.create(entry=entry, lot=lot, points=-take)
            Lot.objects.filter(pk=lot.pk).update(remaining=lot.remaining - take)
            account.debt -= take
            account.available -= take
            repaid += take
        account.updated_at = now
        account.save(update_fields=["available", "debt", "updated_at"])
    return repaid


def _reward_referrals(cutoff: dt.datetime, rules: Rules) -> int:
    from patron.loyalty.services import referrals

    rewarded = 0
    for referee, referrer, final_at in referrals.due(cutoff):
        if referrals.credit_referral(referee, referrer, final_at, rules=rules, actor=SYSTEM):
            rewarded += 1
    return rewarded


# --- expire points (PTS-5) ---------------------------------------------------------------

_EXPIRING = """
    SELECT l.id AS lot_id, l.member_id AS member_id, l.remaining AS remaining
    FROM loyalty_lot l
    WHERE {members} AND l.status = 'available' AND l.expires_at <= %s
"""


def expire_points(
    as_of: dt.date, *, chunk: int = runner.CHUNK, max_chunks: int | None = None
) -> dict[str, int]:
    """Available lots whose expiry passed by the start of ``as_of`` expire: an ``expire``
    entry each (key ``expire:<lot>``) with its allocation, the lot zeroed, the account
    reduced, one ``points.expired`` webhook per member. Lots of members whose tier has an
    expiry extension that were never extended are extended once instead (PTS-5)."""
    rules = program.current()
    progress = runner.start("expire_points", as_of)
    if progress is None:
        return runner.already_done()
    cutoff = day_start(as_of, rules)
    ids = runner.member_ids(
        "SELECT DISTINCT member_id FROM loyalty_lot WHERE status = 'available'"
        " AND expires_at <= %s AND member_id > %s ORDER BY member_id",
        [cutoff, progress.cursor],
    )
    events = _webhooks_on()

    def work(chunk_ids: list[int]) -> dict[str, int]:
        return _expire_chunk(chunk_ids, cutoff, as_of, rules, events)

    if not runner.run_chunks(progress, ids, work, size=chunk, max_chunks=max_chunks):
        return dict(progress.counts)
    return runner.finish(progress)


def _expire_chunk(
    ids: list[int], cutoff: dt.datetime, as_of: dt.date, rules: Rules, events: bool
) -> dict[str, int]:
    lo, hi, now = ids[0], ids[-1], clock.now()
    runner.lock_accounts(ids)
    extended = _extend_for_tiers(ids, cutoff, rules)
    chunk_sql, chunk_params = runner.members_in("l.member_id", ids)
    runner.create_temp(
        "loyalty_expiring",
        _EXPIRING.format(members=chunk_sql),
        [*chunk_params, cutoff],
        entry_ids=True,
    )
    execute(
        "INSERT INTO loyalty_entry (id, member_id, kind, points, pending_delta, debt_delta, key,"
        " order_id, lot_id, redemption_id, reason, actor_type, actor_id, created_at)"
        " SELECT entry_id, member_id, 'expire', -remaining, 0, 0,"
        " 'expire:' || CAST(lot_id AS TEXT), NULL, lot_id, NULL, '', 'system', '', %s"
        " FROM loyalty_expiring WHERE remaining > 0",
        [now],
    )
    execute(
        "INSERT INTO loyalty_allocation (entry_id, lot_id, points)"
        " SELECT entry_id, lot_id, -remaining FROM loyalty_expiring WHERE remaining > 0"
    )
    lots = execute(
        "UPDATE loyalty_lot SET remaining = 0, status = 'expired'"
        " WHERE member_id BETWEEN %s AND %s AND status = 'available'"
        " AND id IN (SELECT lot_id FROM loyalty_expiring)",
        [lo, hi],
    )
    members = execute(
        "UPDATE loyalty_account SET available = available - x.total, updated_at = %s"
        " FROM (SELECT member_id, SUM(remaining) AS total FROM loyalty_expiring"
        "       WHERE remaining > 0 GROUP BY member_id) x"
        " WHERE loyalty_account.member_id BETWEEN %s AND %s"
        " AND loyalty_account.member_id = x.member_id",
        [now, lo, hi],
    )
    (points,) = fetchone("SELECT COALESCE(SUM(remaining), 0) FROM loyalty_expiring")
    if events and points:
        rows = fetchall(
            "SELECT x.member_id, m.number, SUM(x.remaining) FROM loyalty_expiring x"
            " JOIN members_member m ON m.id = x.member_id"
            " WHERE m.id BETWEEN %s AND %s AND x.remaining > 0"
            " GROUP BY x.member_id, m.number ORDER BY x.member_id",
            [lo, hi],
        )
        for member_id, number, total in rows:
            expired: dict[str, Any] = {
                "member": number,
                "points": int(total),
                "as_of": as_of.isoformat(),
            }
            webhooks.queue_event(
                "points.expired",
                expired,
                key=f"expired:{member_id}:{as_of.isoformat()}",
            )
    runner.drop_temp("loyalty_expiring")
    return {"lots": lots, "points": int(points), "members": members, "extended": extended}


def _extend_for_tiers(ids: list[int], cutoff: dt.datetime, rules: Rules) -> int:
    """Lots reaching expiry whose member's tier grants an extension (Diamond +6 months by
    default) and that were never extended move their expiry instead, once per lot. New
    expiries are computed in Python per distinct expiry and tier, then set per group."""
    extension = _extension_tiers(rules)
    if not extension:
        return 0
    tiers = list(extension)
    members, members_params = runner.members_in("l.member_id", ids)
    rows = fetchall(
        "SELECT l.id, l.expires_at, a.tier FROM loyalty_lot l"
        " JOIN loyalty_account a ON a.member_id = l.member_id"
        f" WHERE {members} AND a.member_id BETWEEN %s AND %s"
        " AND l.status = 'available' AND l.expires_at <= %s AND l.extended_months = 0"
        f" AND a.tier IN ({_in_list(tiers)})",
        [*members_params, ids[0], ids[-1], cutoff, *tiers],
    )
    groups: dict[tuple[dt.datetime, int], list[int]] = {}
    for lot_id, expires_at, tier in rows:
        months = extension[tier]
        day = ledger.add_months(ledger.last_usable_day(runner.aware(expires_at), rules), months)
        groups.setdefault((ledger.end_of_day(day, rules), months), []).append(lot_id)
    for (expires_at, months), lot_ids in groups.items():
        for part in runner.chunks(lot_ids, 500):
            execute(
                "UPDATE loyalty_lot SET expires_at = %s, extended_months = extended_months + %s"
                f" WHERE id IN ({_in_list(part)})",
                [expires_at, months, *part],
            )
    return len(rows)


# --- remind expiring points (PTS-6) --------------------------------------------------------


def remind_expiring_points(
    as_of: dt.date, *, chunk: int = runner.NOTICE_CHUNK, max_chunks: int | None = None
) -> dict[str, int]:
    """For each stage ``d`` of ``rules.reminder_days``: members whose available points have
    their last usable day on ``as_of + d`` get one ``ExpiryReminder`` and one notice
    (SMS, email if on file, in-app) and platforms a ``points.expiring`` webhook, once per
    member and stage. Lots an expiry extension of the member's tier will still move are
    left out: they do not lapse on that day."""
    rules = program.current()
    progress = runner.start("remind_expiring_points", as_of)
    if progress is None:
        return runner.already_done()
    stages = [(d, as_of + dt.timedelta(days=d)) for d in rules.reminder_days]
    if not stages:
        return runner.finish(progress)
    windows: list[Any] = []
    for _d, day in stages:
        windows += [day_start(day, rules), ledger.end_of_day(day, rules)]
    spans = " OR ".join(["(expires_at > %s AND expires_at <= %s)"] * len(stages))
    ids = runner.member_ids(
        "SELECT DISTINCT member_id FROM loyalty_lot WHERE status = 'available' AND remaining > 0"
        f" AND ({spans}) AND member_id > %s ORDER BY member_id",
        [*windows, progress.cursor],
    )

    def work(chunk_ids: list[int]) -> dict[str, int]:
        counts: Counter = Counter()
        for stage, day in stages:
            counts.update(_remind_stage(chunk_ids[0], chunk_ids[-1], stage, day, rules))
        return dict(counts)

    if not runner.run_chunks(progress, ids, work, size=chunk, max_chunks=max_chunks):
        return dict(progress.counts)
    return runner.finish(progress)


def _remind_stage(lo: int, hi: int, stage: int, day: dt.date, rules: Rules) -> dict[str, int]:
    extension = list(_extension_tiers(rules))
    keep = ""
    if extension:
        keep = f" AND NOT (a.tier IN ({_in_list(extension)}) AND l.extended_months = 0)"
    rows = fetchall(
        "SELECT l.member_id, SUM(l.remaining) FROM loyalty_lot l"
        " JOIN loyalty_account a ON a.member_id = l.member_id"
        " JOIN members_member m ON m.id = l.member_id"
        " WHERE l.member_id BETWEEN %s AND %s AND a.member_id BETWEEN %s AND %s"
        " AND m.id BETWEEN %s AND %s AND l.status = 'available' AND l.remaining > 0"
        " AND l.expires_at > %s AND l.expires_at <= %s AND m.status <> 'cancelled'"
        f"{keep}"
        " AND NOT EXISTS (SELECT 1 FROM loyalty_expiryreminder r WHERE r.member_id = l.member_id"
        "                 AND r.stage = %s AND r.expires_on = %s)"
        " GROUP BY l.member_id ORDER BY l.member_id",
        [
            *(lo, hi) * 3,
            day_start(day, rules),
            ledger.end_of_day(day, rules),
            *extension,
            stage,
            day,
        ],
    )
    if not rows:
        return {}
    now = clock.now()
    ExpiryReminder.objects.bulk_create(
        [
            ExpiryReminder(
                member_id=member_id, stage=stage, expires_on=day, points=points, created_at=now
            )
            for member_id, points in rows
        ],
        ignore_conflicts=True,
    )
    members = Member.objects.in_bulk([member_id for member_id, _p in rows])
    points_total = 0
    for member_id, points in rows:
        member = members[member_id]
        key = f"points-expiring:{member_id}:{stage}:{day.isoformat()}"
        queue_notice(
            template="loyalty_points_expiring",
            member=member,
            channels=NOTICE_CHANNELS,
            context={"points": int(points), "date": day.isoformat(), "days": stage},
            dedupe_key=key,
        )
        webhooks.queue_event(
            "points.expiring",
            {
                "member": member.number,
                "points": int(points),
                "last_day": day.isoformat(),
                "days_left": stage,
            },
            key=key,
        )
        points_total += int(points)
    return {"reminders": len(rows), f"stage_{stage}": len(rows), "points": points_total}


# --- birthday coupons (BEN-1, TIER-5) --------------------------------------------------------


def birthday_index(month_day: str) -> str:
    """The blind index of a birthday's ``MMDD`` (``Account.birthday_index``)."""
    return blind_index(month_day, BIRTHDAY_PURPOSE)


def birthdays_on(day: dt.date) -> list[str]:
    """The ``MMDD`` birthdays celebrated on ``day``: 29 February birthdays on 28 February
    in years without a 29th."""
    days = [f"{day.month:02d}{day.day:02d}"]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        days.append("0229")
    return days


def issue_birthday_coupons(
    as_of: dt.date, *, chunk: int = runner.NOTICE_CHUNK, max_chunks: int | None = None
) -> dict[str, int]:
    """Active members whose birthday is ``as_of`` and whose tier has a birthday coupon get
    one (key ``birthday:<member>:<year>``: once a year), valid
    ``rules.birthday_coupon_valid_days`` days, with a notice and a ``coupon.issued`` webhook."""
    rules = program.current()
    progress = runner.start("issue_birthday_coupons", as_of)
    if progress is None:
        return runner.already_done()
    values = {t.code: t.birthday_coupon for t in rules.tiers if t.birthday_coupon > 0}
    if not values:
        return runner.finish(progress)
    ids = list(
        Account.objects.filter(
            birthday_index__in=[birthday_index(d) for d in birthdays_on(as_of)],
            tier__in=list(values),
            member__status=Member.Status.ACTIVE,
            member_id__gt=progress.cursor,
        )
        .order_by("member_id")
        .values_list("member_id", flat=True)
    )

    def work(chunk_ids: list[int]) -> dict[str, int]:
        return _birthday_chunk(chunk_ids, as_of, values, rules)

    if not runner.run_chunks(progress, ids, work, size=chunk, max_chunks=max_chunks):
        return dict(progress.counts)
    return runner.finish(progress)


def _birthday_chunk(
    ids: list[int], as_of: dt.date, values: dict[str, Any], rules: Rules
) -> dict[str, int]:
    from patron.loyalty.services import coupons

    keys = {member_id: f"birthday:{member_id}:{as_of.year}" for member_id in ids}
    issued_before = set(Coupon.objects.filter(key__in=keys.values()).values_list("key", flat=True))
    tiers = dict(Account.objects.filter(pk__in=ids).values_list("member_id", "tier"))
    members = Member.objects.in_bulk(ids)
    issued = 0
    for member_id in ids:
        key = keys[member_id]
        tier = tiers.get(member_id)
        if key in issued_before or tier not in values:
            continue
        member = members[member_id]
        coupon = coupons.issue(
            member,
            source=Coupon.Source.BIRTHDAY,
            value=values[tier],
            valid_days=rules.birthday_coupon_valid_days,
            key=key,
            actor=SYSTEM,
        )
        queue_notice(
            template="loyalty_birthday_coupon",
            member=member,
            channels=NOTICE_CHANNELS,
            context={
                "value": f"{coupon.value:.2f}",
                "code": coupon.code,
                "until": ledger.last_usable_day(coupon.valid_until, rules).isoformat(),
            },
            dedupe_key=key,
        )
        issued += 1
    return {"coupons": issued}


# --- evaluate tiers (TIER-3) ---------------------------------------------------------------


def evaluate_tiers(
    as_of: dt.date, *, chunk: int = runner.CHUNK, max_chunks: int | None = None
) -> dict[str, int]:
    """The periodic evaluation as of midnight at the start of ``as_of``: every account
    moves to the highest tier the window ending then qualifies for (up or down). Changes
    are ``TierChange(kind=evaluation)`` rows with their figures (key
    ``eval:<as_of>:<member>``); members and platforms are told by ``notify_tier_changes``.

    One aggregate over the window (as ``figures.window_sql`` defines it) writes the
    accounts whose tier changes to a temp table; then, per chunk of those, the accounts are
    locked and changed unless their tier moved meanwhile (an order's upgrade wins)."""
    rules = program.current()
    progress = runner.start("evaluate_tiers", as_of)
    if progress is None:
        return runner.already_done()
    at = day_start(as_of, rules)
    if progress.cursor:  # resuming: only the members after the cursor
        window, window_params = figures.window_sql(
            at, rules, lo=progress.cursor + 1, hi=runner.MAX_ID
        )
    else:
        window, window_params = figures.window_sql(at, rules)
    case, case_params = figures.tier_case_sql(rules, "w.spend", "w.orders", "w.loyalty")
    runner.create_temp(
        "loyalty_evaluation",
        f"SELECT x.* FROM (SELECT w.member_id AS member_id, w.spend AS spend,"
        f" w.orders AS orders, w.loyalty AS loyalty, w.tier AS old_tier, {case} AS new_tier"
        f" FROM ({window}) w) x WHERE x.new_tier <> x.old_tier",
        [*case_params, *window_params],
        entry_ids=False,
    )
    execute("CREATE INDEX loyalty_evaluation_member ON loyalty_evaluation (member_id)")
    ids = runner.member_ids("SELECT member_id FROM loyalty_evaluation ORDER BY member_id", [])
    rank_old, rank_old_params = figures.tier_rank_case_sql(rules, "e.old_tier")
    rank_new, rank_new_params = figures.tier_rank_case_sql(rules, "e.new_tier")
    ranks = (f"{rank_new} > {rank_old}", [*rank_new_params, *rank_old_params])

    def work(chunk_ids: list[int]) -> dict[str, int]:
        return _evaluate_chunk(chunk_ids, as_of, rules, ranks)

    try:
        complete = runner.run_chunks(progress, ids, work, size=chunk, max_chunks=max_chunks)
    finally:
        runner.drop_temp("loyalty_evaluation")
    if progress.counts.get("changed"):
        from patron.loyalty.tasks import notify_tier_changes as notify_task

        enqueue_on_commit(notify_task)
    if not complete:
        return dict(progress.counts)
    return runner.finish(progress)


_TIERCHANGE_COLUMNS = (
    "member_id, from_tier, to_tier, kind, reason, spend, orders, loyalty, order_id,"
    " program_version, key, changed_at, notified_at"
)


def _evaluate_chunk(
    ids: list[int], as_of: dt.date, rules: Rules, ranks: tuple[str, list]
) -> dict[str, int]:
    """Change the chunk's accounts whose tier is still the one evaluated (an upgrade by an
    order since the aggregate wins) and record each change."""
    lo, hi, now = ids[0], ids[-1], clock.now()
    up_sql, up_params = ranks
    key_prefix = f"eval:{as_of.isoformat()}:"
    change_values = (
        "e.member_id, e.old_tier, e.new_tier, 'evaluation', %s, e.spend, e.orders, e.loyalty,"
        " NULL, %s, %s || CAST(e.member_id AS TEXT), %s, NULL"
    )
    change_params = [EVALUATION_REASON, rules.version, key_prefix, now]
    if runner.postgres():
        # One statement, one round trip: ``locked`` locks the chunk's accounts in member-id
        # order (as ``runner.lock_accounts`` does; the update only touches rows it already
        # holds, so every first lock is taken there, in order); the update's RETURNING
        # feeds the change records and the counts. An account whose tier moved since the
        # aggregate fails ``a.tier = e.old_tier`` (rechecked on its newest version).
        up, changed = fetchone(
            "WITH locked AS ("
            " SELECT member_id FROM loyalty_account WHERE member_id = ANY(%s)"
            " ORDER BY member_id FOR UPDATE"
            "), e AS ("
            " UPDATE loyalty_account a SET tier = e.new_tier, tier_since = %s, updated_at = %s"
            " FROM locked l, loyalty_evaluation e"
            " WHERE a.member_id = ANY(%s) AND a.member_id = l.member_id"
            " AND e.member_id BETWEEN %s AND %s"
            " AND a.member_id = e.member_id AND a.tier = e.old_tier"
            " RETURNING e.*"
            f"), recorded AS (INSERT INTO loyalty_tierchange ({_TIERCHANGE_COLUMNS})"
            f" SELECT {change_values} FROM e ON CONFLICT (key) DO NOTHING)"
            f" SELECT COALESCE(SUM(CASE WHEN {up_sql} THEN 1 ELSE 0 END), 0), COUNT(*) FROM e",
            [list(ids), now, now, list(ids), lo, hi, *change_params, *up_params],
        )
        return {"changed": int(changed), "up": int(up), "down": int(changed) - int(up)}
    same = (
        " FROM loyalty_evaluation e JOIN loyalty_account a"
        " ON a.member_id = e.member_id AND a.tier = e.old_tier"
        " WHERE e.member_id BETWEEN %s AND %s AND a.member_id BETWEEN %s AND %s"
    )
    # SQLite: the IMMEDIATE transaction is the only writer, so the change rows and the
    # accounts' update select the same accounts; the recorded rows give the counts (one
    # statement fewer than counting first: a tenth of the job at 100,000 members).
    recorded = fetchall(
        f"INSERT INTO loyalty_tierchange ({_TIERCHANGE_COLUMNS})"
        f" SELECT {change_values}{same} ON CONFLICT (key) DO NOTHING"
        " RETURNING from_tier, to_tier",
        [*change_params, lo, hi, lo, hi],
    )
    changed = execute(
        "UPDATE loyalty_account SET tier = e.new_tier, tier_since = %s, updated_at = %s"
        " FROM loyalty_evaluation e"
        " WHERE loyalty_account.member_id BETWEEN %s AND %s"
        " AND loyalty_account.member_id = e.member_id AND loyalty_account.tier = e.old_tier"
        " AND e.member_id BETWEEN %s AND %s",
        [now, now, lo, hi, lo, hi],
    )
    if len(recorded) > changed:
        raise RuntimeError("evaluation: accounts changed under the job")
    up = sum(1 for old, new in recorded if rules.rank(new) > rules.rank(old))
    return {"changed": changed, "up": up, "down": changed - up}


# --- tell members and platforms about tier changes (TIER-4, NOTE-2) -----------------------


def notify_tier_changes(*, batch: int = NOTIFY_BATCH) -> int:
    """Tier changes not yet told: a notice (``loyalty_tier_changed``: SMS, email if on
    file, in-app) and a ``tier.changed`` webhook each (keys ``tier:<id>``), then
    ``notified_at`` set. Batches of ``batch``, oldest first; returns how many were told.
    Two workers running it at once take different rows (PostgreSQL) or queue (SQLite)."""
    rules = program.current()
    told = 0
    while True:
        with transaction.atomic():
            rows = TierChange.objects.filter(notified_at__isnull=True).order_by("changed_at", "id")
            if runner.postgres():
                rows = rows.select_for_update(skip_locked=True, of=("self",))
            changes = list(rows.select_related("member", "order")[:batch])
            if not changes:
                return told
            for change in changes:
                _tell(change, rules)
            TierChange.objects.filter(pk__in=[c.pk for c in changes]).update(
                notified_at=clock.now()
            )
        told += len(changes)


def _tell(change: TierChange, rules: Rules) -> None:
    member = change.member
    old, new = rules.tier(change.from_tier), rules.tier(change.to_tier)
    direction = "up" if new.rank > old.rank else "down"
    key = f"tier:{change.pk}"
    if member.status != Member.Status.CANCELLED:
        queue_notice(
            template="loyalty_tier_changed",
            member=member,
            channels=NOTICE_CHANNELS,
            context={
                "from_name": old.name,
                "from_name_en": old.name_en,
                "to_name": new.name,
                "to_name_en": new.name_en,
                "direction": direction,
                "kind": change.kind,
                # Staff give free-text reasons; automatic changes carry a code.
                "reason": change.reason if change.kind == TierChange.Kind.MANUAL else "",
                "spend": f"{change.spend:.2f}",
                "orders": change.orders,
                "loyalty": change.loyalty,
            },
            dedupe_key=key,
        )
    data: dict[str, Any] = {
        "member": member.number,
        "from": change.from_tier,
        "to": change.to_tier,
        "direction": direction,
        "kind": change.kind,
        "spend": f"{change.spend:.2f}",
        "orders": change.orders,
        "loyalty": change.loyalty,
        "order_id": None,
        "changed_at": change.changed_at.isoformat(),
    }
    if change.kind != TierChange.Kind.MANUAL:
        data["reason"] = change.reason  # a code; staff text stays inside Patron
    if change.order is not None:
        data["order_id"] = change.order.order_id
    webhooks.queue_event("tier.changed", data, key=key)


# --- the day's run (OPS-2) ---------------------------------------------------------------

DAILY = "daily"


def run_daily(as_of: dt.date) -> dict[str, dict[str, int]]:
    """The day's jobs in order: release, expire, remind, birthday coupons, the evaluation
    on evaluation days, then tier notices. Each job is resumable on its own; the day is
    marked done in ``JobRun('daily', as_of)`` once all finished."""
    rules = program.current()
    progress = runner.start(DAILY, as_of)
    if progress is None:
        return {}
    results: dict[str, dict[str, int]] = {
        "release_pending_points": release_pending_points(as_of),
        "expire_points": expire_points(as_of),
        "remind_expiring_points": remind_expiring_points(as_of),
        "issue_birthday_coupons": issue_birthday_coupons(as_of),
    }
    if is_evaluation_day(as_of, rules):
        results["evaluate_tiers"] = evaluate_tiers(as_of)
    results["notify_tier_changes"] = {"notified": notify_tier_changes()}
    flat = {
        f"{job}.{name}": value
        for job, counts in results.items()
        for name, value in counts.items()
        if isinstance(value, int)
    }
    runner.finish(progress, flat)
    return results


def daily_done(as_of: dt.date) -> bool:
    from patron.loyalty.models import JobRun

    return JobRun.objects.filter(job=DAILY, as_of=as_of, done=True).exists()
