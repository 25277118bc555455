"""Members, enterprises, consents, verification codes, KYC, devices and payment tokens.

Personal fields are ``Encrypted*Field`` (ciphertext at rest); the ``*_index`` columns are
keyed blind indexes (``core.crypto.blind_index``) for exact lookups and uniqueness.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from patron.core.fields import EncryptedBinaryField, EncryptedTextField


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, username: str, password: str | None = None, **extra) -> User:
        user = self.model(username=username, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, username: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(username, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A sign-in identity: a member's or a staff member's. No personal data lives here."""

    username = models.CharField(_("username"), max_length=32, unique=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    failed_sign_ins = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    password_changed_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "username"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")

    def __str__(self) -> str:
        return self.username


class Member(models.Model):
    """A person or an enterprise with an account (REG-1..11)."""

    class Kind(models.TextChoices):
        INDIVIDUAL = "individual", _("Individual")
        ENTERPRISE = "enterprise", _("Enterprise")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACTIVE = "active", _("Active")
        FROZEN = "frozen", _("Frozen")
        CANCELLED = "cancelled", _("Cancelled")

    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="member")
    number = models.CharField(max_length=12, unique=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=200, blank=True)
    frozen_until = models.DateTimeField(null=True, blank=True)
    name = EncryptedTextField(blank=True)
    phone = EncryptedTextField()
    phone_index = models.CharField(max_length=64, unique=True, null=True)
    phone_verified_at = models.DateTimeField(null=True, blank=True)
    email = EncryptedTextField(blank=True)
    email_index = models.CharField(max_length=64, unique=True, null=True)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    birth_date = EncryptedTextField(blank=True)  # ISO date; encrypted like the rest
    id_number = EncryptedTextField(blank=True)
    id_number_index = models.CharField(max_length=64, null=True, db_index=True)
    address = EncryptedTextField(blank=True)
    company_name = models.CharField(max_length=200, blank=True)
    credit_code = EncryptedTextField(blank=True)
    credit_code_index = models.CharField(max_length=64, unique=True, null=True)
    contact_name = EncryptedTextField(blank=True)
    referrer = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="referred"
    )
    marketing_opt_in = models.BooleanField(default=False)
    kyc_verified_at = models.DateTimeField(null=True, blank=True)
    language = models.CharField(max_length=8, default="zh-hans")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [
            ("reveal_personal_data", "Can reveal unmasked personal data (with a reason)"),
            ("change_member_status", "Can freeze, unfreeze or cancel members"),
            ("review_kyc", "Can review real-name verification submissions"),
        ]

    def __str__(self) -> str:
        return self.number


class MemberStatusChange(models.Model):
    """History of account states (REG-11): every change has a reason and an actor."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=12)
    to_status = models.CharField(max_length=12)
    reason = models.CharField(max_length=200)
    until = models.DateTimeField(null=True, blank=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_status}->{self.to_status}"


class ConsentDocument(models.Model):
    """A versioned agreement or policy (REG-5, PRIV-9)."""

    class Kind(models.TextChoices):
        TERMS = "terms", _("Service agreement")
        PRIVACY = "privacy", _("Privacy policy")
        SENSITIVE = "sensitive", _("Sensitive personal information")
        MARKETING = "marketing", _("Marketing messages")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    version = models.CharField(max_length=32)
    title = models.CharField(max_length=200)
    body = models.TextField()
    title_en = models.CharField(max_length=200, blank=True)
    body_en = models.TextField(blank=True)
    required = models.BooleanField(default=True)
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="consent_document_version")
        ]
        ordering = ["kind", "-published_at"]

    def __str__(self) -> str:
        return f"{self.kind}@{self.version}"


class Consent(models.Model):
    """One grant or withdrawal, append-only: the history is the record (PRIV-1)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="consents")
    document = models.ForeignKey(ConsentDocument, on_delete=models.PROTECT)
    granted = models.BooleanField()
    channel = models.CharField(max_length=16)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-recorded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.member_id} {self.document} {'granted' if self.granted else 'withdrawn'}"


class VerificationCode(models.Model):
    """A one-time code sent to a phone or email (REG-6). Only its hash is stored.

    ``target`` is the address the code proves (encrypted): the member's current one, or a
    new one awaiting re-verification (REG-8), applied only once the code is confirmed.
    """

    class Channel(models.TextChoices):
        PHONE = "phone", _("Phone")
        EMAIL = "email", _("Email")

    class Purpose(models.TextChoices):
        # A code proves one thing only: a password-reset code cannot verify an address, and
        # a verification code cannot reset a password.
        VERIFY = "verify", _("Verify an address")
        PASSWORD_RESET = "password_reset", _("Reset the password")

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="codes")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.VERIFY)
    target = EncryptedTextField()
    target_index = models.CharField(max_length=64, db_index=True)
    ip_index = models.CharField(max_length=64, blank=True, db_index=True)
    code_hash = models.CharField(max_length=128)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["member", "channel", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.channel} code for member {self.member_id}"


class PaymentMethod(models.Model):
    """A payment provider's token and display facts only (REG-10). Never a card number."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="payment_methods")
    provider = models.CharField(max_length=32)
    token = EncryptedTextField()
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.provider} {self.brand} ****{self.last4}"


class KycSubmission(models.Model):
    """A real-name verification request (KYC-1..5); name, ID number and photos encrypted."""

    class Status(models.TextChoices):
        PRECHECK_FAILED = "precheck_failed", _("Pre-check failed")
        PENDING_REVIEW = "pending_review", _("Waiting for review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="kyc_submissions")
    name = EncryptedTextField()
    id_number = EncryptedTextField()
    id_number_index = models.CharField(max_length=64, db_index=True)
    front_image = EncryptedBinaryField()
    front_content_type = models.CharField(max_length=32)
    back_image = EncryptedBinaryField()
    back_content_type = models.CharField(max_length=32)
    status = models.CharField(max_length=20, choices=Status.choices)
    reasons = models.JSONField(default=list, blank=True)
    submitted_at = models.DateTimeField(default=timezone.now, db_index=True)
    reviewed_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.CharField(max_length=500, blank=True)
    provider_reference = models.CharField(max_length=64, blank=True)
    provider_result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["submitted_at", "id"]

    def __str__(self) -> str:
        return f"KYC {self.pk} ({self.status})"


class QrLoginToken(models.Model):
    """A single-use QR sign-in request (AUTH-4). Only the token's digest is stored."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for approval")
        APPROVED = "approved", _("Approved")
        CONSUMED = "consumed", _("Used")
        DENIED = "denied", _("Denied")

    digest = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requester_agent = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        User, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"QR {self.pk} ({self.status})"


class KnownDevice(models.Model):
    """Devices a user has signed in from, by digest, to notice a new one (AUTH-5)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    fingerprint = models.CharField(max_length=64)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "fingerprint"], name="known_device_once")
        ]

    def __str__(self) -> str:
        return f"device of {self.user_id}"


class PasswordHistory(models.Model):
    """Previous password hashes, to refuse reuse of the last N (AUTH-1)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="password_history")
    password = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"password of {self.user_id} at {self.created_at:%Y-%m-%d}"
