"""Moving members in from another system and out again (OPS-3): one CSV row, one member.

``MemberImporter.import_row`` takes one row of the import format (``COLUMNS``, documented in
docs/import.md) and either creates the member (user, member, loyalty account with its tier
and opening balance, audit event) in one transaction, or changes nothing and says why:

- every field is checked with the validators and normalisers registration uses (the same
  codes: ``invalid_phone``, ``invalid_id_number``, ``minor``, ``email_taken``, ...), all
  field errors of a row together;
- a row whose phone number is already registered, or whose member number belongs to a
  member an earlier import created, is ``exists``: running the same file twice is safe;
- a member number is kept when it is a valid Luhn number that no one has; otherwise a new
  one is drawn and the outcome carries a ``number_replaced`` note.

Imported members have no password (the user is made with an unusable one: there is no
password-reset flow yet, so until there is, staff or the member's app set one) and no
consents: the consent gate asks them to accept the current documents at their first
sign-in. Their status is ``active`` when the phone is marked verified, else ``pending``.

``export_members`` writes the same format back (personal data decrypted: the caller must
have a reason, and the export is an audit event with the count only).
"""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock, ids
from patron.core.crypto import blind_index
from patron.core.exceptions import FieldError, ValidationFailed
from patron.core.models import AuditEvent
from patron.loyalty import ledger
from patron.loyalty import rules as program
from patron.loyalty.models import Account, Lot, TierChange
from patron.members import normalize
from patron.members.models import Member, User
from patron.members.services._common import control_character_errors, failed
from patron.members.services.registration import (
    MAX_LENGTHS,
    USERNAME_RE,
    RegistrationInput,
    _enterprise,
    _individual,
)
from patron.members.services.reveal import REASON_MAX_LENGTH, REASON_MIN_LENGTH

# The import (and export) format, in the order ``export_members`` writes it.
COLUMNS = (
    "number",
    "kind",
    "username",
    "phone",
    "phone_verified",
    "email",
    "email_verified",
    "name",
    "birth_date",
    "id_number",
    "address",
    "company_name",
    "credit_code",
    "contact_name",
    "language",
    "status",
    "tier",
    "points",
    "created_at",
)
REQUIRED_COLUMNS = ("kind", "phone")
# Free-text columns: a leading = + - @ would make a spreadsheet run the cell as a formula,
# so the export writes such values with a leading apostrophe and the import removes it.
TEXT_COLUMNS = ("name", "address", "company_name", "contact_name")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
IMPORTABLE_STATUSES = (Member.Status.PENDING, Member.Status.ACTIVE, Member.Status.FROZEN)
MAX_POINTS = 10**9
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f"}
_NUMBER_TRIES = 8
IMPORTED = "member.imported"


class Outcome:
    IMPORTED = "imported"
    EXISTS = "exists"
    REFUSED = "refused"
    VALID = "valid"  # a dry run found nothing wrong


@dataclass
class RowOutcome:
    outcome: str
    member: str = ""  # the member number (imported or existing); an id, not personal data
    errors: list[FieldError] = field(default_factory=list)
    notes: list[FieldError] = field(default_factory=list)


@dataclass
class MemberRow:
    """One row, validated and normalised, ready to write."""

    number: str  # "" = draw one
    kind: str
    username: str  # "" = derive from the number
    phone: str
    phone_verified: bool
    email: str
    email_verified: bool
    name: str
    birth_date: dt.date | None
    id_number: str
    address: str
    company_name: str
    credit_code: str
    contact_name: str
    language: str
    status: str
    tier: str
    points: int
    created_at: dt.datetime | None
    notes: list[FieldError] = field(default_factory=list)


# --- reading a row ------------------------------------------------------------------------


