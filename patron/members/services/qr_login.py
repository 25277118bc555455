"""QR sign-in (AUTH-4): a signed-in device approves a sign-in shown as a QR code elsewhere.

1. The waiting browser asks for a token (``start``): a random secret whose SHA-256 digest
   is all we store, alive for ``PATRON_QR_LOGIN_TTL_SECONDS`` (2 minutes). The QR code is
   the approval URL carrying the secret; the waiting browser keeps only the token's id in
   its own session, so nobody else can consume it even after seeing the code.
2. A member signed in on another device opens the URL, sees which device asks, and
   approves or denies (``approve`` / ``deny``).
3. The waiting browser polls ``status`` and then ``consume``s the approved token: a single
   conditional UPDATE (approved and unexpired -> consumed), so of two parallel consumes
   exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock, ids
from patron.core.audit import Actor
from patron.core.crypto import token_digest
from patron.core.exceptions import NotFound, PatronError
from patron.members.models import Member, QrLoginToken, User
from patron.members.services.signin import account_refusal, device_summary, record_sign_in
from patron.notify.services import queue_notice

Status = QrLoginToken.Status


class QrLoginFailed(PatronError):
    """A QR token that cannot do what was asked; ``code`` says why (expired, used, ...)."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message=message, code=code, status=status)


@dataclass(frozen=True)
class NewQrToken:
    token: QrLoginToken
    secret: str  # goes into the QR code only; never stored


def _ttl() -> dt.timedelta:
    return dt.timedelta(seconds=int(settings.PATRON_QR_LOGIN_TTL_SECONDS))


def explain(token: QrLoginToken | None) -> QrLoginFailed:
    """Explain why a token is not usable for the step asked, from its current state."""
    if token is None:
        return QrLoginFailed("qr_unknown", _("This QR code is not valid."), status=404)
    if token.status == Status.CONSUMED:
        return QrLoginFailed("qr_used", _("This QR code was already used. Show a new one."))
    if token.status == Status.DENIED:
        return QrLoginFailed("qr_denied", _("This sign-in was denied on the other device."))
    if token.expires_at <= clock.now():
        return QrLoginFailed(
            "qr_expired", _("This QR code has expired. Show a new one and scan it again."), 410
        )
    if token.status == Status.PENDING:
        return QrLoginFailed(
            "qr_not_approved", _("This sign-in has not been approved on the other device yet.")
        )
    return QrLoginFailed("qr_already_approved", _("This sign-in was already approved."))


def start(*, user_agent: str) -> NewQrToken:
    """A new single-use token for the browser that wants to be signed in."""
    secret = ids.random_token(32)
    now = clock.now()
    # Abandoned codes are worthless once expired; drop old ones so the table stays small.
    QrLoginToken.objects.filter(expires_at__lt=now - dt.timedelta(days=1)).delete()
    token = QrLoginToken.objects.create(
        digest=token_digest(secret),
        requester_agent=device_summary(user_agent)[:200],
        created_at=now,
        expires_at=now + _ttl(),
    )
    return NewQrToken(token=token, secret=secret)


def find(secret: str) -> QrLoginToken:
    """The token a QR code's secret names (for the approval page), or 404."""
    token = QrLoginToken.objects.filter(digest=token_digest(secret or "")).first()
    if token is None:
        raise NotFound(_("This QR code is not valid."), code="qr_unknown")
    return token


def status(token_id: int) -> str:
    """pending | approved | denied | consumed | expired, for the waiting page's polling."""
    token = QrLoginToken.objects.filter(pk=token_id).first()
    if token is None:
        return "unknown"
    if token.status in (Status.PENDING, Status.APPROVED) and token.expires_at <= clock.now():
        return "expired"
    return token.status


def _approver(user: User) -> Member:
    member = Member.objects.filter(user=user).first() if user.is_authenticated else None
    if member is None:
        raise QrLoginFailed(
            "qr_member_required", _("Only a signed-in member can approve a QR sign-in."), 403
        )
    refusal = account_refusal(user)
    if refusal is not None:
        raise refusal
    return member


def _decide(secret: str, user: User, to: str) -> QrLoginToken:
    member = _approver(user)
    now = clock.now()
    digest = token_digest(secret or "")
    with transaction.atomic():
        changes = {"status": to, "approved_by": user}
        if to == Status.APPROVED:
            changes["approved_at"] = now
        updated = QrLoginToken.objects.filter(
            digest=digest, status=Status.PENDING, expires_at__gt=now
        ).update(**changes)
        token = QrLoginToken.objects.filter(digest=digest).first()
        if updated != 1 or token is None:
            failure = explain(token)
        else:
            failure = None
            audit.record(
                "qr_login.approved" if to == Status.APPROVED else "qr_login.denied",
                actor=Actor.user(user),
                subject=token,
                details={"member": member.pk},
            )
    if failure is not None:
        raise failure
    return token  # type: ignore[return-value]


def approve(*, secret: str, user: User) -> QrLoginToken:
    """The signed-in member on the other device says yes: that browser may sign in as them."""
    return _decide(secret, user, Status.APPROVED)


def deny(*, secret: str, user: User) -> QrLoginToken:
    return _decide(secret, user, Status.DENIED)


def consume(*, token_id: int, user_agent: str) -> User:
    """Use the approved token once; returns the user the waiting browser signs in as.

    The state change is one conditional UPDATE, so it is atomic without row locks: of two
    parallel consumes exactly one changes a row, the other sees 0 and is refused.
    """
    now = clock.now()
    user: User | None = None
    failure: PatronError | None = None
    with transaction.atomic():
        updated = QrLoginToken.objects.filter(
            pk=token_id, status=Status.APPROVED, expires_at__gt=now
        ).update(status=Status.CONSUMED, consumed_at=now)
        token = QrLoginToken.objects.select_related("approved_by").filter(pk=token_id).first()
        if updated != 1 or token is None or token.approved_by is None:
            failure = explain(token)
        else:
            user = token.approved_by
            failure = account_refusal(user)
            if failure is None:
                audit.record(
                    "qr_login.consumed",
                    actor=Actor.user(user),
                    subject=token,
                    details={"user": user.pk},
                )
                member = Member.objects.filter(user=user).first()
                if member is not None:
                    queue_notice(
                        template="qr_login_approved",
                        member=member,
                        channels=("inapp",),
                        context={"device": token.requester_agent},
                        dedupe_key=f"qr_login_approved:{token.pk}",
                    )
            else:
                # The approver was frozen meanwhile: the token stays unused, nothing changes.
                transaction.set_rollback(True)
    if failure is not None or user is None:
        raise failure or explain(None)
    record_sign_in(user, user_agent=user_agent, method="qr")
    return user
