"""Leave room in the accounts' pages for their next version (PostgreSQL).

Every order event, batch and evaluation updates an account row (balances, tier). With full
pages (the default fillfactor of 100) about half of those updates found no room beside the
old version and wrote a new entry into each of the table's indexes, on random pages; with
room left, PostgreSQL updates in place (a HOT update) and touches no index. SQLite has no
such setting.
"""

from django.db import migrations

FILLFACTOR = 85


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE loyalty_account SET (fillfactor = {FILLFACTOR})")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE loyalty_account RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0004_order_id_by_constraint")]

    operations = [migrations.RunPython(forwards, backwards)]
