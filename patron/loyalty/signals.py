"""Keep ``Account.birthday_index`` in step with the member's birth date (BEN-1).

The birthday-coupon job finds the day's birthdays by one indexed equality on
``Account.birthday_index`` (a keyed blind index of ``MMDD``: no year, no plaintext), instead
of decrypting every member's birth date. Saving a member whose birth date may have changed
recomputes it, creating the member's loyalty account if there is none yet.

Bulk writers that skip signals (``bulk_create``, raw SQL imports) set it with
``birthday_index_for(birth_date)`` themselves, or run
``patron issue-birthday-coupons --sync-index`` once afterwards.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from patron.core import clock
from patron.members.models import Member


def birthday_index_for(birth_date: str | dt.date | None) -> str:
    """The blind index of the birthday in ``birth_date`` (an ISO date), "" when none."""
    from patron.loyalty.jobs import birthday_index

    if not birth_date:
        return ""
    if isinstance(birth_date, str):
        try:
            birth_date = dt.date.fromisoformat(birth_date.strip()[:10])
        except ValueError:
            return ""
    return birthday_index(f"{birth_date.month:02d}{birth_date.day:02d}")


def sync_birthday_index(member: Member) -> None:
    """Write the member's birthday index to the account (created when missing)."""
    from patron.loyalty.models import Account

    index = birthday_index_for(member.birth_date)
    if (
        Account.objects.filter(pk=member.pk)
        .exclude(birthday_index=index)
        .update(birthday_index=index)
    ):
        return
    if not Account.objects.filter(pk=member.pk).exists():
        Account.objects.bulk_create(
            [Account(member_id=member.pk, birthday_index=index, tier_since=clock.now())],
            ignore_conflicts=True,  # a concurrent first ledger write may create it too
        )
        Account.objects.filter(pk=member.pk).exclude(birthday_index=index).update(
            birthday_index=index
        )


@receiver(post_save, sender=Member, dispatch_uid="loyalty.birthday_index")
def _member_saved(
    sender: Any, instance: Member, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if raw:
        return
    update_fields = kwargs.get("update_fields")
    if not created and update_fields is not None and "birth_date" not in update_fields:
        return
    sync_birthday_index(instance)


def sync_all_birthday_indexes(batch: int = 1000) -> int:
    """Recompute every member's birthday index (a one-off after bulk imports or a rotation
    of the blind-index key); returns how many members were looked at."""
    from django.db import transaction

    last, seen = 0, 0
    while True:
        members = list(
            Member.objects.filter(pk__gt=last).order_by("pk").only("pk", "birth_date")[:batch]
        )
        if not members:
            return seen
        with transaction.atomic():
            for member in members:
                sync_birthday_index(member)
        last, seen = members[-1].pk, seen + len(members)
