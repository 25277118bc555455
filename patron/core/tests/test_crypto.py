"""PRIV-2: field encryption, key rotation and blind indexes."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ImproperlyConfigured

from patron.core.crypto import DecryptionError, KeyRing, blind_index


def _key() -> str:
    return base64.b64encode(bytes(range(32))).decode()


def _other_key() -> str:
    return base64.b64encode(bytes(range(1, 33))).decode()


def test_priv_2_round_trip_and_key_id_inside():
    ring = KeyRing.parse(f"k1:{_key()}")
    token = ring.encrypt("+8613800138000")
    assert "13800138000" not in token
    assert KeyRing.key_id_of(token) == "k1"
    assert ring.decrypt(token) == "+8613800138000"
    assert ring.encrypt("same") != ring.encrypt("same")  # random nonce


def test_priv_2_rotation_old_key_still_decrypts_new_key_encrypts():
    old = KeyRing.parse(f"k1:{_key()}")
    token = old.encrypt("secret")
    rotated = KeyRing.parse(f"k2:{_other_key()},k1:{_key()}")
    assert rotated.decrypt(token) == "secret"
    assert KeyRing.key_id_of(rotated.encrypt("secret")) == "k2"


def test_priv_2_tampered_or_unknown_ciphertext_is_refused():
    ring = KeyRing.parse(f"k1:{_key()}")
    token = ring.encrypt("secret")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(DecryptionError):
        ring.decrypt(flipped)
    with pytest.raises(DecryptionError):
        KeyRing.parse(f"k9:{_other_key()}").decrypt(token)


@pytest.mark.parametrize(
    "spec", ["", "k1", "k1:notbase64!!", f"k1:{base64.b64encode(b'short').decode()}"]
)
def test_bad_key_ring_fails_loudly(spec):
    with pytest.raises(ImproperlyConfigured):
        KeyRing.parse(spec)


def test_priv_2_blind_index_is_keyed_and_separated_by_purpose(settings):
    assert blind_index("123", "phone") == blind_index("123", "phone")
    assert blind_index("123", "phone") != blind_index("123", "id_number")
    before = blind_index("123", "phone")
    settings.PATRON_BLIND_INDEX_KEY = _other_key()
    assert blind_index("123", "phone") != before
