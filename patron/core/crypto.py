"""Field-level encryption (AES-256-GCM) and keyed blind indexes (HMAC-SHA256).

Ciphertext layout, base64url without padding: ``v1.<key id>.<nonce 12 bytes + ciphertext>``.
The key id inside the ciphertext lets several keys coexist during a rotation: the first key
of ``PATRON_FIELD_KEYS`` encrypts, every listed key decrypts. Blind indexes let us find and
deduplicate by phone, email, ID number or credit code without storing them in plain text;
their key is separate so that a leaked index table alone does not help decrypt anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VERSION = "v1"


class DecryptionError(Exception):
    pass


def _b64decode_key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{what} is not valid base64") from exc
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{what} must be 32 bytes (AES-256), got {len(raw)}")
    return raw


@dataclass(frozen=True)
class KeyRing:
    primary_id: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse ``id1:base64key,id2:base64key``; the first one encrypts."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, material = item.partition(":")
            if not sep or not key_id.isalnum():
                raise ImproperlyConfigured("PATRON_FIELD_KEYS entries look like id:base64key")
            keys[key_id] = _b64decode_key(material, f"field key {key_id!r}")
            order.append(key_id)
        if not order:
            raise ImproperlyConfigured("PATRON_FIELD_KEYS holds no key")
        return cls(primary_id=order[0], keys=keys)

    def encrypt(self, plaintext: str, associated: bytes = b"") -> str:
        return self.encrypt_bytes(plaintext.encode(), associated)

    def decrypt(self, token: str, associated: bytes = b"") -> str:
        return self.decrypt_bytes(token, associated).decode()

    def encrypt_bytes(self, plaintext: bytes, associated: bytes = b"") -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.primary_id]).encrypt(nonce, plaintext, associated)
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{VERSION}.{self.primary_id}.{body}"

    def decrypt_bytes(self, token: str, associated: bytes = b"") -> bytes:
        try:
            version, key_id, body = token.split(".", 2)
            if version != VERSION:
                raise DecryptionError(f"unknown ciphertext version {version!r}")
            key = self.keys[key_id]
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return AESGCM(key).decrypt(raw[:12], raw[12:], associated)
        except KeyError as exc:
            raise DecryptionError("ciphertext names a key that is not in the key ring") from exc
        except (ValueError, binascii.Error) as exc:
            raise DecryptionError("ciphertext is malformed") from exc
        except Exception as exc:  # cryptography's InvalidTag has no message
            raise DecryptionError("ciphertext failed authentication") from exc

    @staticmethod
    def key_id_of(token: str) -> str:
        return token.split(".", 2)[1]


@lru_cache(maxsize=4)
def _ring(spec: str) -> KeyRing:
    return KeyRing.parse(spec)


def keyring() -> KeyRing:
    return _ring(settings.PATRON_FIELD_KEYS)


def encrypt(plaintext: str) -> str:
    return keyring().encrypt(plaintext)


def decrypt(token: str) -> str:
    return keyring().decrypt(token)


@lru_cache(maxsize=4)
def _index_key(spec: str) -> bytes:
    return _b64decode_key(spec, "PATRON_BLIND_INDEX_KEY")


def blind_index(value: str, purpose: str) -> str:
    """Deterministic keyed digest of an already-normalised value, per purpose.

    The purpose is mixed in so that equal strings of different kinds (a phone and an ID
    number, say) never share an index value.
    """
    key = _index_key(settings.PATRON_BLIND_INDEX_KEY)
    message = purpose.encode() + b"\x00" + value.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def token_digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (API keys, session-like tokens)."""
    return hashlib.sha256(secret.encode()).hexdigest()
