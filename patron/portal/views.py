"""Member self-service pages (REG-1..8, PRIV-1, PRIV-9).

Each view is thin: it parses a form, calls one member service and renders the outcome.
Refusals come back from the services as ``PatronError`` subclasses; the views place their
field errors next to the fields and never turn an expected refusal into a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from patron.core import masking
from patron.core.audit import Actor
from patron.core.exceptions import PatronError, RateLimited
from patron.members import selectors as member_selectors
from patron.members.models import ConsentDocument, Member
from patron.portal import selectors
from patron.portal.forms import (
    KIND_ENTERPRISE,
    KIND_INDIVIDUAL,
    CodeForm,
    ProfileForm,
    RegistrationForm,
    translate_error,
    wait_message,
)

SIGN_IN_BACKEND = "patron.members.auth_backend.IdentifierBackend"
CHANNELS = ("phone", "email")


# --- helpers -------------------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str | None:
    """The peer address; per-IP code caps key on it (REG-6). A TLS proxy in front is trusted
    only through Django's SECURE_PROXY_SSL_HEADER set-up, so we do not read X-Forwarded-For."""
    return request.META.get("REMOTE_ADDR") or None


def member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in, and as a member: staff accounts have no member centre (they use the
    console), so they are sent there instead of meeting a half-working page."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        member = selectors.member_of(request.user)
        if member is None:
            return redirect("console:home")
        request.member = member  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def optional_url(name: str, *args: Any) -> str | None:
    """A link to a page another module owns (security, KYC, sessions), or None while that
    module is not installed, so the member centre never breaks on a missing route."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def document_title(doc: ConsentDocument) -> str:
    if get_language() == "en" and doc.title_en:
        return doc.title_en
    return doc.title


def document_body(doc: ConsentDocument) -> str:
    if get_language() == "en" and doc.body_en:
        return doc.body_en
    return doc.body


def channel_label(channel: str) -> str:
    """Where a consent was given, in words (the code stays in the record)."""
    labels = {
        "portal": _("Member portal"),
        "api": _("Platform"),
        "headless": _("App"),
        "console": _("Staff console"),
    }
    return labels.get(channel, channel)


def list_separator() -> str:
    # Chinese lists items with the enumeration comma; English with a comma and a space.
    return ", " if get_language() == "en" else "、"


def missing_profile_fields(member: Member) -> list[str]:
    """What REG-7's "complete your profile" prompt lists."""
    missing = []
    if member.kind == KIND_INDIVIDUAL and not member.name:
        missing.append(_("Full name"))
    if member.kind == KIND_ENTERPRISE and not member.contact_name:
        missing.append(_("Contact person"))
    if not member.email:
        missing.append(_("Email"))
    if not member.address:
        missing.append(_("Address"))
    return missing


# --- public pages --------------------------------------------------------------------------


def home(request: HttpRequest) -> HttpResponse:
    """The member centre (REG-7); a short welcome for visitors who are not signed in."""
    if not request.user.is_authenticated:
        return render(request, "portal/welcome.html")
    return member_centre(request)


@member_required
def member_centre(request: HttpRequest) -> HttpResponse:
    member: Member = request.member  # type: ignore[attr-defined]
    links = {
        "profile": reverse("portal:profile"),
        "consents": reverse("portal:consents"),
        "security": optional_url("portal:security") or optional_url("mfa_index"),
        "sessions": optional_url("portal:sessions") or optional_url("usersessions_list"),
        "kyc": optional_url("portal:kyc"),
        "verify_phone": reverse("portal:verify", args=["phone"]),
    }
    return render(
        request,
        "portal/home.html",
        {
            "member": member,
            "pending": member.status == Member.Status.PENDING,
            "missing": list_separator().join(missing_profile_fields(member)),
            "phone_masked": masking.mask_phone(member.phone),
            "email_masked": masking.mask_email(member.email),
            "links": links,
        },
    )


def _registration_input(form: RegistrationForm, kind: str) -> Any:
    """The service's input from what the form accepted (fields it refused stay empty)."""
    from patron.members.services.registration import RegistrationInput

    data = form.cleaned_data
    return RegistrationInput(
        kind=kind,
        username=data.get("username", ""),
        password=data.get("password", ""),
        phone=data.get("phone", ""),
        email=data.get("email") or None,
        name=data.get("name", ""),
        birth_date=data.get("birth_date"),
        id_number=data.get("id_number") or None,
        address=data.get("address", ""),
        company_name=data.get("company_name", ""),
        credit_code=data.get("credit_code") or None,
        contact_name=data.get("contact_name", ""),
        referrer=data.get("referrer") or None,
        accepted=form.accepted,
        marketing_opt_in=data.get("marketing_opt_in", False),
        language="en" if get_language() == "en" else "zh-hans",
    )


