"""Model fields that keep personal data encrypted at rest.

The database only ever sees ciphertext; Python code sees the plain value. Equality lookups
go through a separate blind-index column (see ``crypto.blind_index``), never through these
columns, so ``filter(phone=...)`` is refused rather than silently matching nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db import models

from patron.core import crypto


class EncryptedTextField(models.TextField):
    description = "Text encrypted with AES-256-GCM"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def to_python(self, value: Any) -> str | None:
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None or value == "":
            return value
        return crypto.encrypt(str(value))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(
            f"{self.name} is encrypted: look it up through its blind index, not {lookup_name!r}"
        )


class EncryptedBinaryField(models.TextField):
    """Bytes (an ID photo, say), encrypted and stored as a text token."""

    description = "Bytes encrypted with AES-256-GCM"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> bytes | None:
        if value is None or value == "":
            return None
        return crypto.keyring().decrypt_bytes(value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return crypto.keyring().encrypt_bytes(bytes(value))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(f"{self.name} is encrypted and cannot be searched")
