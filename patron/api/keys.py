"""Platform API keys: creation (shown once), lookup by bearer token, revocation."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from django.db import transaction
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


def key_from_token(token: str) -> ApiKey | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "ptn":
        return None
    # prefix is unique: a slice, not .first(), spares an ORDER BY on every API request.
    key = next(iter(ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True)[:1]), None)
    if key is None or not hmac.compare_digest(key.digest, token_digest(token)):
        return None
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
