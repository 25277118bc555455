"""``patron createadmin --username NAME``: a staff administrator with a random password.

The password is printed once and never stored in plain text; the administrator must set up
two-factor authentication at first sign-in (AUTH-3).
"""

from __future__ import annotations

import secrets

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from patron.core import audit, clock
from patron.members.models import User
from patron.members.roles import ensure_roles


def create_administrator(username: str) -> tuple[User, str]:
    """Create the administrator; returns the user and the one-time plain password."""
    password = secrets.token_urlsafe(15)
    with transaction.atomic():
        groups = ensure_roles()
        user = User(
            username=username,
            is_staff=True,
            is_superuser=True,
            password_changed_at=clock.now(),
        )
        user.set_password(password)
        user.save()
        user.groups.add(groups["administrator"])
        audit.record(
            "staff.created",
            actor=audit.Actor.system(),
            subject=user,
            details={"roles": ["administrator"]},
        )
    return user, password


class Command(BaseCommand):
    help = "Create a staff administrator with a random password (printed once)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--username", required=True)

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        username = options["username"].strip()
        if not username or len(username) > 32:
            raise CommandError("the username must be 1 to 32 characters")
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"a user named {username!r} already exists")
        user, password = create_administrator(username)
        self.stdout.write(f"administrator {user.username} created")
        self.stdout.write(f"password (shown once, store it now): {password}")
