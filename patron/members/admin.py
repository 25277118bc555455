"""Members in the admin (/console/admin/): masked, browse only.

Member records change through services (status, profile, KYC) that check rules and audit;
the admin only lists them with masked personal data. Search takes an exact member number,
phone or email and goes through the blind-index selectors; nothing else can filter on
personal data. Staff accounts (users, groups) are managed here, and every change to one is
recorded in the audit trail.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from patron.core import audit, masking
from patron.core.admin import ReadOnlyAdmin, SafeAdmin
from patron.members import selectors
from patron.members.models import (
    Consent,
    ConsentDocument,
    KycSubmission,
    Member,
    MemberStatusChange,
    PaymentMethod,
    User,
    VerificationCode,
)


@admin.register(Member)
class MemberAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "kind",
        "status",
        "masked_name",
        "masked_phone",
        "masked_email",
        "phone_verified",
        "email_verified",
        "kyc_verified",
        "created_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("=number",)
    search_help_text = _("Exact member number, phone or email.")
    fields = (
        "number",
        "kind",
        "status",
        "status_reason",
        "frozen_until",
        "masked_name",
        "masked_phone",
        "masked_email",
        "company_name",
        "phone_verified_at",
        "email_verified_at",
        "kyc_verified_at",
        "marketing_opt_in",
        "language",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    ordering = ("-created_at",)
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term:
            found = selectors.member_by_email(term)
        elif term.isdigit() and len(term) == 12:
            found = selectors.member_by_number(term)
        else:
            found = selectors.member_by_phone(term)
        return queryset.filter(pk=found.pk if found else None), False

    @admin.display(description=_("Name"))
    def masked_name(self, obj: Member) -> str:
        return masking.mask_name(obj.name or obj.contact_name)

    @admin.display(description=_("Phone"))
    def masked_phone(self, obj: Member) -> str:
        return masking.mask_phone(obj.phone)

    @admin.display(description=_("Email"))
    def masked_email(self, obj: Member) -> str:
        return masking.mask_email(obj.email)

    @admin.display(description=_("Phone verified"), boolean=True)
    def phone_verified(self, obj: Member) -> bool:
        return obj.phone_verified_at is not None

    @admin.display(description=_("Email verified"), boolean=True)
    def email_verified(self, obj: Member) -> bool:
        return obj.email_verified_at is not None

    @admin.display(description=_("Real name verified"), boolean=True)
    def kyc_verified(self, obj: Member) -> bool:
        return obj.kyc_verified_at is not None


@admin.register(MemberStatusChange)
class MemberStatusChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "member",
        "from_status",
        "to_status",
        "reason",
        "until",
        "actor_type",
        "actor_id",
        "changed_at",
    )
    list_filter = ("to_status",)
    search_fields = ("=member__number",)
    list_select_related = ("member",)


@admin.register(ConsentDocument)
class ConsentDocumentAdmin(ReadOnlyAdmin):
    """New versions are published in the console (audited); documents are never edited."""

    list_display = ("kind", "version", "title", "required", "published_at")
    list_filter = ("kind", "required")


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ("member", "document", "granted", "channel", "recorded_at")
    list_filter = ("granted", "channel", "document__kind")
    search_fields = ("=member__number",)
    list_select_related = ("member", "document")


@admin.register(VerificationCode)
class VerificationCodeAdmin(ReadOnlyAdmin):
    list_display = ("member", "channel", "attempts", "created_at", "expires_at", "consumed_at")
    list_filter = ("channel",)
    search_fields = ("=member__number",)
    list_select_related = ("member",)


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = (
        "member",
        "provider",
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "created_at",
        "removed_at",
    )
    list_filter = ("provider",)
    search_fields = ("=member__number",)
    list_select_related = ("member",)


@admin.register(KycSubmission)
class KycSubmissionAdmin(ReadOnlyAdmin):
    """State only; the reviewers' console shows the data and photos, audited."""

    list_display = ("id", "member", "status", "submitted_at", "reviewed_by", "reviewed_at")
    list_filter = ("status",)
    search_fields = ("=member__number",)
    exclude = ("front_content_type", "back_content_type", "provider_result")
    list_select_related = ("member", "reviewed_by")


# --- Staff accounts ------------------------------------------------------------------------


class StaffCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username",)


class StaffChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(SafeAdmin, DjangoUserAdmin):
    """Staff and member sign-in identities; roles are groups (``members.roles``)."""

    form = StaffChangeForm
    add_form = StaffCreationForm
    list_display = (
        "username",
        "is_staff",
        "is_active",
        "is_superuser",
        "locked_until",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_staff", "is_active", "is_superuser", "groups")
    search_fields = ("username",)
    ordering = ("username",)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (
            _("Access"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (
            _("Sign-in state"),
            {
                "fields": (
                    "failed_sign_ins",
                    "locked_until",
                    "password_changed_at",
                    "last_login",
                    "date_joined",
                )
            },
        ),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined", "password_changed_at")
    filter_horizontal = ("groups", "user_permissions")

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The password hash is shown by UserChangeForm's read-only widget, never editable.
        return list(super(SafeAdmin, self).get_exclude(request, obj) or [])

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Inside the admin's transaction: the change and its audit event commit together.
        audit.record(
            "staff_user.changed" if change else "staff_user.created",
            actor=audit.Actor.user(request.user),
            subject=form.instance,
            details={"fields": sorted(set(form.changed_data) - {"password1", "password2"})},
        )

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if request.path.endswith("/password/"):
            with transaction.atomic():
                audit.record(
                    "staff_user.password_set",
                    actor=audit.Actor.user(request.user),
                    subject=obj,
                )
        return super().log_change(request, obj, message)
