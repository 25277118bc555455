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

import contextlib
from typing import Any

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.signals import user_logged_in
from allauth.account.utils import user_display, user_username
from allauth.headless.adapter import DefaultHeadlessAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from allauth.usersessions import signals as usersessions_signals
from allauth.usersessions.adapter import DefaultUserSessionsAdapter
from allauth.usersessions.models import UserSession
from django import forms
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_lazy as _

from patron.core import audit, crypto
from patron.core.audit import Actor
from patron.members.services import passwords as password_service
from patron.members.services import signin


def _one_commit() -> Any:
    """One transaction around a sign-in's bookkeeping writes on PostgreSQL.

    Each commit there waits for the write-ahead log to reach the disk; a sign-in writes its
    session, last sign-in time, session record and device in a few statements that belong
    together anyway. SQLite (WAL, ``synchronous=NORMAL``) commits without waiting for the
    disk, and a longer write transaction would only hold its single write lock longer.
    """
    if connection.vendor == "postgresql":
        return transaction.atomic()
    return contextlib.nullcontext()


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

    def login(self, request: HttpRequest, user: AbstractBaseUser) -> None:
        # The new session and the last sign-in time: one commit (see _one_commit).
        with _one_commit():
            super().login(request, user)

    def post_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> Any:
        with _one_commit():
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


class HeadlessAdapter(DefaultHeadlessAdapter):
    """The user payload of allauth's headless answers, without per-answer overhead.

    allauth builds the payload's dataclass anew (``dataclasses.make_dataclass``) for every
    answer and looks up the primary address in its ``EmailAddress`` table. The dataclass
    depends on settings only, so it is built once per process; Patron keeps addresses
    encrypted on ``Member`` and never writes ``EmailAddress`` (registration is Patron's,
    allauth's signup and e-mail flows are closed), so the payload has no ``email``, as it
    had before, without the query.
    """

    _user_dataclass: Any = None

    def get_user_dataclass(self) -> Any:
        cls = type(self)
        if cls._user_dataclass is None:
            cls._user_dataclass = super().get_user_dataclass()
        return cls._user_dataclass

    def user_as_dataclass(self, user: AbstractBaseUser) -> Any:
        kwargs: dict[str, Any] = {
            "id": user.pk or None,
            "email": None,
            "display": user_display(user),
            "has_usable_password": user.has_usable_password(),
        }
        if account_settings.USER_MODEL_USERNAME_FIELD:
            kwargs["username"] = user_username(user)
        return self.get_user_dataclass()(**kwargs)


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


# --- Session records at sign-in (AUTH-5) -----------------------------------------------------
# At every sign-in allauth's usersessions drops the user's session records whose session has
# ended (UserSession.objects.purge_and_list): three queries for each session the user holds
# (does the session exist, load it, load its user), each answering "is it still signed in as
# this user". The replacement below answers that for every live session with one query, and
# leaves every other case (ended, expired, signed in as someone else, a password changed
# since, a key rotated) to allauth's own per-session check, so the outcome is the same.

_DB_SESSIONS = "django.contrib.sessions.backends.db"


def _live_session_data(keys: list[str]) -> dict[str, dict] | None:
    """Decoded data of the unexpired database sessions among ``keys`` (None: other engine)."""
    if settings.SESSION_ENGINE != _DB_SESSIONS:
        return None
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    rows = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()).values_list(
        "session_key", "session_data"
    )
    decoder = SessionStore()
    return {key: decoder.decode(data) for key, data in rows}


def _signed_in_as(data: dict, user: Any) -> bool:
    """What django.contrib.auth.get_user concludes for this session data: this user, for
    certain (same id, a configured backend, an active user, the current password's hash)."""
    session_hash = data.get(HASH_SESSION_KEY)
    return bool(
        data.get(SESSION_KEY) == str(user.pk)
        and data.get(BACKEND_SESSION_KEY) in settings.AUTHENTICATION_BACKENDS
        and getattr(user, "is_active", True)
        and session_hash
        and constant_time_compare(session_hash, user.get_session_auth_hash())
    )


def purge_ended_sessions(user: Any) -> None:
    """Drop the user's session records whose session has ended (allauth's purge)."""
    records = list(UserSession.objects.filter(user_id=user.pk))
    if not records:
        return
    live = _live_session_data([record.session_key for record in records])
    for record in records:
        data = live.get(record.session_key) if live is not None else None
        if data is not None and _signed_in_as(data, user):
            continue  # still signed in as this user: allauth's check would keep it too
        record.purge()  # allauth's own check; it deletes the record when the session ended


def _on_user_logged_in(sender: Any, request: HttpRequest, **kwargs: Any) -> None:
    purge_ended_sessions(request.user)
    UserSession.objects.create_from_request(request)


# allauth.usersessions connects its receiver in its AppConfig.ready(), which runs before
# this module is imported (patron.members.apps); this one does the same work.
user_logged_in.disconnect(receiver=usersessions_signals.on_user_logged_in)
user_logged_in.connect(_on_user_logged_in, dispatch_uid="patron.usersessions_on_login")
