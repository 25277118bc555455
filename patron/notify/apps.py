from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "patron.notify"
    label = "notify"

    def ready(self) -> None:
        # Connects the endpoint-cache invalidation signals.
        from patron.notify import webhooks  # noqa: F401
