"""Masked displays of personal data: what staff and logs see by default (PRIV-2)."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """+8613812345678 -> +86138****5678: keep the prefix and the last four digits."""
    if not phone:
        return ""
    if len(phone) <= 8:
        return phone[:2] + "*" * max(0, len(phone) - 2)
    return phone[:-8] + "****" + phone[-4:]


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return ""
    local, domain = email.split("@", 1)
    return (local[:1] + "***@" + domain) if local else "***@" + domain


def mask_name(name: str | None) -> str:
    if not name:
        return ""
    return name[:1] + "*" * max(1, len(name) - 1)


def mask_id_number(value: str | None) -> str:
    if not value:
        return ""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_middle(value: str | None, keep_start: int = 4, keep_end: int = 4) -> str:
    if not value:
        return ""
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]
