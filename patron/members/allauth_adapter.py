"""django-allauth adapters: how allauth's flows meet Patron's members.

allauth runs sign-in (pages and the headless API for apps), its rate limits, the MFA stage,
TOTP and recovery codes and the session list. Patron's own rules plug in here:

- sign-in goes through ``services.signin`` (identifier lookup by blind index, lockout,
  frozen/cancelled refusal) and shows its clear reasons;
- passwords go through ``services.passwords`` (policy, history, audit, notice);
- registration is Patron's ``register_member`` (portal or platform API), never allauth's
  signup: allauth keeps addresses in plain text in ``EmailAddress``, which we do not use;
- MFA secrets are encrypted with the field key ring before allauth stores them.
See docs/adr/0001-allauth-and-own-verification.md.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from allauth.usersessions.adapter import DefaultUserSessionsAdapter
from django import forms
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from patron.core import audit, crypto
from patron.core.audit import Actor
from patron.members.services import passwords as password_service
from patron.members.services import signin


def _identifier(credentials: dict[str, Any]) -> str:
    return str(
        credentials.get("username") or credentials.get("email") or credentials.get("phone") or ""
    )


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Members register through register_member (portal, platform API): one set of
        # rules, encrypted personal data, consents recorded. allauth's signup (page and
        # headless endpoint) is closed; the middleware sends its page to the portal's.
        return False

    def authenticate(self, request: HttpRequest, **credentials: Any) -> AbstractBaseUser | None:
        identifier = _identifier(credentials)
        try:
            # Before allauth's rate limit: a locked account hears that it is locked.
            signin.check_not_locked(identifier)
        except signin.SignInRefused as lock:
            raise ValidationError(lock.message, code=lock.code) from None
        request._patron_signin_refusal = None  # type: ignore[attr-defined]
        user = super().authenticate(request, **credentials)  # rate limits, then the backend
        refusal = getattr(request, "_patron_signin_refusal", None)
        if user is None and refusal is not None and refusal.code != "invalid_credentials":
            raise ValidationError(refusal.message, code=refusal.code)
        return user

    def post_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> Any:
        # Before allauth records this session: it checks every live one of the user.
        signin.trim_sessions(user, keep=settings.PATRON_MAX_SESSIONS - 1)  # type: ignore[arg-type]
        response = super().post_login(request, user, **kwargs)
        signin.record_sign_in(
            user,  # type: ignore[arg-type]
            user_agent=self.get_http_user_agent(request),
            method="password",
        )
        return response

    def clean_password(self, password: str, user: AbstractBaseUser | None = None) -> str:
        errors = password_service.policy_errors(password, user)  # type: ignore[arg-type]
        if errors:
            raise ValidationError([ValidationError(message, code=code) for code, message in errors])
        return password

    def set_password(self, user: AbstractBaseUser, password: str) -> None:
        # allauth's change/reset forms validated already through clean_password.
        password_service.set_password(
            user,  # type: ignore[arg-type]
            password,
            actor=Actor.user(user) if user.is_authenticated else Actor.system(),
            check=False,
        )

    def send_notification_mail(self, template_prefix: str, user: Any, context=None, email=None):
        # Patron notifies through its own outbox (encrypted, in the member's language).
        return None

    def respond_user_inactive(self, request: HttpRequest, user: AbstractBaseUser) -> HttpResponse:
        return super().respond_user_inactive(request, user)


class LoginForm(AllauthLoginForm):
    """allauth's sign-in form, with one field that takes a username, phone or email."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"] = forms.CharField(
            label=_("Username, phone or email"),
            max_length=254,
            widget=forms.TextInput(
                attrs={"autocomplete": "username", "autocapitalize": "none", "autofocus": True}
            ),
        )
        self.fields["password"].help_text = ""
        self.order_fields(["login", "password"])


class MFAAdapter(DefaultMFAAdapter):
    def get_totp_label(self, user: AbstractBaseUser) -> str:
        # The label shows in the authenticator app: the username, never a phone or email.
        return str(getattr(user, "username", "") or user.pk)

    def encrypt(self, text: str) -> str:
        # TOTP secrets and the recovery-code seed are as sensitive as a password hash.
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)

    def send_notification_mail(self, *args: Any, **kwargs: Any) -> None:
        return None


class UserSessionsAdapter(DefaultUserSessionsAdapter):
    """Ending sessions through allauth (its page, the headless DELETE) is audited too."""

    def end_sessions(self, sessions: Any) -> None:
        from allauth.core import context

        request = getattr(context, "request", None)
        by_user: dict[Any, list[int]] = {}
        users: dict[Any, Any] = {}
        for session in sessions:
            by_user.setdefault(session.user_id, []).append(session.pk)
            users[session.user_id] = session.user
        for user_id, ids in by_user.items():
            actor = Actor.user(getattr(request, "user", None)) if request else Actor.system()
            signin.revoke_sessions(users[user_id], ids, actor=actor)


# --- Audit of MFA changes ----------------------------------------------------------------------
# allauth signals these after the change is saved; the event is written in a transaction of
# its own right after (allauth does not wrap its flows in one we could join).


def _audit_authenticator(action: str, user: Any, authenticator: Authenticator | None) -> None:
    with transaction.atomic():
        audit.record(
            action,
            actor=Actor.user(user),
            subject=user,
            details={
                "type": getattr(authenticator, "type", ""),
                "id": getattr(authenticator, "pk", ""),
            },
        )


def _on_added(sender: Any, request: HttpRequest, user: Any, authenticator=None, **kw: Any) -> None:
    _audit_authenticator("user.mfa_added", user, authenticator)


def _on_removed(
    sender: Any, request: HttpRequest, user: Any, authenticator=None, **kw: Any
) -> None:
    _audit_authenticator("user.mfa_removed", user, authenticator)


def _on_reset(sender: Any, request: HttpRequest, user: Any, authenticator=None, **kw: Any) -> None:
    _audit_authenticator("user.mfa_recovery_codes_reset", user, authenticator)


authenticator_added.connect(_on_added, dispatch_uid="patron.mfa_added")
authenticator_removed.connect(_on_removed, dispatch_uid="patron.mfa_removed")
authenticator_reset.connect(_on_reset, dispatch_uid="patron.mfa_reset")