def unescape_text(value: str) -> str:
    """Undo the export's formula guard (a leading apostrophe before = + - @)."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def escape_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _flag(raw: str, name: str, errors: list[FieldError]) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        errors.append(FieldError(name, "invalid_boolean", _("Use 1 or 0 (true or false).")))
    return False


def _date(raw: str, name: str, errors: list[FieldError]) -> dt.date | None:
    if not raw.strip():
        return None
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        errors.append(FieldError(name, "invalid_date", _("Use a date like 1990-01-31.")))
        return None


def _moment(raw: str, name: str, errors: list[FieldError]) -> dt.datetime | None:
    """ISO 8601 date or date-time; without an offset it is read in the site's time zone."""
    value = raw.strip()
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        errors.append(
            FieldError(name, "invalid_datetime", _("Use a time like 2024-05-01T09:30:00+08:00."))
        )
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))
    if moment > clock.now():
        errors.append(FieldError(name, "in_future", _("This time is in the future.")))
        return None
    return moment


def _member_number(raw: str, notes: list[FieldError]) -> str:
    value = raw.strip()
    if not value:
        return ""
    if len(value) == 12 and ids.luhn_valid(value) and value[0] != "0":
        return value
    notes.append(
        FieldError(
            "number",
            "number_replaced",
            _("The member number is not a valid 12-digit number; a new one was given."),
        )
    )
    return ""


def clean_row(raw: Mapping[str, Any], *, rules: program.Rules, today: dt.date) -> MemberRow:
    """Check and normalise one row; raise one ValidationFailed naming every bad field."""
    values = {name: str(raw.get(name) or "") for name in COLUMNS}
    errors = control_character_errors(values)
    if errors:
        raise failed(errors)
    for name in TEXT_COLUMNS:
        values[name] = unescape_text(values[name].strip())
    text = {name: value.strip() for name, value in values.items()}

    notes: list[FieldError] = []
    kind = text["kind"].lower()
    if kind not in Member.Kind.values:
        errors.append(
            FieldError("kind", "invalid_kind", _("The kind must be individual or enterprise."))
        )
    username = text["username"]
    if username and not USERNAME_RE.match(username):
        errors.append(
            FieldError(
                "username",
                "invalid_username",
                _("3 to 32 characters: letters, digits, underscore or hyphen."),
            )
        )
    phone = ""
    if not text["phone"]:
        errors.append(FieldError("phone", "required", _("The phone number is required.")))
    else:
        phone = normalize.phone_or_none(text["phone"]) or ""
        if not phone:
            errors.append(
                FieldError("phone", "invalid_phone", _("This is not a valid phone number."))
            )
    email = ""
    if text["email"]:
        email = normalize.email_or_none(text["email"]) or ""
        if not email:
            errors.append(
                FieldError("email", "invalid_email", _("This is not a valid email address."))
            )
    phone_verified = _flag(text["phone_verified"], "phone_verified", errors)
    email_verified = _flag(text["email_verified"], "email_verified", errors)
    if email_verified and not text["email"]:
        errors.append(
            FieldError("email_verified", "no_email", _("There is no email address to verify."))
        )
    for name, limit in MAX_LENGTHS.items():
        if len(text[name]) > limit:
            errors.append(
                FieldError(name, "too_long", _("At most %(n)d characters.") % {"n": limit})
            )
    birth = _date(text["birth_date"], "birth_date", errors)

    # The person or enterprise fields: exactly registration's rules.
    data = RegistrationInput(
        kind=kind,
        username=username,
        password="",
        phone=phone,
        email=email,
        name=text["name"],
        birth_date=birth,
        id_number=text["id_number"] or None,
        address=text["address"],
        company_name=text["company_name"],
        credit_code=text["credit_code"] or None,
        contact_name=text["contact_name"],
    )
    if kind == Member.Kind.ENTERPRISE:
        name, birth, id_number, company, credit_code, contact = _enterprise(data, errors)
    elif kind == Member.Kind.INDIVIDUAL:
        bad_date = any(e.field == "birth_date" for e in errors)
        name, birth, id_number, company, credit_code, contact = _individual(data, today, errors)
        if bad_date:  # an unreadable date is not also a missing one
            errors = [e for e in errors if (e.field, e.code) != ("birth_date", "required")]
    else:
        name, birth, id_number, company, credit_code, contact = ("", None, "", "", "", "")

    language = text["language"].lower() or "zh-hans"
    if language not in dict(settings.LANGUAGES):
        errors.append(
            FieldError("language", "invalid_language", _("The language must be zh-hans or en."))
        )
    status = text["status"].lower() or (
        Member.Status.ACTIVE if phone_verified else Member.Status.PENDING
    )
    if status not in IMPORTABLE_STATUSES:
        errors.append(
            FieldError(
                "status",
                "invalid_status",
                _("The status must be pending, active or frozen (or empty)."),
            )
        )
    elif status == Member.Status.ACTIVE and not phone_verified:
        errors.append(
            FieldError(
                "status",
                "phone_not_verified",
                _("An active member needs a verified phone number (phone_verified = 1)."),
            )
        )
    tier = text["tier"].lower() or rules.tiers[0].code
    if tier not in {t.code for t in rules.tiers}:
        errors.append(
            FieldError("tier", "unknown_tier", _("The program has no tier with this code."))
        )
    points = 0
    if text["points"]:
        try:
            points = int(text["points"])
        except ValueError:
            points = -1
        if not 0 <= points <= MAX_POINTS:
            errors.append(
                FieldError(
                    "points",
                    "invalid_points",
                    _("Points are a whole number from 0 to %(n)d.") % {"n": MAX_POINTS},
                )
            )
    created_at = _moment(text["created_at"], "created_at", errors)
    if errors:
        raise failed(errors)
    return MemberRow(
        number=_member_number(text["number"], notes),
        kind=kind,
        username=username,
        phone=phone,
        phone_verified=phone_verified,
        email=email,
        email_verified=email_verified,
        name=name,
        birth_date=birth,
        id_number=id_number,
        address=text["address"],
        company_name=company,
        credit_code=credit_code,
        contact_name=contact,
        language=language,
        status=status,
        tier=tier,
        points=points,
        created_at=created_at,
        notes=notes,
    )


