from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "patron.notify"
    label = "notify"
