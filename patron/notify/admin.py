"""The outbox in the admin: delivery state only. Addresses and texts are encrypted (a text
may hold a verification code) and are never displayed; dead letters can be re-queued."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from patron.core import audit, clock
from patron.core.admin import ReadOnlyAdmin
from patron.notify.models import InboxMessage, OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "channel",
        "template",
        "language",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
        "member",
    )
    list_filter = ("status", "channel", "template")
    search_fields = ("=id", "=member__number")
    fields = (
        "channel",
        "member",
        "template",
        "language",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "sent_at",
    )
    readonly_fields = fields
    list_select_related = ("member",)
    ordering = ("-id",)
    actions = ["requeue"]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Only so the re-queue action shows; the form itself has no editable field.
        return request.user.has_perm("notify.change_outboxmessage")

    @admin.action(description=_("Deliver again (dead letters)"))
    def requeue(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        """After an outage is fixed, give dead letters a fresh set of attempts."""
        from patron.core.tasks import enqueue_on_commit
        from patron.notify.tasks import deliver_outbox_message

        with transaction.atomic():
            ids = list(
                queryset.filter(status=OutboxMessage.Status.DEAD).values_list("id", flat=True)
            )
            OutboxMessage.objects.filter(id__in=ids).update(
                status=OutboxMessage.Status.PENDING, attempts=0, next_attempt_at=clock.now()
            )
            for message_id in ids:
                audit.record(
                    "outbox.requeued",
                    actor=audit.Actor.user(request.user),
                    subject_type="outboxmessage",
                    subject_id=message_id,
                )
                enqueue_on_commit(deliver_outbox_message, message_id)
        self.message_user(
            request,
            ngettext("%d message queued again.", "%d messages queued again.", len(ids)) % len(ids),
            messages.SUCCESS,
        )


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "member", "template", "created_at", "read_at")
    list_filter = ("template",)
    search_fields = ("=member__number",)
    fields = ("member", "template", "created_at", "read_at")
    readonly_fields = fields
    list_select_related = ("member",)
