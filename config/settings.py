"""Patron settings, read from PATRON_* environment variables (see .env.example)."""

from __future__ import annotations

import os
from pathlib import Path

from django.utils.translation import gettext_lazy as _

from config.env import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    load_secrets,
    sqlite_database,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("TESTING", False)
_secrets = load_secrets(VAR_DIR, debug=DEBUG or TESTING)
SECRET_KEY = _secrets["SECRET_KEY"]
PATRON_FIELD_KEYS = _secrets["FIELD_KEYS"]
PATRON_BLIND_INDEX_KEY = _secrets["BLIND_INDEX_KEY"]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "allauth.headless",
    "django_tasks",
    "django_tasks_db",
    "patron.core",
    "patron.members",
    "patron.notify",
    "patron.loyalty",
    "patron.api",
    "patron.portal",
    "patron.console",
]

MIDDLEWARE = [
    "patron.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "patron.members.middleware.SignInGatesMiddleware",
    "patron.api.idempotency.IdempotencyMiddleware",
    "patron.core.middleware.MetricsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "patron" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# PATRON_TEST_DATABASE_URL selects the database the test suite runs on (CI sets it to a
# fresh PostgreSQL database); PATRON_DATABASE_URL selects the one the app serves from.
_db_url = env_str("TEST_DATABASE_URL") if TESTING else None
_db_url = _db_url or env_str("DATABASE_URL")
DATABASES = {
    "default": database_from_url(_db_url, BASE_DIR)
    if _db_url
    else sqlite_database(VAR_DIR / "patron.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ----------------------------------------------------------------------------
AUTH_USER_MODEL = "members.User"
# One backend: it resolves username, phone or email and applies the lockout and account
# state rules. allauth's own backend is left out on purpose: it would check the password a
# second time by username and so bypass those rules (docs/adr/0001).
AUTHENTICATION_BACKENDS = [
    "patron.members.auth_backend.IdentifierBackend",
]
PASSWORD_HASHERS = [
    "patron.core.hashers.PatronArgon2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "patron.members.passwords.MinimumLengthValidator"},
    {"NAME": "patron.members.passwords.CommonPasswordValidator"},
    {"NAME": "patron.members.passwords.PersonalInfoSimilarityValidator"},
    {"NAME": "patron.members.passwords.CompositionValidator"},
]
PATRON_PASSWORD = {
    "MIN_LENGTH": env_int("PASSWORD_MIN_LENGTH", 8),
    "HISTORY": env_int("PASSWORD_HISTORY", 5),
    # Composition rules and forced rotation are off by default (NIST SP 800-63B); some
    # regulated operators must turn them on.
    "REQUIRE_CLASSES": env_int("PASSWORD_REQUIRE_CLASSES", 0),
    "MAX_AGE_DAYS": env_int("PASSWORD_MAX_AGE_DAYS", 0),
}
PATRON_LOCKOUT = {
    "MAX_FAILURES": env_int("LOCKOUT_FAILURES", 5),
    "MINUTES": env_int("LOCKOUT_MINUTES", 15),
}
# Signed-in sessions a user may hold at once; a new sign-in ends the least recently seen
# beyond it (and keeps allauth's per-sign-in check of every live session bounded).
PATRON_MAX_SESSIONS = env_int("MAX_SESSIONS", 10)
# How long each process may reuse an API key it has looked up (revocation elsewhere takes
# effect within this time; at once in the process that revokes). 0: look it up every time.
PATRON_API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5)
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:home"

# django-allauth: sign-in, MFA, sessions, rate limits and the headless API for apps.
ACCOUNT_ADAPTER = "patron.members.allauth_adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}  # "username" accepts username, phone or email (backend)
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_USER_MODEL_EMAIL_FIELD = None
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_FORMS = {"login": "patron.members.allauth_adapter.LoginForm"}
# No allauth e-mail flows: addresses live encrypted on Member, not in allauth's EmailAddress,
# and allauth must never mail an address typed into a form for an unknown account.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
MFA_ADAPTER = "patron.members.allauth_adapter.MFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Patron"
HEADLESS_ONLY = False
HEADLESS_CLIENTS = ("app",)
HEADLESS_SERVE_SPECIFICATION = False
HEADLESS_FRONTEND_URLS: dict[str, str] = {}
HEADLESS_ADAPTER = "patron.members.allauth_adapter.HeadlessAdapter"
USERSESSIONS_TRACK_ACTIVITY = True
USERSESSIONS_ADAPTER = "patron.members.allauth_adapter.UserSessionsAdapter"

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG and not TESTING
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
)
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("HSTS_SECONDS", 0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

# --- I18n ----------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("简体中文")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "patron" / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise serves from the finders in development; it only warns when this is missing.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG and not TESTING
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- Cache ---------------------------------------------------------------------------
# allauth's rate limits and TOTP replay guard live in the cache, so every server process must
# share one. One node: a database table (created by every `migrate`), which drops expired
# entries before it culls anything, unlike the file cache, which deletes live rate-limit
# counters at random once full; Patron's backend writes it with one statement per operation
# (patron/core/cache.py). Beyond one node: Redis.
_cache_url = env_str("CACHE_URL")
if _cache_url:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "patron.core.cache.DatabaseCache",
            "LOCATION": "patron_cache",
            "OPTIONS": {"MAX_ENTRIES": env_int("CACHE_MAX_ENTRIES", 200_000)},
        }
    }

