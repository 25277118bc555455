"""Create the database cache table after every migrate, so no deploy step can forget it."""

from django.core.management import call_command
from django.db.models.signals import post_migrate
from django.dispatch import receiver


@receiver(post_migrate)
def _create_cache_table(sender, using="default", **kwargs):  # type: ignore[no-untyped-def]
    if getattr(sender, "label", None) != "core":
        return
    # A no-op when the cache is not a database cache or the table exists.
    call_command("createcachetable", database=using, verbosity=0)
    # Rate-limit counters and locks are disposable: keep their commits off the WAL.
    from patron.core.cache import make_unlogged

    make_unlogged(using)
