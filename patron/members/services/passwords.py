"""Setting and checking passwords (AUTH-1): policy, no reuse of recent ones, rotation.

Every password set goes through ``set_password`` so that the history the reuse rule needs
is always complete: registration, the change page, the headless API and the console.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.db import transaction

from patron.core import audit, clock
from patron.core.audit import Actor
from patron.core.exceptions import FieldError, ValidationFailed
from patron.members.models import Member, PasswordHistory, User


def _history_size() -> int:
    return max(0, int(settings.PATRON_PASSWORD["HISTORY"]))


def check_policy(
    raw: str,
    user: User | None = None,
    *,
    phone: str | None = None,
    email: str | None = None,
    field: str = "password",
) -> None:
    """Raise ``ValidationFailed`` naming every rule the password breaks.

    ``phone``/``email`` are the plain values being registered (before a Member row
    exists); for an existing member the similarity validator reads them from the member.
    """
    errors = policy_errors(raw, user, phone=phone, email=email)
    if errors:
        raise ValidationFailed(
            [FieldError(field, code, message) for code, message in errors],
            message=errors[0][1],
        )


def policy_errors(
    raw: str, user: User | None = None, *, phone: str | None = None, email: str | None = None
) -> list[tuple[str, str]]:
    """(code, message) for each broken rule: the validators, then the reuse rule."""
    subject = user if user is not None else User(username="")
    if phone is not None:
        subject._patron_phone = phone  # type: ignore[attr-defined]
    if email is not None:
        subject._patron_email = email  # type: ignore[attr-defined]
    errors: list[tuple[str, str]] = []
    try:
        password_validation.validate_password(raw, subject)
    except ValidationError as exc:
        errors.extend((e.code or "password_invalid", e.messages[0]) for e in exc.error_list)
    if user is not None and user.pk and was_used_recently(user, raw):
        errors.append(("password_reused", _reused_message()))
    return errors


def _reused_message() -> str:
    from django.utils.translation import gettext

    return gettext("You used this password recently. Choose one you have not used before.")


def was_used_recently(user: User, raw: str) -> bool:
    """True when ``raw`` matches the current password or one of the last N in history."""
    size = _history_size()
    if size == 0:
        return False
    hashes = list(
        PasswordHistory.objects.filter(user=user)
        .order_by("-created_at", "-id")
        .values_list("password", flat=True)[:size]
    )
    if user.password and user.password not in hashes:
        hashes.insert(0, user.password)
    return any(check_password(raw, encoded) for encoded in hashes[:size])


@transaction.atomic
def set_password(user: User, raw: str, *, actor: Actor, check: bool = True) -> User:
    """Apply the policy, set the password and remember its hash for the reuse rule.

    ``check=False`` is for callers that validated already in the same request (allauth's
    forms run ``clean_password`` first); the history row is written either way.
    """
    if check:
        check_policy(raw, user)
    is_new = user.pk is None
    if not is_new and user.has_usable_password():
        # A password set elsewhere (registration, createsuperuser) may not be in the history
        # yet: keep it before replacing it, so it cannot come straight back.
        _remember_hash(user, user.password)
    user.set_password(raw)
    user.password_changed_at = clock.now()
    user.failed_sign_ins = 0
    user.locked_until = None
    user.save()
    remember(user)
    if not is_new:
        audit.record("user.password_changed", actor=actor, subject=user)
        _notify_changed(user)
    return user


def remember(user: User) -> None:
    """Append the user's current hash to the history and drop what is older than needed."""
    _remember_hash(user, user.password)


def _remember_hash(user: User, encoded: str) -> None:
    if PasswordHistory.objects.filter(user=user, password=encoded).exists():
        return
    PasswordHistory.objects.create(user=user, password=encoded, created_at=clock.now())
    keep = list(
        PasswordHistory.objects.filter(user=user)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)[: max(1, _history_size())]
    )
    PasswordHistory.objects.filter(user=user).exclude(id__in=keep).delete()


def _notify_changed(user: User) -> None:
    member = Member.objects.filter(user=user).first()
    if member is None:
        return
    from patron.notify.services import queue_notice

    queue_notice(template="password_changed", member=member, channels=("sms", "email"))


def is_expired(user: User) -> bool:
    """Forced rotation (off by default): the password is older than MAX_AGE_DAYS."""
    max_age = int(settings.PATRON_PASSWORD["MAX_AGE_DAYS"])
    if max_age <= 0 or not user.has_usable_password():
        return False
    changed = user.password_changed_at or user.date_joined
    return clock.now() - changed > dt.timedelta(days=max_age)
