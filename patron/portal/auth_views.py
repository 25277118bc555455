"""Portal pages for signing in and account security (AUTH-3, AUTH-4, AUTH-5, PRIV-9).

- QR sign-in: the waiting page (also embedded in the sign-in page), its status endpoint,
  the final sign-in, and the approval page a signed-in member opens by scanning the code;
- the security page: two-step verification (allauth's MFA pages), sessions and revoking;
- the consent interstitial the sign-in gate sends members to (PRIV-9);
- the forgotten password: a code to the verified phone, then a new password (AUTH-1).
Each view calls one service; the services hold the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import segno
from allauth.core.internal import ratelimit
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from patron.core.audit import Actor
from patron.core.exceptions import PatronError
from patron.members.auth_backend import BACKEND_PATH
from patron.members.models import KnownDevice, Member, QrLoginToken, User
from patron.members.services import consents, signin
from patron.members.services import password_reset as reset_service
from patron.members.services import qr_login as qr_service
from patron.portal.forms import PasswordResetForm, PasswordResetRequestForm
from patron.portal.views import client_ip

SESSION_QR_TOKEN = "patron_qr_login_token"  # noqa: S105  (a session key name)
# Each QR page makes a token row: cap how fast one address can ask for them.
QR_RATE_LIMIT = {"qr_login": "20/m/ip"}


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _user(request: HttpRequest) -> User:
    """The signed-in user (views behind login_required only)."""
    return cast(User, request.user)


def _user_agent(request: HttpRequest) -> str:
    return request.META.get("HTTP_USER_AGENT", "")


# --- QR sign-in: the browser that wants to sign in (AUTH-4) --------------------------------


@never_cache
@xframe_options_sameorigin  # the sign-in page shows this page in a frame
@require_GET
def qr_login(request: HttpRequest) -> HttpResponse:
    """Show a fresh QR code and wait for its approval on another device."""
    embed = request.GET.get("embed") == "1"
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    allowed = ratelimit.consume(
        request, app="patron", action="qr_login", config=QR_RATE_LIMIT, limit_get=True
    )
    if not allowed:
        return render(
            request,
            "portal/qr_login.html",
            {"embed": embed, "throttled": True},
            status=429,
        )
    new = qr_service.start(user_agent=_user_agent(request))
    request.session[SESSION_QR_TOKEN] = new.token.pk
    approve_url = request.build_absolute_uri(reverse("portal:qr_approve", args=[new.secret]))
    qr = segno.make(approve_url, error="m")
    context = {
        "embed": embed,
        "approve_url": approve_url,  # for tests and debugging; the page shows only the QR
        "qr_svg": qr.svg_inline(scale=5, border=2, title=_("QR code for signing in")),
        "ttl": settings.PATRON_QR_LOGIN_TTL_SECONDS,
        "expires_at": new.token.expires_at,
        "next": _safe_next(request, ""),
    }
    return render(request, "portal/qr_login.html", context)


@never_cache
@require_GET
def qr_login_status(request: HttpRequest) -> JsonResponse:
    """What the waiting page polls: pending, approved, denied, consumed, expired, unknown."""
    token_id = request.session.get(SESSION_QR_TOKEN)
    state = qr_service.status(token_id) if token_id else "unknown"
    return JsonResponse({"status": state})


@require_POST
def qr_login_complete(request: HttpRequest) -> HttpResponse:
    """Consume the approved token once and sign this browser in as the approving member."""
    token_id = request.session.get(SESSION_QR_TOKEN)
    if not token_id:
        return _qr_failed(request, _("Show a QR code first, then approve it."), 400)
    try:
        user = qr_service.consume(token_id=token_id, user_agent=_user_agent(request))
    except PatronError as exc:
        return _qr_failed(request, exc.message, exc.status)
    request.session.pop(SESSION_QR_TOKEN, None)
    login(request, user, backend=BACKEND_PATH)
    UserSession.objects.create_from_request(request)
    messages.success(request, _("You are signed in."))
    return redirect(_safe_next(request, reverse(settings.LOGIN_REDIRECT_URL)))


def _qr_failed(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "portal/qr_failed.html", {"message": message}, status=status)


# --- QR sign-in: the signed-in device that approves ----------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def qr_approve(request: HttpRequest, secret: str) -> HttpResponse:
    """Show which device asks to sign in, and let the member approve or deny it."""
    if request.method == "POST":
        decision = request.POST.get("decision")
        try:
            if decision == "approve":
                qr_service.approve(secret=secret, user=request.user)  # type: ignore[arg-type]
                outcome = "approved"
            elif decision == "deny":
                qr_service.deny(secret=secret, user=request.user)  # type: ignore[arg-type]
                outcome = "denied"
            else:
                return _qr_failed(request, _("Choose to approve or deny."), 400)
        except PatronError as exc:
            return _qr_failed(request, exc.message, exc.status)
        return render(request, "portal/qr_approve.html", {"outcome": outcome})
    try:
        token = qr_service.find(secret)
    except PatronError as exc:
        return _qr_failed(request, exc.message, exc.status)
    state = qr_service.status(token.pk)
    if state != QrLoginToken.Status.PENDING:
        failure = qr_service.explain(token)
        return _qr_failed(request, failure.message, failure.status)
    is_member = Member.objects.filter(user=_user(request)).exists()
    return render(
        request,
        "portal/qr_approve.html",
        {"token": token, "device": token.requester_agent, "is_member": is_member},
    )


# --- Security: two-step verification and sessions (AUTH-3, AUTH-5) -------------------------


@never_cache
@login_required
@require_GET
def security(request: HttpRequest) -> HttpResponse:
    user = request.user
    sessions = UserSession.objects.purge_and_list(user)  # type: ignore[arg-type]
    current_key = request.session.session_key
    totp = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    recovery = Authenticator.objects.filter(
        user=user, type=Authenticator.Type.RECOVERY_CODES
    ).first()
    return render(
        request,
        "portal/security.html",
        {
            "totp": totp,
            "recovery_left": len(recovery.wrap().get_unused_codes()) if recovery else 0,
            "sessions": [
                {
                    "id": s.pk,
                    "current": s.session_key == current_key,
                    "device": signin.device_summary(s.user_agent),
                    "ip": s.ip,
                    "created_at": s.created_at,
                    "last_seen_at": s.last_seen_at,
                }
                for s in sorted(sessions, key=lambda s: s.last_seen_at, reverse=True)
            ],
            "devices": KnownDevice.objects.filter(user=_user(request)).count(),
        },
    )


@login_required
@require_GET
def sessions(request: HttpRequest) -> HttpResponse:
    return redirect(reverse("portal:security") + "#sessions")


@login_required
@require_POST
def revoke_sessions(request: HttpRequest) -> HttpResponse:
    """Sign out the chosen sessions ("all others" or one); this browser too if chosen."""
    user = request.user
    if request.POST.get("scope") == "others":
        ids = list(
            UserSession.objects.filter(user=user)
            .exclude(session_key=request.session.session_key)
            .values_list("pk", flat=True)
        )
    else:
        ids = [int(v) for v in request.POST.getlist("session") if v.isdigit()]
    ended = signin.revoke_sessions(user, ids, actor=Actor.user(user))  # type: ignore[arg-type]
    if request.session.session_key in ended:
        logout(request)
        return redirect("account_login")
    if ended:
        messages.success(request, _("Signed out of %(n)d session(s).") % {"n": len(ended)})
    else:
        messages.error(request, _("No session was signed out."))
    return redirect(reverse("portal:security") + "#sessions")


# --- Consent interstitial (PRIV-9) ---------------------------------------------------------


def _title(doc) -> str:  # type: ignore[no-untyped-def]
    return doc.title_en if get_language() == "en" and doc.title_en else doc.title


def _body(doc) -> str:  # type: ignore[no-untyped-def]
    return doc.body_en if get_language() == "en" and doc.body_en else doc.body


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def consent_required(request: HttpRequest) -> HttpResponse:
    """The documents whose new versions the member must accept before going on."""
    member = Member.objects.filter(user=_user(request)).first()
    if member is None:
        return redirect(settings.LOGIN_REDIRECT_URL)
    missing = signin.consent_gap(member)
    next_url = _safe_next(request, reverse(settings.LOGIN_REDIRECT_URL))
    if not missing:
        return redirect(next_url)
    error = ""
    if request.method == "POST":
        accepted = set(request.POST.getlist("accept"))
        wanted = {f"{doc.kind}@{doc.version}" for doc in missing}
        if accepted >= wanted:
            try:
                consents.accept_current(
                    member=member,
                    documents=missing,
                    actor=Actor.user(request.user),
                    channel="portal",
                )
            except PatronError as exc:
                error = exc.message
            else:
                messages.success(request, _("Thank you. Your acceptance is recorded."))
                return redirect(next_url)
        else:
            error = _("Please tick each document to accept it.")
    documents = [
        {"doc": doc, "key": f"{doc.kind}@{doc.version}", "title": _title(doc), "body": _body(doc)}
        for doc in missing
    ]
    return render(
        request,
        "portal/consent_required.html",
        {"documents": documents, "error": error, "next": next_url},
        status=400 if error else 200,
    )


# --- Forgotten password: a code to the verified phone, then a new password (AUTH-1) ---------

SESSION_RESET_KEY = "patron_password_reset"  # the session key holding the phone's blind index
# Each request may send an SMS and each confirm tries a code: cap both per address, on top
# of the codes' own cooldown, daily caps and tries.
RESET_RATE_LIMIT = {"password_reset": "10/m/ip"}


def _reset_step(
    request: HttpRequest,
    form: PasswordResetRequestForm | PasswordResetForm,
    act: Callable[[], HttpResponse],
) -> HttpResponse | int:
    """A reset step's POST: ``act()``'s answer when the form is valid, the address has
    attempts left and the service accepts; otherwise the status to show the form with
    (429 when throttled; the form then says why)."""
    if request.method != "POST" or not form.is_valid():
        return 200
    if not ratelimit.consume(
        request, app="patron", action="password_reset", config=RESET_RATE_LIMIT
    ):
        form.add_error(None, _("Too many attempts from your network; wait a minute and try again."))
        return 429
    try:
        return act()
    except PatronError as exc:
        form.apply_service_errors(exc)
        return 200


@never_cache
@sensitive_post_parameters("phone")
@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Ask for a reset code. The answer is the same whether the phone is a member's or not."""
    if request.user.is_authenticated:
        return redirect("portal:security")
    form = PasswordResetRequestForm(request.POST or None)

    def send() -> HttpResponse:
        key = reset_service.phone_key(form.cleaned_data["phone"])
        reset_service.request_reset(key=key, ip=client_ip(request))
        # Only the phone's blind index is kept between the steps, never the number.
        request.session[SESSION_RESET_KEY] = key
        return redirect("portal:password_reset_confirm")

    outcome = _reset_step(request, form, send)
    if isinstance(outcome, HttpResponse):
        return outcome
    return render(request, "portal/password_reset.html", {"form": form}, status=outcome)


@never_cache
@sensitive_post_parameters("code", "password", "password_again")
@require_http_methods(["GET", "POST"])
def password_reset_confirm(request: HttpRequest) -> HttpResponse:
    """Type the code and a new password; on success every session ends and the member
    signs in again with the new password."""
    key = request.session.get(SESSION_RESET_KEY)
    if not key:
        return redirect("portal:password_reset")
    form = PasswordResetForm(request.POST or None)

    def reset() -> HttpResponse:
        reset_service.reset_password(
            key=key, code=form.cleaned_data["code"], password=form.cleaned_data["password"]
        )
        request.session.pop(SESSION_RESET_KEY, None)
        messages.success(request, _("Your password is changed. Sign in with the new password."))
        return redirect("account_login")

    outcome = _reset_step(request, form, reset)
    if isinstance(outcome, HttpResponse):
        return outcome
    context = {"form": form, "minutes": settings.PATRON_VERIFICATION["CODE_TTL_SECONDS"] // 60}
    return render(request, "portal/password_reset_confirm.html", context, status=outcome)
