"""Identifiers that are safe to show: random, check-digited, never sequential."""

from __future__ import annotations

import secrets


def luhn_check_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # these are doubled once the check digit is appended
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 1 and luhn_check_digit(number[:-1]) == number[-1]


def random_member_number() -> str:
    """12 digits: 11 random (first never 0) plus a Luhn check digit."""
    body = str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(10))
    return body + luhn_check_digit(body)


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
