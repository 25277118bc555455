"""Keep the staff role groups in step with the code after every migrate."""

from django.db.models.signals import post_migrate
from django.dispatch import receiver


@receiver(post_migrate)
def _refresh_roles(sender, **kwargs):  # type: ignore[no-untyped-def]
    if getattr(sender, "label", None) != "members":
        return
    from patron.members.roles import ensure_roles

    ensure_roles()