# --- Tasks ---------------------------------------------------------------------------
TASKS = {
    "default": {
        "BACKEND": env_str("TASK_BACKEND", "django_tasks_db.DatabaseBackend"),
    }
}

# --- Notices -------------------------------------------------------------------------
PATRON_SMS = {
    "BACKEND": env_str("SMS_BACKEND", "file"),  # file | http
    "FILE": Path(env_str("SMS_FILE") or VAR_DIR / "outbox" / "sms.jsonl"),
    "HTTP_URL": env_str("SMS_HTTP_URL"),
    "HTTP_TOKEN": env_str("SMS_HTTP_TOKEN"),
    "TIMEOUT": env_int("SMS_HTTP_TIMEOUT", 5),
}
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "outbox" / "email"
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Patron <no-reply@patron.local>")
PATRON_OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 6)
PATRON_WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT", 10)
# Local hour (program time zone) after which the worker runs the day's loyalty jobs.
PATRON_JOBS_HOUR = env_int("JOBS_HOUR", 2)

# --- Domain --------------------------------------------------------------------------
PATRON_VERIFICATION = {
    "CODE_TTL_SECONDS": env_int("CODE_TTL_SECONDS", 600),
    "MAX_ATTEMPTS": env_int("CODE_MAX_ATTEMPTS", 5),
    "RESEND_COOLDOWN_SECONDS": env_int("CODE_RESEND_SECONDS", 60),
    "DAILY_CAP_PER_TARGET": env_int("CODE_DAILY_CAP_TARGET", 10),
    "DAILY_CAP_PER_IP": env_int("CODE_DAILY_CAP_IP", 50),
}
PATRON_MINIMUM_AGE = env_int("MINIMUM_AGE", 18)
PATRON_DEFAULT_PHONE_REGION = env_str("DEFAULT_PHONE_REGION", "CN")
PATRON_KYC_MAX_IMAGE_BYTES = env_int("KYC_MAX_IMAGE_BYTES", 5 * 1024 * 1024)
PATRON_KYC_MAX_IMAGE_PIXELS = env_int("KYC_MAX_IMAGE_PIXELS", 40_000_000)
PATRON_KYC_CALLBACK_SECRET = env_str("KYC_CALLBACK_SECRET", SECRET_KEY)
PATRON_KYC_CALLBACK_TOLERANCE_SECONDS = env_int("KYC_CALLBACK_TOLERANCE", 300)
PATRON_QR_LOGIN_TTL_SECONDS = env_int("QR_LOGIN_TTL", 120)
PATRON_BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)  # make bench only

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "patron.core.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "patron.core.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django logs the request line (with query string) on 4xx: it may carry a phone
        # number in ?phone=, so those messages go through the same scrubbing formatter.
        "django.server": {"level": "WARNING"},
    },
}

if TESTING:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    PASSWORD_HASHERS = ["patron.core.hashers.PatronArgon2PasswordHasher"]
    TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    PATRON_SMS["FILE"] = Path(os.environ.get("PATRON_SMS_FILE") or VAR_DIR / "test-sms.jsonl")
