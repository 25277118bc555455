from django.apps import AppConfig


class MembersConfig(AppConfig):
    name = "patron.members"
    label = "members"

    def ready(self) -> None:
        from patron.members import signals  # noqa: F401  (roles after migrate)
