"""Reads the portal pages need about a member's verification state (REG-6, REG-8).

The verification service treats only the latest code of a member and channel as live (a
new code supersedes the old), so every question here is answered from that one row.
"""

from __future__ import annotations

from django.conf import settings

from patron.core import clock
from patron.members.models import ConsentDocument, Member, User, VerificationCode


def member_of(user: User) -> Member | None:
    """The member behind a signed-in user; staff users have none."""
    return Member.objects.filter(user=user).first()


def latest_code(
    member: Member, channel: str, purpose: str | None = VerificationCode.Purpose.VERIFY
) -> VerificationCode | None:
    """The latest code for ``purpose`` (``None``: of any purpose, as the cooldown counts)."""
    codes = VerificationCode.objects.filter(member=member, channel=channel)
    if purpose is not None:
        codes = codes.filter(purpose=purpose)
    return codes.order_by("-created_at", "-id").first()


def usable_code(member: Member, channel: str) -> VerificationCode | None:
    """The latest code if it can still be confirmed: not used, not expired, tries left."""
    code = latest_code(member, channel)
    if code is None or code.consumed_at is not None or code.expires_at <= clock.now():
        return None
    if code.attempts >= settings.PATRON_VERIFICATION["MAX_ATTEMPTS"]:
        return None
    return code


def pending_change_target(member: Member, channel: str) -> str | None:
    """The new phone or email a profile change waits to confirm, if any (REG-8).

    A code whose tries are used up still names the change: the member asks for a new code
    to the same new address rather than starting over.
    """
    code = latest_code(member, channel)
    if code is None or code.consumed_at is not None or code.expires_at <= clock.now():
        return None
    current = member.phone if channel == VerificationCode.Channel.PHONE else member.email
    return code.target if code.target != current else None


def resend_wait_seconds(member: Member, channel: str) -> int:
    """Seconds until another code may be sent (the resend cooldown), so the page can show
    the wait before the member presses the button; the service enforces it regardless."""
    code = latest_code(member, channel, purpose=None)
    if code is None:
        return 0
    cooldown = settings.PATRON_VERIFICATION["RESEND_COOLDOWN_SECONDS"]
    elapsed = (clock.now() - code.created_at).total_seconds()
    return max(0, int(cooldown - elapsed + 0.999))


def published_document(kind: str, version: str) -> ConsentDocument | None:
    """One version of a document, once published (a staged version stays private)."""
    return ConsentDocument.objects.filter(
        kind=kind, version=version, published_at__lte=clock.now()
    ).first()
