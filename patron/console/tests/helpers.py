"""Console test helpers: staff users with exact permissions, CSRF-checked clients."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Permission
from django.test import Client

from patron.members.models import User

_n = iter(range(1, 10_000))


def make_staff(*perms: str, superuser: bool = False) -> User:
    user = User.objects.create_user(
        f"staff{next(_n)}", "a long staff password", is_staff=True, is_superuser=superuser
    )
    for dotted in perms:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    # Staff must have TOTP to reach any page (AUTH-3); these tests are not about sign-in.
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})
    return User.objects.get(pk=user.pk)


def signed_in(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_post(client: Client, path: str, data: dict | None = None):
    """A POST carrying the CSRF token, as the page's form would."""
    client.get("/console/")
    token = client.cookies["csrftoken"].value
    return client.post(path, {**(data or {}), "csrfmiddlewaretoken": token})
