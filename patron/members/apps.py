from django.apps import AppConfig


class MembersConfig(AppConfig):
    name = "patron.members"
    label = "members"

    def ready(self) -> None:
        # Roles after migrate; the adapters' receivers audit MFA changes (AUTH-3).
        from patron.members import allauth_adapter, signals  # noqa: F401
