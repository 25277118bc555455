"""Registration (REG-1..5, REG-7): one service for the platform API, the portal and apps.

Everything is checked before anything is written, and every field error is reported in one
refusal (422). Uniqueness (username, phone, email, credit code) is a 409 naming what is
taken; the database's unique indexes back the checks up, so two parallel registrations of
the same phone end with one member and one 409, never a half-written account.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock, ids
from patron.core.crypto import blind_index
from patron.core.exceptions import Conflict, FieldError, ValidationFailed
from patron.members import normalize, selectors, validators
from patron.members.models import Consent, ConsentDocument, Member, User
from patron.members.services._common import control_character_errors, failed
from patron.members.services.passwords import remember as remember_password
from patron.members.services.verification import send_code
from patron.notify import webhooks

USERNAME_RE = re.compile(r"^[A-Za-z0-9_-]{3,32}$")
MAX_LENGTHS = {"name": 100, "address": 300, "company_name": 200, "contact_name": 100}
_NUMBER_TRIES = 8


@dataclass
class RegistrationInput:
    """What a new member gives us. ``accepted`` lists ``"<kind>@<version>"`` strings."""

    kind: str
    username: str
    password: str
    phone: str
    email: str | None = None
    name: str = ""
    birth_date: dt.date | None = None
    id_number: str | None = None
    address: str = ""
    company_name: str = ""
    credit_code: str | None = None
    contact_name: str = ""
    referrer: str | None = None
    accepted: list[str] = field(default_factory=list)
    marketing_opt_in: bool = False
    language: str = "zh-hans"


@dataclass
class _Clean:
    """The validated, normalised registration, ready to write."""

    kind: str
    username: str
    password: str
    phone: str
    email: str
    name: str
    birth_date: dt.date | None
    id_number: str
    address: str
    company_name: str
    credit_code: str
    contact_name: str
    referrer: Member | None
    documents: list[ConsentDocument]
    marketing: ConsentDocument | None
    language: str


def _text(value: str | None) -> str:
    return (value or "").strip()


def _consent_errors(accepted: list[str]) -> tuple[list[FieldError], list[ConsentDocument]]:
    """Each current required document must be accepted in exactly its current version."""
    given: dict[str, set[str]] = {}
    for item in accepted or []:
        kind, _sep, version = str(item).strip().partition("@")
        given.setdefault(kind, set()).add(version)
    errors: list[FieldError] = []
    documents = selectors.required_documents()
    for doc in documents:
        versions = given.get(doc.kind)
        if not versions:
            errors.append(
                FieldError(
                    "accepted",
                    "consent_required",
                    _("The %(document)s document (version %(version)s) must be accepted.")
                    % {"document": doc.kind, "version": doc.version},
                )
            )
        elif doc.version not in versions:
            errors.append(
                FieldError(
                    "accepted",
                    "consent_version_mismatch",
                    _("The current %(document)s version is %(version)s; accept that version.")
                    % {"document": doc.kind, "version": doc.version},
                )
            )
    return errors, documents


def _password_errors(password: str, username: str, phone: str, email: str) -> list[FieldError]:
    if not password:
        return [FieldError("password", "required", _("A password is required."))]
    # A transient, unsaved user lets the similarity validator see the plain phone and email.
    probe = User(username=username)
    probe._patron_phone = phone  # type: ignore[attr-defined]
    probe._patron_email = email  # type: ignore[attr-defined]
    try:
        validate_password(password, user=probe)
    except DjangoValidationError as exc:
        return [
            FieldError("password", error.code or "password_invalid", " ".join(error.messages))
            for error in exc.error_list
        ]
    return []


def _individual(data: RegistrationInput, today: dt.date, errors: list[FieldError]) -> tuple:
    name = _text(data.name)
    if not name:
        errors.append(FieldError("name", "required", _("The name is required.")))
    for attr in ("company_name", "credit_code", "contact_name"):
        if _text(getattr(data, attr)):
            errors.append(
                FieldError(attr, "not_allowed", _("Only enterprise members give this field."))
            )
    birth = data.birth_date
    id_number = ""
    id_birth: dt.date | None = None
    if _text(data.id_number):
        try:
            id_number, id_birth = validators.check_id_number(_text(data.id_number))
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if birth is None and id_birth is None and not _text(data.id_number):
        errors.append(
            FieldError("birth_date", "required", _("The birth date (or ID number) is required."))
        )
    if birth is not None:
        try:
            validators.check_adult(birth, today, field="birth_date")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if id_birth is not None:
        if birth is not None and birth != id_birth:
            errors.append(
                FieldError(
                    "id_number",
                    "id_birth_date_mismatch",
                    _("The birth date in the ID number does not match the birth date given."),
                )
            )
        elif birth is None:
            try:
                validators.check_adult(id_birth, today, field="id_number")
            except ValidationFailed as exc:
                errors.extend(exc.errors)
    return name, birth or id_birth, id_number, "", "", ""


def _enterprise(data: RegistrationInput, errors: list[FieldError]) -> tuple:
    company = _text(data.company_name)
    contact = _text(data.contact_name)
    if not company:
        errors.append(FieldError("company_name", "required", _("The company name is required.")))
    if not contact:
        errors.append(FieldError("contact_name", "required", _("A contact person is required.")))
    code = ""
    if not _text(data.credit_code):
        errors.append(
            FieldError("credit_code", "required", _("The unified social credit code is required."))
        )
    else:
        try:
            code = validators.check_credit_code(selectors.credit_code_key(data.credit_code or ""))
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    for attr in ("birth_date", "id_number"):
        value = getattr(data, attr)
        if value is not None and str(value).strip():
            errors.append(
                FieldError(attr, "not_allowed", _("Only individual members give this field."))
            )
    # The enterprise's name is its company name; ``name`` may carry a display name.
    name = _text(data.name) or company
    return name, None, "", company, code, contact


def validate(data: RegistrationInput) -> _Clean:
    """Check and normalise everything; raise one ValidationFailed with every field error."""
    errors = control_character_errors(
        {**vars(data), "accepted": " ".join(str(item) for item in data.accepted or [])}
    )
    if errors:
        raise failed(errors)  # nothing below should even look at such values
    kind = _text(data.kind)
    if kind not in Member.Kind.values:
        errors.append(
            FieldError("kind", "invalid_kind", _("The kind must be individual or enterprise."))
        )
    username = _text(data.username)
    if not USERNAME_RE.match(username):
        errors.append(
            FieldError(
                "username",
                "invalid_username",
                _("3 to 32 characters: letters, digits, underscore or hyphen."),
            )
        )
    phone = ""
    if not _text(data.phone):
        errors.append(FieldError("phone", "required", _("The phone number is required.")))
    else:
        phone = normalize.phone_or_none(data.phone) or ""
        if not phone:
            errors.append(
                FieldError("phone", "invalid_phone", _("This is not a valid phone number."))
            )
    email = ""
    if _text(data.email):
        email = normalize.email_or_none(_text(data.email)) or ""
        if not email:
            errors.append(
                FieldError("email", "invalid_email", _("This is not a valid email address."))
            )
    errors.extend(_password_errors(data.password or "", username, phone, email))
    for attr, limit in MAX_LENGTHS.items():
        if len(_text(getattr(data, attr))) > limit:
            errors.append(
                FieldError(attr, "too_long", _("At most %(n)d characters.") % {"n": limit})
            )

    today = clock.today()
    name, birth, id_number, company, credit_code, contact = (
        _enterprise(data, errors)
        if kind == Member.Kind.ENTERPRISE
        else _individual(data, today, errors)
        if kind == Member.Kind.INDIVIDUAL
        else ("", None, "", "", "", "")
    )
    referrer = None
    if _text(data.referrer):
        referrer = selectors.member_by_number(_text(data.referrer))
        if referrer is None:
            errors.append(
                FieldError("referrer", "unknown_referrer", _("No member has this number."))
            )
    consent_errors, documents = _consent_errors(data.accepted)
    errors.extend(consent_errors)
    marketing = selectors.current_document(ConsentDocument.Kind.MARKETING)
    if data.marketing_opt_in and marketing is None:
        errors.append(
            FieldError(
                "marketing_opt_in", "no_marketing_document", _("No marketing terms are published.")
            )
        )
    language = data.language if data.language in dict(settings.LANGUAGES) else "zh-hans"
    if errors:
        raise failed(errors)
    return _Clean(
        kind=kind,
        username=username,
        password=data.password,
        phone=phone,
        email=email,
        name=name,
        birth_date=birth,
        id_number=id_number,
        address=_text(data.address),
        company_name=company,
        credit_code=credit_code,
        contact_name=contact,
        referrer=referrer,
        documents=documents,
        marketing=marketing if data.marketing_opt_in else None,
        language=language,
    )


def _conflicts(clean: _Clean) -> list[FieldError]:
    """What is already taken, in a fixed order (the first one names the 409's code)."""
    taken: list[FieldError] = []
    if User.objects.filter(username__iexact=clean.username).exists():
        taken.append(FieldError("username", "username_taken", _("This username is taken.")))
    if Member.objects.filter(phone_index=blind_index(clean.phone, "phone")).exists():
        taken.append(
            FieldError("phone", "phone_taken", _("This phone number is already registered."))
        )
    if (
        clean.email
        and Member.objects.filter(email_index=blind_index(clean.email, "email")).exists()
    ):
        taken.append(
            FieldError("email", "email_taken", _("This email address is already registered."))
        )
    if (
        clean.credit_code
        and Member.objects.filter(
            credit_code_index=blind_index(clean.credit_code, "credit_code")
        ).exists()
    ):
        taken.append(
            FieldError(
                "credit_code",
                "credit_code_taken",
                _("An enterprise with this credit code is already registered."),
            )
        )
    return taken


def _raise_conflicts(taken: list[FieldError]) -> None:
    if taken:
        raise Conflict(taken[0].message, code=taken[0].code, errors=taken)


def _create(clean: _Clean, user: User, channel: str, actor: audit.Actor) -> Member:
    user.save()
    remember_password(user)  # the first entry of the no-reuse history (AUTH-1)
    member = None
    for _attempt in range(_NUMBER_TRIES):
        number = ids.random_member_number()
        if Member.objects.filter(number=number).exists():
            continue
        member = Member(
            user=user,
            number=number,
            kind=clean.kind,
            status=Member.Status.PENDING,
            name=clean.name,
            phone=clean.phone,
            phone_index=blind_index(clean.phone, "phone"),
            email=clean.email,
            email_index=blind_index(clean.email, "email") if clean.email else None,
            birth_date=clean.birth_date.isoformat() if clean.birth_date else "",
            id_number=clean.id_number,
            id_number_index=blind_index(clean.id_number, "id_number") if clean.id_number else None,
            address=clean.address,
            company_name=clean.company_name,
            credit_code=clean.credit_code,
            credit_code_index=(
                blind_index(clean.credit_code, "credit_code") if clean.credit_code else None
            ),
            contact_name=clean.contact_name,
            referrer=clean.referrer,
            marketing_opt_in=clean.marketing is not None,
            language=clean.language,
            created_at=clock.now(),
        )
        member.save()
        break
    if member is None:  # eight collisions in a 10^11 space: something else is wrong
        raise RuntimeError("could not draw a free member number")
    now = clock.now()
    granted = [*clean.documents, *([clean.marketing] if clean.marketing else [])]
    Consent.objects.bulk_create(
        [
            Consent(member=member, document=doc, granted=True, channel=channel, recorded_at=now)
            for doc in granted
        ]
    )
    audit.record(
        "member.registered",
        actor=actor,
        subject=member,
        details={
            "kind": member.kind,
            "channel": channel,
            "user_id": user.pk,
            "consent_document_ids": [doc.pk for doc in granted],
            "referrer_id": clean.referrer.pk if clean.referrer else None,
        },
    )
    webhooks.queue_event(
        "member.registered",
        {"member": member.number, "kind": member.kind},
        key=f"member.registered:{member.pk}",
    )
    return member


def register_member(
    *,
    data: RegistrationInput,
    channel: str,
    actor: audit.Actor,
    ip: str | None = None,
) -> Member:
    """Validate, create the user and the pending member, record consents, send the phone code.

    ``channel`` says where the registration came from ("api", "portal", "app") and is kept
    with the consents. Raises ``ValidationFailed`` (422) or ``Conflict`` (409); on any
    refusal nothing is written.
    """
    clean = validate(data)
    _raise_conflicts(_conflicts(clean))
    # Hash the password before the transaction: argon2 is slow on purpose, and the write
    # lock should not wait for it.
    user = User(username=clean.username, date_joined=clock.now())
    user.set_password(clean.password)
    user.password_changed_at = clock.now()
    try:
        with transaction.atomic():
            member = _create(clean, user, channel, actor)
            send_code(member=member, channel="phone", ip=ip)
    except IntegrityError as exc:
        # A parallel registration took the username, phone, email or credit code between
        # our check and our write; the unique index refused ours and nothing was kept.
        user.pk = None
        taken = _conflicts(clean)
        if not taken:
            raise
        raise Conflict(taken[0].message, code=taken[0].code, errors=taken) from exc
    return member
