"""Sign-in rules (AUTH-2, AUTH-5, REG-11, PRIV-9): lockout, account state, new devices.

allauth runs the sign-in flows (forms, headless API, MFA stage, rate limits per IP and per
identifier); these services hold Patron's own rules, so every way in (allauth's pages, the
headless API, QR sign-in) applies the same ones:

- ``verify_password`` checks an identifier (username, phone or email) and password, counts
  consecutive failures per account and locks it for a while after too many (AUTH-2);
- ``record_sign_in`` remembers the device and notices a new one (AUTH-5);
- ``consent_gap`` is the PRIV-9 gate used by the portal middleware and the member API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import PatronError
from patron.members import selectors
from patron.members.models import ConsentDocument, KnownDevice, Member, User
from patron.notify.services import queue_notice


class SignInRefused(PatronError):
    """A refused sign-in. ``code`` says why; only ``invalid_credentials`` is vague on purpose.

    The clear reasons (locked, frozen, cancelled) are only ever given to someone who either
    knows the password already (state) or just caused the lock (their own attempts).
    """

    def __init__(self, code: str, message: str, status: int = 403, retry_after: int = 0):
        super().__init__(message=message, code=code, status=status)
        if retry_after:
            self.headers = {"Retry-After": str(retry_after)}


def _lock_policy() -> tuple[int, int]:
    return int(settings.PATRON_LOCKOUT["MAX_FAILURES"]), int(settings.PATRON_LOCKOUT["MINUTES"])


def _invalid() -> SignInRefused:
    return SignInRefused(
        "invalid_credentials",
        _("The username, phone or email and password do not match."),
        status=401,
    )


def _locked(until: dt.datetime) -> SignInRefused:
    seconds = max(1, int((until - clock.now()).total_seconds()))
    minutes = max(1, -(-seconds // 60))
    return SignInRefused(
        "account_locked",
        _(
            "Too many failed sign-ins: this account is locked for %(minutes)d more "
            "minute(s). Try again later."
        )
        % {"minutes": minutes},
        retry_after=seconds,
    )


def locked_until(user: User) -> dt.datetime | None:
    """When the account's lock ends, or None when it is not locked now."""
    if user.locked_until is not None and user.locked_until > clock.now():
        return user.locked_until
    return None


def check_not_locked(identifier: str) -> None:
    """Refuse at once, before any password check, while the account is locked.

    Run first so that a locked account's refusal is the lock itself (a clear message), not a
    generic rate-limit message, and so that guessing during a lock costs us no hashing.
    """
    user = selectors.user_by_identifier(identifier) if identifier else None
    if user is not None:
        until = locked_until(user)
        if until is not None:
            raise _locked(until)


def account_refusal(user: User) -> SignInRefused | None:
    """Why this (correctly authenticated) user may not sign in, if they may not (REG-11).

    Pending members may sign in: they need to, to verify their phone.
    """
    if not user.is_active:
        return SignInRefused("account_disabled", _("This account is disabled."))
    member = Member.objects.filter(user=user).only("status").first()
    if member is not None and member.status == Member.Status.FROZEN:
        return SignInRefused(
            "account_frozen",
            _("This account is frozen. Contact customer care if you think this is a mistake."),
        )
    if member is not None and member.status == Member.Status.CANCELLED:
        return SignInRefused("account_cancelled", _("This account has been cancelled."))
    return None


def verify_password(identifier: str, password: str) -> User:
    """The user this identifier and password belong to, or ``SignInRefused``.

    The password is hashed outside any transaction (argon2 is deliberately slow: holding a
    write lock meanwhile would serialise every sign-in on SQLite); only the failure count is
    updated in a short transaction, with the user row locked so parallel failures all count.
    """
    identifier = (identifier or "").strip()
    user = selectors.user_by_identifier(identifier) if identifier else None
    if user is None:
        # The same argon2 work as a real check: timing does not tell which accounts exist.
        make_password(password)
        raise _invalid()
    until = locked_until(user)
    if until is not None:
        raise _locked(until)
    if not user.check_password(password):
        raise _count_failure(user)
    state_refusal = account_refusal(user)
    if state_refusal is not None:
        raise state_refusal
    if user.failed_sign_ins or user.locked_until:
        User.objects.filter(pk=user.pk).update(failed_sign_ins=0, locked_until=None)
        user.failed_sign_ins, user.locked_until = 0, None
    return user


def _count_failure(user: User) -> SignInRefused:
    """Count one failure; the one that reaches the limit locks, audits and notifies once."""
    max_failures, minutes = _lock_policy()
    with transaction.atomic():
        fresh = User.objects.select_for_update().get(pk=user.pk)
        until = locked_until(fresh)
        if until is not None:  # a parallel attempt locked it meanwhile
            return _locked(until)
        fresh.failed_sign_ins += 1
        if max_failures <= 0 or fresh.failed_sign_ins < max_failures:
            fresh.save(update_fields=["failed_sign_ins"])
            return _invalid()
        # Locking starts a fresh count: after the lock the account has MAX_FAILURES again.
        fresh.failed_sign_ins = 0
        fresh.locked_until = clock.now() + dt.timedelta(minutes=minutes)
        fresh.save(update_fields=["failed_sign_ins", "locked_until"])
        audit.record(
            "user.locked",
            actor=Actor.system(),
            subject=fresh,
            details={"failures": max_failures, "minutes": minutes},
        )
        member = Member.objects.filter(user=fresh).first()
        if member is not None:
            queue_notice(
                template="account_locked",
                member=member,
                channels=("sms", "email"),
                context={"minutes": minutes},
                dedupe_key=f"account_locked:{fresh.pk}:{fresh.locked_until:%Y%m%d%H%M%S%f}",
            )
        return _locked(fresh.locked_until)


