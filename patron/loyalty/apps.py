from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "patron.loyalty"
    label = "loyalty"
    verbose_name = "Loyalty"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from patron.loyalty import signals  # noqa: F401 - connects the receivers