# --- writing a member ---------------------------------------------------------------------


def _was_imported(member: Member) -> bool:
    return AuditEvent.objects.filter(
        action=IMPORTED, subject_type="member", subject_id=str(member.pk)
    ).exists()


class MemberImporter:
    """Imports rows one by one; keeps what a dry run has seen so duplicates inside one file
    get the outcome a real run would give them."""

    def __init__(self, *, actor: audit.Actor, dry_run: bool = False) -> None:
        self.actor = actor
        self.dry_run = dry_run
        self.rules = program.current()
        self.today = clock.today()
        self._seen: dict[tuple[str, str], str] = {}  # dry run: (what, index) -> number

    def import_row(self, raw: Mapping[str, Any]) -> RowOutcome:
        try:
            row = clean_row(raw, rules=self.rules, today=self.today)
        except ValidationFailed as exc:
            return RowOutcome(Outcome.REFUSED, errors=list(exc.errors))
        found = self._existing(row)
        if found:
            return RowOutcome(Outcome.EXISTS, member=found, notes=row.notes)
        taken = self._taken(row)
        if taken:
            return RowOutcome(Outcome.REFUSED, errors=taken, notes=row.notes)
        if self.dry_run:
            self._remember(row)
            return RowOutcome(Outcome.VALID, member=row.number, notes=row.notes)
        try:
            with transaction.atomic():
                member = self._create(row)
        except IntegrityError:
            # Someone registered the same phone, email or username between our checks and
            # our write: the unique index refused the row and nothing of it was kept.
            found = self._existing(row)
            if found:
                return RowOutcome(Outcome.EXISTS, member=found, notes=row.notes)
            taken = self._taken(row)
            if not taken:
                raise
            return RowOutcome(Outcome.REFUSED, errors=taken, notes=row.notes)
        return RowOutcome(Outcome.IMPORTED, member=member.number, notes=row.notes)

    # What is there already ------------------------------------------------------------

    def _existing(self, row: MemberRow) -> str:
        """The number of the member this row was already imported as, or ""."""
        phone_index = blind_index(row.phone, "phone")
        number = (
            Member.objects.filter(phone_index=phone_index).values_list("number", flat=True).first()
        ) or self._seen.get(("phone", phone_index))
        if number:
            return number
        if row.number:
            if ("number", row.number) in self._seen:
                return self._seen[("number", row.number)]
            holder = Member.objects.filter(number=row.number).first()
            if holder is not None:
                if _was_imported(holder):
                    return holder.number  # imported before; the phone changed since
                row.number = ""  # not free: draw a new one
                row.notes.append(
                    FieldError(
                        "number",
                        "number_replaced",
                        _("The member number belongs to another member; a new one was given."),
                    )
                )
        return ""

    def _taken(self, row: MemberRow) -> list[FieldError]:
        taken: list[FieldError] = []
        if row.username and (
            User.objects.filter(username__iexact=row.username).exists()
            or ("username", row.username.lower()) in self._seen
        ):
            taken.append(FieldError("username", "username_taken", _("This username is taken.")))
        if row.email:
            index = blind_index(row.email, "email")
            if Member.objects.filter(email_index=index).exists() or ("email", index) in self._seen:
                taken.append(
                    FieldError(
                        "email", "email_taken", _("This email address is already registered.")
                    )
                )
        if row.credit_code:
            index = blind_index(row.credit_code, "credit_code")
            if (
                Member.objects.filter(credit_code_index=index).exists()
                or ("credit_code", index) in self._seen
            ):
                taken.append(
                    FieldError(
                        "credit_code",
                        "credit_code_taken",
                        _("An enterprise with this credit code is already registered."),
                    )
                )
        return taken

    def _remember(self, row: MemberRow) -> None:
        label = row.number or "-"  # a number is drawn only when the row is written
        self._seen[("phone", blind_index(row.phone, "phone"))] = label
        if row.number:
            self._seen[("number", row.number)] = label
        if row.username:
            self._seen[("username", row.username.lower())] = label
        if row.email:
            self._seen[("email", blind_index(row.email, "email"))] = label
        if row.credit_code:
            self._seen[("credit_code", blind_index(row.credit_code, "credit_code"))] = label

    # Writing ---------------------------------------------------------------------------

    def _number(self, row: MemberRow) -> str:
        if row.number:
            return row.number
        for _attempt in range(_NUMBER_TRIES):
            number = ids.random_member_number()
            if not Member.objects.filter(number=number).exists():
                return number
        raise RuntimeError("could not draw a free member number")

    def _username(self, row: MemberRow, number: str) -> str:
        if row.username:
            return row.username
        username = f"m{number}"
        while User.objects.filter(username__iexact=username).exists():
            username = f"m{number}_{ids.random_token(3)}"
        return username

    def _create(self, row: MemberRow) -> Member:
        now = clock.now()
        created = row.created_at or now
        number = self._number(row)
        user = User(
            username=self._username(row, number),
            date_joined=created,
            is_active=row.status != Member.Status.FROZEN,
        )
        user.set_unusable_password()
        user.save()
        member = Member.objects.create(
            user=user,
            number=number,
            kind=row.kind,
            status=row.status,
            status_reason="imported" if row.status == Member.Status.FROZEN else "",
            name=row.name,
            phone=row.phone,
            phone_index=blind_index(row.phone, "phone"),
            phone_verified_at=created if row.phone_verified else None,
            email=row.email,
            email_index=blind_index(row.email, "email") if row.email else None,
            email_verified_at=created if row.email_verified else None,
            birth_date=row.birth_date.isoformat() if row.birth_date else "",
            id_number=row.id_number,
            id_number_index=blind_index(row.id_number, "id_number") if row.id_number else None,
            address=row.address,
            company_name=row.company_name,
            credit_code=row.credit_code,
            credit_code_index=(
                blind_index(row.credit_code, "credit_code") if row.credit_code else None
            ),
            contact_name=row.contact_name,
            language=row.language,
            created_at=created,
        )
        account = ledger.lock_account(member.pk)
        base = self.rules.tiers[0].code
        if row.tier != base:
            account.tier = row.tier
            account.tier_since = created
            account.save(update_fields=["tier", "tier_since"])
            # Recorded like every tier change, but already "notified": the member had this
            # tier in the old system, so nothing is sent.
            TierChange.objects.create(
                member=member,
                from_tier=base,
                to_tier=row.tier,
                kind=TierChange.Kind.MANUAL,
                reason="import",
                spend=0,
                orders=0,
                loyalty=0,
                program_version=self.rules.version,
                key=f"import:{number}",
                changed_at=now,
                notified_at=now,
            )
        if row.points:
            ledger.credit(
                account,
                ledger.Credit(
                    points=row.points,
                    source=Lot.Source.ADJUSTMENT,
                    key=f"import:{number}",
                    rule={"import": True},
                    reason="opening balance (import)",
                ),
                rules=self.rules,
                actor=self.actor,
            )
        audit.record(
            IMPORTED,
            actor=self.actor,
            subject=member,
            details={
                "kind": member.kind,
                "status": member.status,
                "tier": row.tier,
                "points": row.points,
                "number_kept": bool(row.number),
            },
        )
        return member