# --- Devices (AUTH-5) ----------------------------------------------------------------------

_BROWSERS = [
    ("Edge", r"Edg(e|A|iOS)?/"),
    ("WeChat", r"MicroMessenger/"),
    ("Opera", r"OPR/|Opera"),
    ("Firefox", r"Firefox/|FxiOS/"),
    ("Chrome", r"Chrome/|CriOS/"),
    ("Safari", r"Safari/"),
]
_SYSTEMS = [
    ("Android", r"Android"),
    ("iOS", r"iPhone|iPad|iPod"),
    ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("HarmonyOS", r"HarmonyOS|OpenHarmony"),
    ("Linux", r"Linux|X11"),
]


def device_summary(user_agent: str) -> str:
    """'Chrome on Windows': enough for a member to recognise a device, nothing more."""
    user_agent = user_agent or ""
    browser = next((name for name, rx in _BROWSERS if re.search(rx, user_agent)), "")
    system = next((name for name, rx in _SYSTEMS if re.search(rx, user_agent)), "")
    if browser and system:
        return _("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    if browser or system:
        return browser or system
    return user_agent[:60] or _("an unknown device")


def device_fingerprint(user_agent: str) -> str:
    return hashlib.sha256((user_agent or "").encode()).hexdigest()


def record_sign_in(user: User, *, user_agent: str, method: str = "password") -> KnownDevice:
    """Remember the device; notify the member when it is new (but not on the very first).

    The first sign-in ever has nothing to compare with: it is recorded without a notice.
    """
    fingerprint = device_fingerprint(user_agent)
    now = clock.now()
    with transaction.atomic():
        device = KnownDevice.objects.filter(user=user, fingerprint=fingerprint).first()
        if device is not None:
            KnownDevice.objects.filter(pk=device.pk).update(last_seen=now)
            return device
        first_ever = not KnownDevice.objects.filter(user=user).exists()
        try:
            with transaction.atomic():
                device = KnownDevice.objects.create(
                    user=user, fingerprint=fingerprint, first_seen=now, last_seen=now
                )
        except IntegrityError:
            # The same new device signed in twice at once: the other request noticed it.
            return KnownDevice.objects.get(user=user, fingerprint=fingerprint)
        audit.record(
            "user.device_added",
            actor=Actor.user(user),
            subject=user,
            details={"device_id": device.pk, "method": method, "notified": not first_ever},
        )
        member = Member.objects.filter(user=user).first()
        if member is not None and not first_ever:
            queue_notice(
                template="new_device",
                member=member,
                channels=("sms", "email", "inapp"),
                context={
                    "device": device_summary(user_agent),
                    "when": clock.local(now).strftime("%Y-%m-%d %H:%M"),
                },
                dedupe_key=f"new_device:{device.pk}",
            )
    return device


def revoke_sessions(user: User, session_ids: list[int], *, actor: Actor) -> list[str]:
    """Sign out the given sessions of this user (AUTH-5); returns the ended session keys.

    Only the user's own sessions are touched: an id belonging to someone else is ignored.
    The caller signs its own browser out when its current session is among them.
    """
    sessions = list(UserSession.objects.filter(user=user, pk__in=session_ids).order_by("pk"))
    ended = [(s.pk, s.session_key) for s in sessions]
    with transaction.atomic():
        for session in sessions:
            session.end()  # deletes the Django session too: its cookie or token is dead
        if sessions:
            audit.record(
                "user.sessions_revoked",
                actor=actor,
                subject=user,
                details={"sessions": [pk for pk, _key in ended]},
            )
    return [key for _pk, key in ended]


def trim_sessions(user: User, *, keep: int) -> list[str]:
    """End the user's least recently seen sessions beyond ``keep`` (AUTH-5).

    Called just before a sign-in adds a session, so a user holds at most
    ``PATRON_MAX_SESSIONS``. Besides limiting what a stolen password can keep open, it
    bounds allauth's sign-in bookkeeping, which re-checks every live session of the user
    (three queries each): without a cap, sign-in cost grows with every session never ended.
    """
    extra = list(
        UserSession.objects.filter(user=user)
        .order_by("-last_seen_at", "-pk")
        .values_list("pk", flat=True)[max(keep, 0) :]
    )
    return revoke_sessions(user, extra, actor=Actor.system()) if extra else []


# --- Consents (PRIV-9) -----------------------------------------------------------------------


def consent_gap(member: Member) -> list[ConsentDocument]:
    """Current required documents the member has not accepted (the PRIV-9 gate)."""
    return list(selectors.missing_consents(member))
