"""Activities a member joined (PTS-2, TIER-2): loyalty score, activity points, upgrade.

``record_activity`` writes one ``LoyaltyEvent`` (its score is the program's ``loyalty`` for
the activity, or the ``default`` activity's), credits the activity's ``points`` when the
program gives any (available at once), then raises the member's tier at once if the new
score makes it qualify (``tiers.upgrade_if_qualified``). The key ``activity:<key>`` is
unique: a repeat returns the first event and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from patron.core import clock
from patron.core.audit import Actor
from patron.core.exceptions import Conflict, FieldError
from patron.loyalty import ledger, tiers
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit
from patron.loyalty.models import Entry, Lot, LoyaltyEvent
from patron.members.services._common import failed
from patron.notify import webhooks

if TYPE_CHECKING:
    from patron.members.models import Member

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# Clocks of platforms drift: an activity a few minutes "in the future" is accepted.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _replay(event: LoyaltyEvent, member: Member, activity: str) -> LoyaltyEvent:
    if event.member_id != member.pk or event.name != activity:
        raise Conflict(_("This key was used for another activity."), code="idempotency_key_reused")
    return event


def record_activity(
    member: Member, activity: str, occurred_at: dt.datetime, *, key: str, actor: Actor
) -> LoyaltyEvent:
    errors: list[FieldError] = []
    if not isinstance(activity, str) or not NAME.fullmatch(activity):
        errors.append(
            FieldError(
                "activity",
                "invalid",
                _("Use 1-64 letters, digits, '_', '.', ':' or '-' for the activity."),
            )
        )
    now = clock.now()
    if not isinstance(occurred_at, dt.datetime) or occurred_at.tzinfo is None:
        errors.append(
            FieldError("occurred_at", "invalid", _("Enter a date and time with its time zone."))
        )
    elif occurred_at < EARLIEST:
        errors.append(FieldError("occurred_at", "invalid", _("Enter a date after 1 January 2000.")))
    elif occurred_at > now + FUTURE_TOLERANCE:
        errors.append(
            FieldError("occurred_at", "in_future", _("An activity cannot be in the future."))
        )
    if not isinstance(key, str) or not 1 <= len(key) <= 180:
        errors.append(FieldError("key", "invalid", _("A key has 1 to 180 characters.")))
    if errors:
        raise failed(errors)
    full_key = f"activity:{key}"
    first = LoyaltyEvent.objects.filter(key=full_key).first()
    if first is not None:
        return _replay(first, member, activity)
    if member.status != member.Status.ACTIVE:
        raise Conflict(_("Only active members earn for activities."), code="member_not_active")
    rules = program.current()
    rule = rules.activity(activity)
    try:
        with transaction.atomic():
            account = ledger.lock_account(member.pk)
            first = LoyaltyEvent.objects.filter(key=full_key).first()
            if first is not None:
                return _replay(first, member, activity)
            event = LoyaltyEvent.objects.create(
                member=member,
                kind=LoyaltyEvent.Kind.ACTIVITY,
                name=activity,
                score=rule["loyalty"],
                occurred_at=occurred_at,
                key=full_key,
                created_at=now,
            )
            if rule["points"] > 0:
                lot = ledger.credit(
                    account,
                    Credit(
                        points=rule["points"],
                        source=Lot.Source.ACTIVITY,
                        key=full_key,
                        rule={"version": rules.version, "activity": activity, **rule},
                        reason=activity,
                    ),
                    rules=rules,
                    actor=actor,
                )
                entry = Entry.objects.get(key=full_key)
                webhooks.queue_event(
                    "points.earned",
                    {
                        "member": member.number,
                        "source": Lot.Source.ACTIVITY,
                        "points": rule["points"],
                        "entry_id": entry.pk,
                        "activity": activity,
                        "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
                    },
                    key=f"points.earned:{entry.pk}",
                )
            if rule["loyalty"] > 0:
                tiers.upgrade_if_qualified(
                    account, rules=rules, at=now, reason="activity", key=f"tier:{full_key}"
                )
            return event
    except IntegrityError:
        first = LoyaltyEvent.objects.filter(key=full_key).first()
        if first is None:
            raise
        return _replay(first, member, activity)
