"""A forgotten password, reset with a code sent to the member's verified phone (AUTH-1, AUTH-2).

Two steps, each its own request:

1. ``request_reset(key, ip)``, ``key`` being ``phone_key(phone)``: the task worker looks
   the phone up, and when it is an active or frozen member's *verified* phone, a 6-digit
   code goes to it: a ``VerificationCode`` with purpose ``password_reset``, with the
   lifetime, tries and throttles of every code (the throttles count all of a member's
   codes, so resets cannot flood a phone past the caps). The caller learns nothing about
   the phone: the answer, and the time it takes, are the same whether it belongs to a
   member or not, and whether a throttle held the code back or not (no enumeration).
2. ``reset_password(key, code, password)``: the latest reset code must match; a wrong
   one costs a try, and an unknown phone fails like a wrong code. The new password meets
   the policy (a refusal leaves the code usable). Then, in one transaction, the code is
   used, the password is set through ``passwords.set_password`` (history, lockout cleared,
   the "password changed" notice, audit) and every session of the member is ended: a
   reset is what a member does when someone else may know the old password.
"""

from __future__ import annotations

import logging

from allauth.usersessions.models import UserSession
from django.db import transaction
from django.utils.translation import gettext as _

from patron.core import audit
from patron.core.audit import Actor
from patron.core.exceptions import RateLimited
from patron.members import selectors
from patron.members.models import Member, VerificationCode
from patron.members.services import passwords, signin, verification
from patron.members.services._common import refuse
from patron.members.tasks import send_password_reset_code

logger = logging.getLogger(__name__)

PHONE = VerificationCode.Channel.PHONE
PURPOSE = VerificationCode.Purpose.PASSWORD_RESET
# A frozen member may set a new password (the freeze still refuses the sign-in); a pending
# member has no verified phone yet, and a cancelled one can never sign in again.
_MAY_RESET = {Member.Status.ACTIVE, Member.Status.FROZEN}


def phone_key(phone: str) -> str:
    """The blind index of a typed phone number, which is what the portal keeps between the
    two steps (never the number itself); refuses a string that is no phone number."""
    index = selectors.phone_index(phone)
    if index is None:
        raise refuse("phone", "invalid_phone", _("This is not a valid phone number."))
    return index


def _member(key: str) -> Member | None:
    member = selectors.member_by_phone_index(key)
    if member is None or member.status not in _MAY_RESET or member.phone_verified_at is None:
        return None
    return member


def request_reset(*, key: str, ip: str | None = None) -> None:
    """Ask for a reset code for ``key`` (``phone_key``). The lookup and the sending happen in
    the task worker (``send_reset_code``): this request costs the same whether the phone is
    a member's or not, so its timing does not tell either. The task gets the IP's blind
    index, never the address."""
    send_password_reset_code.enqueue(key, verification.ip_key(ip))


def send_reset_code(*, key: str, ip_index: str = "") -> bool:
    """Send a reset code when ``key`` is a member's verified phone; otherwise do nothing.
    Never raises for an unknown phone or a throttle (nobody waits for the answer, and the
    caller's answer was the same either way). True when a code was sent."""
    member = _member(key)
    if member is None:
        return False
    try:
        verification.send_code(member=member, channel=PHONE, ip_index=ip_index, purpose=PURPOSE)
    except RateLimited:
        # The member already has a fresh code, or the caps are reached. Logged by id only.
        logger.info("password reset code held back by a throttle", extra={"member": member.pk})
        return False
    return True


def reset_password(*, key: str, code: str, password: str) -> Member:
    """Set a new password with a reset code; returns the member. Refusals are field errors
    (``code``: ``code_invalid``/``code_used``/``code_expired``/``code_locked``;
    ``password``: the policy's codes) and change nothing but a wrong code's try count."""
    member = _member(key)
    checked = verification.check_code(member=member, channel=PHONE, purpose=PURPOSE, code=code)
    assert member is not None  # check_code refuses an unknown phone
    passwords.check_policy(password, member.user, field="password")
    with transaction.atomic():
        member = Member.objects.select_for_update().select_related("user").get(pk=member.pk)
        if member.status not in _MAY_RESET:  # cancelled since the code was sent
            raise refuse("code", "code_invalid", _("The code is not correct."))
        row = verification.consume(member, checked)
        actor = Actor.user(member.user)
        passwords.set_password(member.user, password, actor=actor, check=False)
        sessions = list(UserSession.objects.filter(user=member.user).values_list("pk", flat=True))
        signin.revoke_sessions(member.user, sessions, actor=actor)
        audit.record(
            "user.password_reset",
            actor=actor,
            subject=member.user,
            details={"code_id": row.pk, "sessions_ended": len(sessions)},
        )
    return member
