"""Coupon codes: random, unambiguous, not guessable (BEN-1)."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L: codes are read aloud at cinema counters and typed from screenshots.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 12  # 31^12 ~ 2^59: guessing a live code is hopeless, collisions vanishingly rare


def new_coupon_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")
