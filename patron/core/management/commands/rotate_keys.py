"""``patron rotate-keys``: re-encrypt every encrypted field with the primary key.

Put the new key first in PATRON_FIELD_KEYS (keep the old ones after it), run this, then
remove the old keys. Works in primary-key batches, each its own transaction, so it can be
stopped and run again.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from patron.core.fields import EncryptedBinaryField, EncryptedTextField


def encrypted_models() -> list[tuple[type, list[str]]]:
    found = []
    for model in apps.get_models():
        names = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, EncryptedTextField | EncryptedBinaryField)
        ]
        if names:
            found.append((model, names))
    return found


class Command(BaseCommand):
    help = "Re-encrypt all encrypted personal fields with the primary field key."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        size = options["batch_size"]
        for model, fields in encrypted_models():
            done = 0
            last_pk = 0
            while True:
                with transaction.atomic():
                    batch = list(model.objects.filter(pk__gt=last_pk).order_by("pk")[:size])
                    if not batch:
                        break
                    # Loading decrypted with whichever key each row names; saving encrypts
                    # with the primary key.
                    model.objects.bulk_update(batch, fields)
                last_pk = batch[-1].pk
                done += len(batch)
            self.stdout.write(f"{model._meta.label}: {done} rows re-encrypted")
