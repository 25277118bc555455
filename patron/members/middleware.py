"""Gates a signed-in user passes before reaching pages (AUTH-3, AUTH-1, PRIV-9).

- Staff must have TOTP (AUTH-3): a staff user without it is sent to the activation page
  from every page except that flow and sign-out; the Django admin's own login form (which
  has no MFA stage) is replaced by allauth's sign-in.
- A forced password change, when rotation is configured (AUTH-1).
- A member who has not accepted the current version of a required document is sent to
  the accept page (PRIV-9). The member API answers 403 ``consent_required`` instead
  (``patron.api.member_auth``).
- allauth's signup page sends people to the portal registration.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from allauth.mfa.models import Authenticator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse

from patron.members.models import Member
from patron.members.services import passwords as password_service
from patron.members.services import signin

# Paths that never need the gates: machine endpoints, static files, the language switch
# and the API (the member API has its own 403s, platform keys have no user).
_ALWAYS_OPEN = ("/static/", "/i18n/", "/api/", "/healthz", "/readyz", "/metrics", "/favicon")
# What a staff user without TOTP may still use: the TOTP set-up flow (allauth asks to
# re-enter the password first when the sign-in is old) and signing out.
_STAFF_SETUP_OPEN = (
    "/accounts/2fa/",
    "/accounts/logout/",
    "/accounts/reauthenticate/",
    "/accounts/login/",
)


def _url(name: str, fallback: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return fallback


def _redirect(name: str, fallback: str, request: HttpRequest) -> HttpResponse:
    target = _url(name, fallback)
    return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")


class SignInGatesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self._gate(request)
        return response if response is not None else self.get_response(request)

    def _gate(self, request: HttpRequest) -> HttpResponse | None:
        path = request.path
        if path.startswith(_ALWAYS_OPEN):
            return None
        if path == _url("account_signup", "/accounts/signup/"):
            return HttpResponseRedirect(_url("portal:register", "/register/"))
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            if path.startswith("/console/admin/login"):
                # The admin's login form has no MFA stage: staff sign in through allauth.
                return _redirect("account_login", "/accounts/login/", request)
            return None
        if (
            user.is_staff
            and not path.startswith(_STAFF_SETUP_OPEN)
            and not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
        ):
            return HttpResponseRedirect(_url("mfa_activate_totp", "/accounts/2fa/totp/activate/"))
        if path.startswith("/accounts/"):
            return None  # sign-out, MFA, sessions, password change: never gated below
        if password_service.is_expired(user):
            return _redirect("account_change_password", "/accounts/password/change/", request)
        if path.startswith("/console/"):
            return None
        return self._consent_gate(request, user)

    def _consent_gate(self, request: HttpRequest, user) -> HttpResponse | None:  # type: ignore[no-untyped-def]
        open_paths = (
            _url("portal:consent_required", "/consents/accept/"),
            "/documents/",  # the documents themselves must stay readable
        )
        if request.path.startswith(open_paths):
            return None
        member = Member.objects.filter(user=user).first()
        if member is None or not signin.consent_gap(member):
            return None
        return _redirect("portal:consent_required", "/consents/accept/", request)
