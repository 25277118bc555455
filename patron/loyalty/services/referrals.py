"""Referral rewards (PTS-2, TIER-2): once a referred member's first order is final.

A referral counts when the referee (a member with ``referrer`` set) has an order whose
return window closed (``final_at`` passed) and that was neither cancelled nor refunded in
full: the first purchase the member kept. Then, once per referee:

- the referrer gets ``rules.referral_referrer`` points and the referee
  ``rules.referral_referee`` (lots of source ``referral``, available at once, keys
  ``referral:<referee id>:referrer`` / ``:referee``);
- the referrer gets a ``LoyaltyEvent(kind=referral)`` worth ``rules.referral_loyalty``
  (key ``referral:<referee id>``: the mark that the referral is done), dated when the order
  became final, and rises at once if that makes a higher tier (``tiers.upgrade_if_qualified``);
- platforms get ``points.earned`` for each credit.

The release job (``jobs.release_pending_points``) finds the referrals that became due and
calls ``credit_referral`` for each. Both accounts are locked, the lower member id first.
Members whose account is cancelled are left out.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from patron.core import clock
from patron.core.audit import Actor
from patron.loyalty import ledger, tiers
from patron.loyalty.jobs_runner import aware, fetchall
from patron.loyalty.ledger import Credit
from patron.loyalty.models import Lot, LoyaltyEvent
from patron.loyalty.rules import Rules
from patron.members.models import Member
from patron.notify import webhooks

# Referees with a kept, final order and no referral recorded yet: (referee, referrer, when
# the first such order became final).
_DUE_SQL = """
    SELECT m.id, m.referrer_id, MIN(o.final_at)
    FROM members_member m
    JOIN members_member r ON r.id = m.referrer_id
    JOIN loyalty_order o ON o.member_id = m.id
    WHERE m.referrer_id IS NOT NULL AND m.referrer_id <> m.id
      AND m.status <> 'cancelled' AND r.status <> 'cancelled'
      AND o.final_at IS NOT NULL AND o.final_at <= %s
      AND o.status <> 'cancelled' AND o.refunded_amount < o.amount
      AND m.id > %s
      AND NOT EXISTS (
          SELECT 1 FROM loyalty_loyaltyevent e
          WHERE e.key = 'referral:' || CAST(m.id AS TEXT)
      )
    GROUP BY m.id, m.referrer_id
    ORDER BY m.id
"""


def due(cutoff: dt.datetime, *, after: int = 0) -> list[tuple[int, int, dt.datetime]]:
    """Referrals whose referee's first kept order became final by ``cutoff``."""
    return [
        (referee, referrer, aware(final_at))
        for referee, referrer, final_at in fetchall(_DUE_SQL, [cutoff, after])
    ]


def event_key(referee_id: int) -> str:
    return f"referral:{referee_id}"


def credit_referral(
    referee_id: int, referrer_id: int, final_at: dt.datetime, *, rules: Rules, actor: Actor
) -> bool:
    """Reward one referral; False when it was rewarded before (safe to call twice)."""
    with transaction.atomic(), tiers.batched_notices():
        first, second = sorted((referee_id, referrer_id))
        locked = {first: ledger.lock_account(first), second: ledger.lock_account(second)}
        if LoyaltyEvent.objects.filter(key=event_key(referee_id)).exists():
            return False
        numbers = dict(
            Member.objects.filter(pk__in=(referee_id, referrer_id)).values_list("pk", "number")
        )
        for member_id, points, role in (
            (referrer_id, rules.referral_referrer, "referrer"),
            (referee_id, rules.referral_referee, "referee"),
        ):
            key = f"referral:{referee_id}:{role}"
            if points <= 0 or ledger.existing(key) is not None:
                continue
            ledger.credit(
                locked[member_id],
                Credit(
                    points=points,
                    source=Lot.Source.REFERRAL,
                    key=key,
                    rule={"version": rules.version, "referral": role},
                    reason=f"referral_{role}",
                ),
                rules=rules,
                actor=actor,
            )
            webhooks.queue_event(
                "points.earned",
                {
                    "member": numbers[member_id],
                    "points": points,
                    "source": "referral",
                    "role": role,
                    "status": "available",
                },
                key=key,
            )
        LoyaltyEvent.objects.create(
            member_id=referrer_id,
            kind=LoyaltyEvent.Kind.REFERRAL,
            name="referral",
            score=rules.referral_loyalty,
            occurred_at=min(final_at, clock.now()),
            key=event_key(referee_id),
            created_at=clock.now(),
        )
        tiers.upgrade_if_qualified(
            locked[referrer_id],
            rules=rules,
            at=clock.now(),
            reason="referral",
            key=f"upgrade:referral:{referee_id}",
        )
    return True