def _add_service_checks(form: RegistrationForm, kind: str) -> None:
    """When the form itself refused something, still run the service's checks (they write
    nothing) so the member sees every problem at once, not one round trip per field."""
    from patron.members.services.registration import validate

    try:
        validate(_registration_input(form, kind))
    except PatronError as exc:
        form.apply_service_errors(exc, only_new_fields=True)


@sensitive_post_parameters("password", "password_again", "id_number", "credit_code")
@require_http_methods(["GET", "POST"])
def register(request: HttpRequest, kind: str = KIND_INDIVIDUAL) -> HttpResponse:
    """REG-1, REG-2, REG-5: the same registration service the API uses, channel "portal"."""
    from patron.members.services.registration import register_member

    if kind not in (KIND_INDIVIDUAL, KIND_ENTERPRISE):
        raise Http404
    if request.user.is_authenticated:
        return redirect("portal:home")
    documents = member_selectors.current_documents()
    form = RegistrationForm(request.POST or None, kind=kind, documents=documents)
    if request.method == "POST":
        if not form.is_valid():
            _add_service_checks(form, kind)
        else:
            try:
                member = register_member(
                    data=_registration_input(form, kind),
                    channel="portal",
                    actor=Actor.user(request.user),
                    ip=client_ip(request),
                )
            except PatronError as exc:
                form.apply_service_errors(exc)
            else:
                login(request, member.user, backend=SIGN_IN_BACKEND)
                messages.success(
                    request,
                    _("Your account is created. Enter the code we sent to your phone."),
                )
                return redirect("portal:verify", channel="phone")
    return render(
        request,
        "portal/register.html",
        {
            "form": form,
            "kind": kind,
            "documents": {doc.kind: doc for doc in documents},
        },
    )


def document(request: HttpRequest, kind: str, version: str | None = None) -> HttpResponse:
    """A consent document's text: the current version, or any published one by version."""
    if version is None:
        doc = member_selectors.current_document(kind)
    else:
        doc = selectors.published_document(kind, version)
    if doc is None:
        raise Http404
    return render(
        request,
        "portal/document.html",
        {"doc": doc, "title": document_title(doc), "body": document_body(doc)},
    )


# --- verification --------------------------------------------------------------------------


def _verified(member: Member, channel: str) -> bool:
    return bool(member.phone_verified_at if channel == "phone" else member.email_verified_at)


@sensitive_post_parameters("code")
@member_required
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest, channel: str) -> HttpResponse:
    """REG-6 and REG-8: confirm a code sent to the phone or email (or to a new one)."""
    from patron.members.services.verification import confirm_code

    if channel not in CHANNELS:
        raise Http404
    member: Member = request.member  # type: ignore[attr-defined]
    new_target = selectors.pending_change_target(member, channel)
    if new_target is None and _verified(member, channel):
        messages.info(request, _("This address is already verified."))
        return redirect("portal:home")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            confirm_code(member=member, channel=channel, code=form.cleaned_data["code"])
        except PatronError as exc:
            form.apply_service_errors(_as_code_error(exc))
        else:
            if new_target is not None:
                messages.success(request, _("Your new contact details are confirmed."))
                return redirect("portal:profile")
            if channel == "phone":
                messages.success(request, _("Your phone number is verified. Welcome to Patron!"))
            else:
                messages.success(request, _("Your email address is verified."))
            return redirect("portal:home")
    target = new_target or (member.phone if channel == "phone" else member.email)
    masked = masking.mask_phone(target) if channel == "phone" else masking.mask_email(target)
    return render(
        request,
        "portal/verify.html",
        {
            "form": form,
            "channel": channel,
            "target": masked,
            "is_change": new_target is not None,
            "has_code": selectors.usable_code(member, channel) is not None,
            "wait": selectors.resend_wait_seconds(member, channel),
            "minutes": settings.PATRON_VERIFICATION["CODE_TTL_SECONDS"] // 60,
        },
    )


