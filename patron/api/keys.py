"""Platform API keys: creation (shown once), lookup by bearer token, revocation."""

from __future__ import annotations

import copy
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest

from patron.api.models import ApiKey
from patron.core import audit, clock
from patron.core.crypto import token_digest
from patron.core.exceptions import ValidationFailed

SCOPES = {
    "members:read": "Read members (masked) and look them up",
    "members:write": "Register and update members, send and confirm codes, consents",
    "members:status": "Freeze, unfreeze and cancel members",
    "members:payment": "Bind payment-method tokens",
    "kyc:callback": "Report third-party identity results",
    "orders:write": "Send order states and activities (earns and claws back points)",
    "loyalty:read": "Read points, tiers, benefits, quotes, rewards and coupons",
    "rewards:redeem": "Redeem rewards, cancel redemptions, use coupons",
    "points:adjust": "Adjust points and extend expiry (staff tools)",
    "reports:read": "Read reports such as the points liability",
}


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    secret: str  # the full key, to show once


def create_api_key(
    *, name: str, scopes: list[str], actor: audit.Actor, created_by=None
) -> CreatedKey:
    unknown = sorted(set(scopes) - SCOPES.keys())
    if unknown:
        raise ValidationFailed.single(
            "scopes", "unknown_scope", f"Unknown scopes: {', '.join(unknown)}"
        )
    if not name.strip():
        raise ValidationFailed.single("name", "required", "A key needs a name.")
    prefix = secrets.token_hex(6)
    secret_part = secrets.token_urlsafe(32)
    full = f"ptn_{prefix}_{secret_part}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name.strip(),
            prefix=prefix,
            digest=token_digest(full),
            scopes=sorted(set(scopes)),
            created_by=created_by,
        )
        audit.record("api_key.created", actor=actor, subject=key, details={"scopes": key.scopes})
    return CreatedKey(api_key=key, secret=full)


def revoke_api_key(*, key: ApiKey, actor: audit.Actor) -> ApiKey:
    with transaction.atomic():
        if key.revoked_at is None:
            key.revoked_at = clock.now()
            key.save(update_fields=["revoked_at"])
            audit.record("api_key.revoked", actor=actor, subject=key)
    return key


# --- Per-process cache of valid keys -------------------------------------------------------
# Every API request names its key; looking it up is a query of its own, a sizeable share of
# a cheap read such as a lookup by phone. Each process remembers the keys it has resolved
# (by the SHA-256 digest of the full token, never the token) for at most
# PATRON_API_KEY_CACHE_SECONDS (default 5; 0 turns the cache off). Only valid keys are
# remembered: unknown, wrong or revoked tokens are looked up every time. Saving or deleting
# a key in a process (revoke_api_key, the admin, the console) forgets it there at once and
# again when its transaction commits; other processes notice within the cache time.
# docs/security.md, "API keys".
_MAX_CACHED_KEYS = 1_000
_cached: dict[str, tuple[ApiKey, float]] = {}
_cache_lock = threading.Lock()


def _cache_seconds() -> float:
    return float(getattr(settings, "PATRON_API_KEY_CACHE_SECONDS", 0) or 0)


def forget_cached_keys() -> None:
    """Drop every remembered key in this process."""
    with _cache_lock:
        _cached.clear()


def _forget(digest: str) -> None:
    with _cache_lock:
        _cached.pop(digest, None)


def _on_key_changed(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    digest = instance.digest
    _forget(digest)
    # A request in between could read the row before the change commits: forget it again.
    transaction.on_commit(lambda: _forget(digest))


post_save.connect(_on_key_changed, sender=ApiKey, dispatch_uid="patron.api_key_saved")
post_delete.connect(_on_key_changed, sender=ApiKey, dispatch_uid="patron.api_key_deleted")


def _lookup(prefix: str, digest: str) -> ApiKey | None:
    # prefix is unique: a slice, not .first(), spares an ORDER BY on every API request.
    key = next(iter(ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True)[:1]), None)
    if key is None or not hmac.compare_digest(key.digest, digest):
        return None
    return key


def key_from_token(token: str) -> ApiKey | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "ptn":
        return None
    digest = token_digest(token)
    seconds = _cache_seconds()
    if seconds <= 0:
        return _lookup(parts[1], digest)
    now = time.monotonic()
    with _cache_lock:
        hit = _cached.get(digest)
    if hit is not None and now - hit[1] < seconds:
        # A copy: requests (threads) never share one mutable instance.
        return copy.copy(hit[0])
    key = _lookup(parts[1], digest)
    if key is not None:
        with _cache_lock:
            if len(_cached) >= _MAX_CACHED_KEYS:
                _cached.clear()
            _cached[digest] = (copy.copy(key), now)
    return key


def key_from_request(request: HttpRequest) -> ApiKey | None:
    """The request's API key, resolved once and remembered on the request."""
    if not hasattr(request, "_patron_api_key"):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        request._patron_api_key = (  # type: ignore[attr-defined]
            key_from_token(token.strip()) if scheme.lower() == "bearer" and token else None
        )
    return request._patron_api_key  # type: ignore[attr-defined]
