from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "patron.console"
    label = "console"