def _as_code_error(exc: PatronError) -> PatronError:
    """Errors about the code (wrong, expired, used up) belong next to the code field even
    when the service names no field."""
    if not exc.errors:
        from patron.core.exceptions import FieldError

        exc.errors = [FieldError("code", exc.code, exc.message)]
    else:
        from patron.core.exceptions import FieldError

        exc.errors = [FieldError("code", e.code, e.message) for e in exc.errors]
    return exc


@member_required
@require_POST
def resend(request: HttpRequest, channel: str) -> HttpResponse:
    """Send a fresh code; the cooldown and daily caps are the service's (REG-6)."""
    from patron.members.services.verification import send_code

    if channel not in CHANNELS:
        raise Http404
    member: Member = request.member  # type: ignore[attr-defined]
    try:
        send_code(
            member=member,
            channel=channel,
            ip=client_ip(request),
            target=selectors.pending_change_target(member, channel),
        )
    except RateLimited as exc:
        messages.error(request, wait_message(exc.retry_after))
    except PatronError as exc:
        messages.error(request, translate_error(exc.code, exc.message))
    else:
        messages.success(request, _("A new code is on its way."))
    return redirect("portal:verify", channel=channel)


# --- profile -------------------------------------------------------------------------------


@member_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """REG-8: edit the member's own details; a new phone or email is re-verified."""
    from patron.members.services.profile import update_profile

    member: Member = request.member  # type: ignore[attr-defined]
    initial = {
        "name": member.name,
        "contact_name": member.contact_name,
        "address": member.address,
        "phone": member.phone,
        "email": member.email,
    }
    form = ProfileForm(request.POST or None, initial=initial, kind=member.kind)
    if request.method == "POST" and form.is_valid():
        # Only what the member changed: an untouched phone must not start a verification.
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            result = update_profile(
                member=member,
                changes=changes,
                actor=Actor.user(request.user),
                ip=client_ip(request),
            )
        except PatronError as exc:
            form.apply_service_errors(exc)
        else:
            if result.pending_verifications:
                messages.info(
                    request, _("We sent a code to your new address. Enter it to confirm.")
                )
                return redirect("portal:verify", channel=result.pending_verifications[0])
            messages.success(request, _("Your profile is saved."))
            return redirect("portal:profile")
    return render(
        request,
        "portal/profile.html",
        {
            "form": form,
            "member": member,
            "pending_phone": selectors.pending_change_target(member, "phone") is not None,
            "pending_email": selectors.pending_change_target(member, "email") is not None,
        },
    )


# --- consents ------------------------------------------------------------------------------


@member_required
@require_http_methods(["GET", "POST"])
def consents(request: HttpRequest) -> HttpResponse:
    """PRIV-1, PRIV-9: the current documents, the marketing choice, and the full history."""
    member: Member = request.member  # type: ignore[attr-defined]
    if request.method == "POST":
        return _record_consent(request, member)
    history = member_selectors.consent_history(member)
    decided: dict[str, Any] = {}
    for entry in history:  # newest first: the first decision per kind is the current one
        decided.setdefault(entry.document.kind, entry)
    rows = []
    for doc in member_selectors.current_documents():
        last = decided.get(doc.kind)
        rows.append(
            {
                "doc": doc,
                "title": document_title(doc),
                "last": last,
                "accepted_version": last.document.version if last and last.granted else None,
                "current": bool(last and last.granted and last.document_id == doc.pk),
            }
        )
    return render(
        request,
        "portal/consents.html",
        {
            "rows": rows,
            "history": [
                {
                    "entry": entry,
                    "title": document_title(entry.document),
                    "channel": channel_label(entry.channel),
                }
                for entry in history
            ],
        },
    )


def _record_consent(request: HttpRequest, member: Member) -> HttpResponse:
    from patron.members.services.consents import record_consent

    kind = request.POST.get("kind", "")
    granted = request.POST.get("granted") == "1"
    doc = member_selectors.current_document(kind)
    # Withdrawing a required document is cancelling the account: that is its own flow.
    if doc is None or (doc.required and not granted):
        messages.error(request, _("That choice is not available here."))
        return redirect("portal:consents")
    try:
        record_consent(
            member=member,
            document=doc.kind,
            version=doc.version,
            granted=granted,
            channel="portal",
            actor=Actor.user(request.user),
        )
    except PatronError as exc:
        messages.error(request, translate_error(exc.code, exc.message))
    else:
        messages.success(
            request,
            _("Your consent is recorded.") if granted else _("Your consent is withdrawn."),
        )
    return redirect("portal:consents")
