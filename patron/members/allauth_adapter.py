"""django-allauth adapters: how allauth's flows meet Patron's members."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter


class AccountAdapter(DefaultAccountAdapter):
    pass


class MFAAdapter(DefaultMFAAdapter):
    pass
