"""The outbox: every notice is a row written in the caller's transaction (rule 2)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from patron.core.fields import EncryptedTextField


class OutboxMessage(models.Model):
    """One message to deliver: SMS, email, in-app, or a platform webhook.

    The rendered text and the address are encrypted (a verification code's text is a
    secret; an address is personal data). Delivery is retried with backoff; after
    ``PATRON_OUTBOX_MAX_ATTEMPTS`` the row goes to ``dead`` for an operator to look at.
    """

    class Channel(models.TextChoices):
        SMS = "sms", _("SMS")
        EMAIL = "email", _("Email")
        INAPP = "inapp", _("In-app")
        WEBHOOK = "webhook", _("Webhook")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        DEAD = "dead", _("Dead letter")

    channel = models.CharField(max_length=8, choices=Channel.choices)
    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    template = models.CharField(max_length=64)
    language = models.CharField(max_length=8, default="zh-hans")
    to_address = EncryptedTextField(blank=True)
    subject = EncryptedTextField(blank=True)
    body = EncryptedTextField(blank=True)
    dedupe_key = models.CharField(max_length=128, unique=True, null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Webhook deliveries only: the platform endpoint the message goes to (NOTE-2).
    endpoint = models.ForeignKey(
        "notify.WebhookEndpoint",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="deliveries",
    )

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.channel}:{self.template} ({self.status})"


class WebhookEndpoint(models.Model):
    """A platform URL that receives signed event webhooks (NOTE-2).

    ``events`` lists the event types it subscribes to (``patron.notify.webhooks.EVENTS``), or
    ``["*"]`` for all. The signing secret is encrypted at rest and shown to staff only once,
    when the endpoint is created. Endpoints are deactivated, never deleted: their delivery
    history stays. Create and change them through ``patron.notify.webhooks`` (audited).
    """

    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("URL"), max_length=500)
    secret = EncryptedTextField()
    events = models.JSONField(_("events"), default=list)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("manage_webhooks", _("Can manage platform webhooks"))]

    def __str__(self) -> str:
        return self.name


class InboxMessage(models.Model):
    """An in-app message shown in the member centre."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="inbox")
    template = models.CharField(max_length=64)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.subject
