"""One-time codes that prove a phone or an email (REG-6, REG-7, REG-8).

A code is 6 digits from ``secrets``, valid 10 minutes, for 5 tries; only a keyed hash is
stored (HMAC-SHA256 under the blind-index key with a per-code salt: a database dump alone
does not let anyone test the million possible codes, and checking costs microseconds).
Only the latest code of a member and channel counts: sending a new one supersedes the old.

Sending is throttled three ways (``settings.PATRON_VERIFICATION``): a resend cooldown per
member and channel, a daily cap per target address and a daily cap per client IP; "daily"
is a rolling 24 hours. Refusals are ``RateLimited`` (429 with Retry-After).

A code may prove a *new* address (``target``): a changed phone or email is applied only
when its code is confirmed, and its uniqueness is checked again at that moment.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.crypto import blind_index
from patron.core.exceptions import Conflict, RateLimited, ValidationFailed
from patron.members import normalize
from patron.members.models import Member, VerificationCode
from patron.members.services._common import member_channels, queue_notice, refuse

Channel = VerificationCode.Channel
Purpose = VerificationCode.Purpose
CHANNELS = {Channel.PHONE, Channel.EMAIL}
_TEMPLATES = {Purpose.VERIFY: "verification_code", Purpose.PASSWORD_RESET: "password_reset_code"}
_DAY = dt.timedelta(hours=24)


def _policy() -> dict:
    return settings.PATRON_VERIFICATION


def _hash(code: str, salt: str) -> str:
    return blind_index(f"{salt}:{code}", "verification_code")


def hash_code(code: str) -> str:
    salt = secrets.token_hex(8)
    return f"{salt}${_hash(code, salt)}"


def code_matches(code: str, stored: str) -> bool:
    salt, _sep, digest = stored.partition("$")
    return hmac.compare_digest(_hash(code.strip(), salt), digest)


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def target_key(channel: str, normalized: str) -> str:
    return blind_index(normalized, "phone" if channel == Channel.PHONE else "email")


def ip_key(ip: str | None) -> str:
    """The blind index the throttles count a client address under ("" for none)."""
    return blind_index(ip, "ip") if ip else ""


def _normalize_target(channel: str, raw: str) -> str:
    if channel == Channel.PHONE:
        value = normalize.phone_or_none(raw)
        if value is None:
            raise refuse("phone", "invalid_phone", _("This is not a valid phone number."))
    else:
        value = normalize.email_or_none(raw)
        if value is None:
            raise refuse("email", "invalid_email", _("This is not a valid email address."))
    return value


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise refuse("channel", "invalid_channel", _("The channel must be phone or email."))


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))


def _check_throttles(member: Member, channel: str, index: str, ip_index: str) -> None:
    policy = _policy()
    now = clock.now()
    last = (
        VerificationCode.objects.filter(member=member, channel=channel)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )
    cooldown = dt.timedelta(seconds=policy["RESEND_COOLDOWN_SECONDS"])
    if last is not None and now - last < cooldown:
        raise RateLimited(
            _seconds_until(last + cooldown, now),
            message=_("A code was sent a moment ago; wait before asking for another."),
        )
    caps = [(VerificationCode.objects.filter(target_index=index), policy["DAILY_CAP_PER_TARGET"])]
    if ip_index:
        caps.append(
            (VerificationCode.objects.filter(ip_index=ip_index), policy["DAILY_CAP_PER_IP"])
        )
    for queryset, cap in caps:
        window = queryset.filter(created_at__gt=now - _DAY)
        if window.count() >= cap:
            oldest = window.aggregate(first=Min("created_at"))["first"]
            raise RateLimited(
                _seconds_until(oldest + _DAY, now),
                message=_("Too many codes today; try again later."),
            )


def _current_address(member: Member, channel: str) -> str:
    """The phone or email on file for ``channel``; refused when the member has none."""
    address = member.phone if channel == Channel.PHONE else member.email
    if not address:
        raise refuse(
            channel,
            "no_address",
            _("The member has no %(channel)s to verify.") % {"channel": channel},
        )
    return address


def send_code(
    *,
    member: Member,
    channel: str,
    ip: str | None = None,
    target: str | None = None,
    purpose: str = Purpose.VERIFY,
    ip_index: str | None = None,
) -> VerificationCode:
    """Create a code for the member's phone or email (or a new ``target``) and send it.

    Raises ``RateLimited`` when a throttle applies, ``ValidationFailed`` when there is no
    address to send to. Must run in (or opens) one transaction with the outbox row. The
    throttles count every code of the member and address, whatever its ``purpose``.
    ``ip_index`` is the blind index of ``ip``, for a caller that kept only that.
    """
    _check_channel(channel)
    if member.status == Member.Status.CANCELLED:
        raise _cancelled()
    if target is not None and target.strip():
        address = _normalize_target(channel, target)
    else:
        address = _current_address(member, channel)
    index = target_key(channel, address)
    if ip_index is None:
        ip_index = ip_key(ip)
    code = new_code()
    with transaction.atomic():
        # Serialise senders for one member so two parallel requests cannot both pass the
        # cooldown check.
        Member.objects.select_for_update().filter(pk=member.pk).first()
        _check_throttles(member, channel, index, ip_index)
        now = clock.now()
        row = VerificationCode.objects.create(
            member=member,
            channel=channel,
            purpose=purpose,
            target=address,
            target_index=index,
            ip_index=ip_index,
            code_hash=hash_code(code),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=_policy()["CODE_TTL_SECONDS"]),
        )
        queue_notice(
            template=_TEMPLATES[purpose],
            member=member,
            channels=("sms",) if channel == Channel.PHONE else ("email",),
            context={"code": code, "minutes": _policy()["CODE_TTL_SECONDS"] // 60},
            to=address,
        )
        audit.record(
            "member.verification_sent",
            actor=audit.Actor.system(),
            subject=member,
            details={"channel": channel, "code_id": row.pk, "purpose": purpose},
        )
    return row


def _latest(member: Member, channel: str, purpose: str) -> VerificationCode | None:
    return (
        VerificationCode.objects.select_for_update()
        .filter(member=member, channel=channel, purpose=purpose)
        .order_by("-created_at", "-id")
        .first()
    )


def check_code(*, member: Member | None, channel: str, purpose: str, code: str) -> VerificationCode:
    """The member's latest code for ``channel`` and ``purpose``, if ``code`` matches it and
    it is unused, unexpired and has tries left; refused otherwise. A wrong code costs a try
    even though the request fails: the count is committed in its own block before the
    refusal is raised (docs/development.md, idempotency). ``member=None`` (an unknown
    address) is refused exactly like a wrong code, so the answer does not tell whether the
    address is known.
    """
    code = (code or "").strip()
    refusal: ValidationFailed | None = None
    with transaction.atomic():
        row = _latest(member, channel, purpose) if member is not None else None
        if row is None:
            refusal = refuse("code", "code_invalid", _("The code is not correct."))
        elif row.consumed_at is not None:
            refusal = refuse("code", "code_used", _("This code was already used."))
        elif row.attempts >= _policy()["MAX_ATTEMPTS"]:
            refusal = refuse("code", "code_locked", _("Too many wrong tries; ask for a new code."))
        elif row.expires_at <= clock.now():
            refusal = refuse("code", "code_expired", _("The code has expired; ask for a new one."))
        elif not (code.isdigit() and len(code) == 6 and code_matches(code, row.code_hash)):
            row.attempts += 1
            row.save(update_fields=["attempts"])
            refusal = refuse("code", "code_invalid", _("The code is not correct."))
    if refusal is not None:
        raise refusal
    assert row is not None
    return row


def consume(member: Member, checked: VerificationCode) -> VerificationCode:
    """Mark a code that ``check_code`` passed used, inside the caller's transaction (which
    holds the member's row lock). Refused when a parallel request used it first, or when a
    newer code superseded it meanwhile: a code works once, and only while it is the latest."""
    row = _latest(member, checked.channel, checked.purpose)
    if row is None or row.pk != checked.pk or row.consumed_at is not None:
        raise refuse("code", "code_used", _("This code was already used."))
    row.consumed_at = clock.now()
    row.save(update_fields=["consumed_at"])
    return row


def confirm_code(
    *, member: Member, channel: str, code: str, actor: audit.Actor | None = None
) -> Member:
    """Check a code; on success apply what it proves and return the fresh member.

    Phone: the (new) phone becomes the member's verified phone, and a pending member becomes
    active with a welcome notice (REG-7). Email: the (new) email becomes the verified email.
    A wrong code costs a try even though the request fails: the count is committed in its
    own block before the refusal is raised (docs/development.md, idempotency).
    """
    _check_channel(channel)
    actor = actor or audit.Actor("member", str(member.user_id))
    checked = check_code(member=member, channel=channel, purpose=Purpose.VERIFY, code=code)
    try:
        with transaction.atomic():
            member = Member.objects.select_for_update().select_related("user").get(pk=member.pk)
            # A parallel confirm may have used the code meanwhile; a refusal below rolls
            # the use back with everything else.
            row = consume(member, checked)
            _apply(member, row, actor, now=row.consumed_at)
    except IntegrityError as exc:
        # The address was taken between our check and the write (a parallel registration).
        raise _taken(channel) from exc
    return member


def _cancelled() -> Conflict:
    # A cancelled member's identifiers stay released; nothing about it changes any more.
    return Conflict(_("The member is cancelled; cancellation is final."), code="member_cancelled")


def _taken(channel: str) -> Conflict:
    if channel == Channel.PHONE:
        return Conflict(_("This phone number is already registered."), code="phone_taken")
    return Conflict(_("This email address is already registered."), code="email_taken")


def _apply(member: Member, row: VerificationCode, actor: audit.Actor, *, now: dt.datetime) -> None:
    """Apply what a used code proves (``row`` is already marked used)."""
    from patron.members.services.status import transition

    if member.status == Member.Status.CANCELLED:
        raise _cancelled()
    index_field = "phone_index" if row.channel == Channel.PHONE else "email_index"
    changed = getattr(member, index_field) != row.target_index
    if changed:
        # Re-check uniqueness now: the address may have been registered since the code was sent.
        clash = Member.objects.filter(**{index_field: row.target_index}).exclude(pk=member.pk)
        if clash.exists():
            raise _taken(row.channel)
    fields = ["updated_at"]
    if row.channel == Channel.PHONE:
        member.phone = row.target
        member.phone_index = row.target_index
        member.phone_verified_at = now
        fields += ["phone", "phone_index", "phone_verified_at"]
    else:
        member.email = row.target
        member.email_index = row.target_index
        member.email_verified_at = now
        fields += ["email", "email_index", "email_verified_at"]
    member.save(update_fields=fields)
    audit.record(
        f"member.{row.channel}_verified",
        actor=actor,
        subject=member,
        details={"code_id": row.pk, "changed": changed},
    )
    if row.channel == Channel.PHONE and member.status == Member.Status.PENDING:
        transition(member, Member.Status.ACTIVE, reason="Phone verified", actor=actor)
        queue_notice(
            template="welcome",
            member=member,
            channels=member_channels(member),
            context={"number": member.number},
        )


def mark_verified(*, member: Member, channel: str, actor: audit.Actor) -> Member:
    """Treat the member's current phone or email as verified without a code.

    Only for trusted callers that verified the address elsewhere: the demo data and members
    moved from another system (OPS-3). It activates a pending member like a code would, and
    the audit event says no code was used.
    """
    _check_channel(channel)
    with transaction.atomic():
        member = Member.objects.select_for_update().select_related("user").get(pk=member.pk)
        _current_address(member, channel)  # refuses when there is nothing to verify
        if member.status == Member.Status.CANCELLED:
            raise _cancelled()
        now = clock.now()
        field = "phone_verified_at" if channel == Channel.PHONE else "email_verified_at"
        setattr(member, field, now)
        member.save(update_fields=[field, "updated_at"])
        audit.record(
            f"member.{channel}_verified",
            actor=actor,
            subject=member,
            details={"code_id": None, "changed": False, "trusted": True},
        )
        if channel == Channel.PHONE and member.status == Member.Status.PENDING:
            from patron.members.services.status import transition

            transition(member, Member.Status.ACTIVE, reason="Phone verified", actor=actor)
    return member