# --- export -------------------------------------------------------------------------------


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN_LENGTH:
        raise failed(
            [
                FieldError(
                    "reason",
                    "reason_required",
                    _("Say why you export personal data (at least %(n)s characters).")
                    % {"n": REASON_MIN_LENGTH},
                )
            ]
        )
    if len(reason) > REASON_MAX_LENGTH:
        raise failed(
            [
                FieldError(
                    "reason",
                    "reason_too_long",
                    _("Keep the reason under %(n)s characters.") % {"n": REASON_MAX_LENGTH},
                )
            ]
        )
    return reason


def _flag_text(value: Any) -> str:
    return "1" if value else "0"


def export_rows(*, chunk: int = 1000) -> Iterator[dict[str, str]]:
    """Every member not cancelled, in the import format, personal data decrypted.

    Cancelled members are left out: their phone, email and credit code are released for a
    new registration and their data waits for the retention job.
    """
    base = program.current().tiers[0].code
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    last = 0
    while True:
        batch = list(
            Member.objects.filter(pk__gt=last)
            .exclude(status=Member.Status.CANCELLED)
            .select_related("user")
            .order_by("pk")[:chunk]
        )
        if not batch:
            return
        accounts = {
            pk: (tier, available)
            for pk, tier, available in Account.objects.filter(
                pk__in=[m.pk for m in batch]
            ).values_list("pk", "tier", "available")
        }
        for member in batch:
            tier, points = accounts.get(member.pk, (base, 0))
            yield {
                "number": member.number,
                "kind": member.kind,
                "username": member.user.username,
                "phone": member.phone,
                "phone_verified": _flag_text(member.phone_verified_at),
                "email": member.email or "",
                "email_verified": _flag_text(member.email and member.email_verified_at),
                "name": escape_text(member.name or ""),
                "birth_date": member.birth_date or "",
                "id_number": member.id_number or "",
                "address": escape_text(member.address or ""),
                "company_name": escape_text(member.company_name or ""),
                "credit_code": member.credit_code or "",
                "contact_name": escape_text(member.contact_name or ""),
                "language": member.language,
                "status": member.status,
                "tier": tier,
                "points": str(points),
                "created_at": member.created_at.astimezone(zone).isoformat(),
            }
        last = batch[-1].pk


def export_members(out: TextIO, *, reason: str, actor: audit.Actor) -> int:
    """Write every member to ``out`` as CSV in the import format; record the export.

    The rows are read in chunks outside any write transaction (a long export must not hold
    the write lock); the audit event is written once all rows are out, with the count only
    (and the reason's length, never its text). The caller creates the file and removes it
    if this raises.
    """
    check_reason(reason)
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in export_rows():
        writer.writerow(row)
        count += 1
    out.flush()
    with transaction.atomic():
        audit.record(
            "members.exported",
            actor=actor,
            details={"count": count, "reason_length": len(reason.strip())},
        )
    return count
