from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "patron.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from patron.core import signals  # noqa: F401  (cache table after migrate)
