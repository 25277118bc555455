"""The loyalty engine's data: program rules, accounts, orders, the points ledger, tiers,
rewards and coupons (TIER-1..6, PTS-1..8, BEN-1..2).

The ledger (architecture rule 3) is three tables:

- ``Lot``: points that arrived together (one order's purchase points, a referral bonus, an
  adjustment). A lot is ``pending`` until its return window closes, then ``available`` until
  it ``expired``; ``remaining`` is what is left of ``amount``.
- ``Entry``: one append-only change of a member's balances, with a database-unique
  idempotency ``key``. ``points`` moves the available balance, ``pending_delta`` the pending
  one, ``debt_delta`` the debt.
- ``Allocation``: which lots an entry took points from (negative) or gave back (positive),
  so a refund or a cancelled redemption puts back exactly what it took.

``Account`` caches the three balances; it is the row every ledger write locks. The
invariants (``patron ledger verify``): ``Account.available == sum(remaining of available
lots) == sum(Entry.points)``, the same for pending, ``Account.debt == sum(Entry.debt_delta)``,
every lot's ``remaining == amount + sum(its allocations)`` and ``0 <= remaining <= amount``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

MONEY = {"max_digits": 14, "decimal_places": 2}


class ProgramVersion(models.Model):
    """One version of the program rules (``patron.loyalty.rules.Rules`` as JSON).

    Versions are never edited: a change is a new version, effective from ``effective_at``.
    Every lot records the version whose rule earned it.
    """

    version = models.PositiveIntegerField(unique=True)
    rules = models.JSONField()
    note = models.CharField(max_length=200, blank=True)
    effective_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version}"


class Account(models.Model):
    """A member's loyalty standing: tier and cached balances; locked by every ledger write."""

    member = models.OneToOneField(
        "members.Member", on_delete=models.CASCADE, primary_key=True, related_name="loyalty"
    )
    tier = models.CharField(max_length=16, default="regular")
    tier_since = models.DateTimeField(default=timezone.now)
    available = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    debt = models.BigIntegerField(default=0)
    # HMAC of the birthday's "MMDD" (no year, no plaintext): lets the birthday-coupon job
    # find today's birthdays with one indexed equality instead of decrypting every member.
    birthday_index = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # No index on tier: four values, never looked up alone (counts per tier read every
        # account anyway), and without it the quarterly evaluation's tier updates write one
        # index fewer per changed member.
        indexes = [models.Index(fields=["birthday_index"])]
        constraints = [
            models.CheckConstraint(condition=Q(available__gte=0), name="account_available_gte_0"),
            models.CheckConstraint(condition=Q(pending__gte=0), name="account_pending_gte_0"),
            models.CheckConstraint(condition=Q(debt__gte=0), name="account_debt_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tier} {self.available}"


class Order(models.Model):
    """The last state a platform sent for one of its orders (``PUT /orders/{order_id}``)."""

    class Status(models.TextChoices):
        PAID = "paid", _("Paid")
        DELIVERED = "delivered", _("Delivered")
        REFUNDED = "refunded", _("Refunded")
        CANCELLED = "cancelled", _("Cancelled")

    # Unique by a constraint, not unique=True: on PostgreSQL the latter adds a second
    # (LIKE pattern) index that every order insert would write and nothing reads.
    order_id = models.CharField(max_length=64)
    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="orders", db_index=False
    )  # indexed by order_window
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="CNY")
    category = models.CharField(max_length=32)
    store = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices)
    refunded_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    paid_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When the return window closes (delivered_at + return window); null until delivered.
    final_at = models.DateTimeField(null=True, blank=True)
    tier_at_paid = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # A member's orders by payment time, carrying the columns of the window's
            # figures (figures.py) so that they are read from the index alone: each order
            # event and each batch member sums the window's orders, and fetching every
            # order row from the table cost most of a batch at 10M orders (docs/loyalty.md).
            models.Index(
                fields=["member", "paid_at", "status", "amount", "refunded_amount"],
                name="order_window",
            )
        ]
        constraints = [models.UniqueConstraint(fields=["order_id"], name="order_id_once")]

    def __str__(self) -> str:
        return f"{self.order_id} ({self.status})"

    @property
    def net_amount(self) -> Decimal:
        return self.amount - self.refunded_amount


class OrderState(models.Model):
    """Every distinct state received for an order; (order, status, refunded) is the
    idempotency key of an order event."""

    # Not indexed alone: the unique constraint below starts with the order.
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, related_name="states", db_index=False
    )
    status = models.CharField(max_length=12)
    refunded_amount = models.DecimalField(**MONEY)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order", "status", "refunded_amount"], name="order_state_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.status} {self.refunded_amount}"


class Lot(models.Model):
    class Source(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        REBATE = "rebate", _("Cash-back rebate")
        REFERRAL = "referral", _("Referral")
        ACTIVITY = "activity", _("Activity")
        FEEDBACK = "feedback", _("Feedback")
        ADJUSTMENT = "adjustment", _("Adjustment")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        AVAILABLE = "available", _("Available")
        EXPIRED = "expired", _("Expired")
        VOID = "void", _("Void")

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="lots", db_index=False
    )  # indexed by (member, status, expires_at)
    source = models.CharField(max_length=12, choices=Source.choices)
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="lots"
    )
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    # Pending lots: when they become available (null while the order is not delivered).
    release_at = models.DateTimeField(null=True, blank=True)
    available_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    extended_months = models.PositiveSmallIntegerField(default=0)
    # Points of this lot taken back by refunds (from ``remaining`` or, when already spent,
    # as debt). ``amount - clawed`` is what the lot is still worth to its order.
    clawed = models.BigIntegerField(default=0)
    # The rule that earned it: {"version", "tier", "rate", "multiplier", ...}.
    rule = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["status", "release_at"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["member", "status", "expires_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")),
                name="lot_remaining_within_amount",
            )
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount} {self.status}"


class Entry(models.Model):
    """One append-only change of a member's balances (PTS-7)."""

    class Kind(models.TextChoices):
        EARN = "earn", _("Earned")
        EARN_PENDING = "earn_pending", _("Earned (pending)")
        RELEASE = "release", _("Became available")
        VOID_PENDING = "void_pending", _("Pending points cancelled")
        CLAWBACK = "clawback", _("Clawed back")
        REDEEM = "redeem", _("Redeemed")
        REDEEM_CANCEL = "redeem_cancel", _("Redemption cancelled")
        EXPIRE = "expire", _("Expired")
        ADJUST = "adjust", _("Adjusted")
        DEBT_REPAY = "debt_repay", _("Debt repaid")

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="entries", db_index=False
    )  # indexed by (member, -id)
    kind = models.CharField(max_length=14, choices=Kind.choices)
    points = models.BigIntegerField(default=0)
    pending_delta = models.BigIntegerField(default=0)
    debt_delta = models.BigIntegerField(default=0)
    key = models.CharField(max_length=200)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True)
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, null=True, blank=True)
    # Indexed only where set (see Meta): most entries are earnings, and every order event
    # would otherwise add a NULL to this index.
    redemption = models.ForeignKey(
        "Redemption",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="entries",
        db_index=False,
    )
    reason = models.CharField(max_length=200, blank=True)
    actor_type = models.CharField(max_length=16, default="system")
    actor_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["member", "-id"]),
            models.Index(
                fields=["redemption"],
                name="entry_redemption",
                condition=Q(redemption__isnull=False),
            ),
        ]
        # A constraint, not unique=True: on PostgreSQL the latter adds a second (LIKE) index
        # that every ledger write would maintain for nothing.
        constraints = [models.UniqueConstraint(fields=["key"], name="entry_key_once")]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d}"


class Allocation(models.Model):
    """Points an entry took from (negative) or returned to (positive) one lot."""

    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="allocations")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="allocations")
    points = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["lot"])]

    def __str__(self) -> str:
        return f"entry {self.entry_id} lot {self.lot_id}: {self.points:+d}"


class LoyaltyEvent(models.Model):
    """What feeds the loyalty score: activities joined and referrals made final (TIER-2)."""

    class Kind(models.TextChoices):
        ACTIVITY = "activity", _("Activity")
        REFERRAL = "referral", _("Referral")

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="loyalty_events"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=64, blank=True)
    score = models.PositiveIntegerField()
    occurred_at = models.DateTimeField()
    key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["member", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} +{self.score}"


class TierChange(models.Model):
    """Every tier change with the figures that caused it (TIER-3, TIER-4).

    Notices and webhooks are fanned out from these rows by a task (``notified_at``), so the
    quarterly evaluation can record a million changes set-based and tell members after.
    """

    class Kind(models.TextChoices):
        UPGRADE = "upgrade", _("Upgrade")
        UNDO = "undo", _("Upgrade undone")
        EVALUATION = "evaluation", _("Periodic evaluation")
        MANUAL = "manual", _("Set by staff")

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="tier_changes", db_index=False
    )  # indexed by (member, -changed_at)
    from_tier = models.CharField(max_length=16)
    to_tier = models.CharField(max_length=16)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    reason = models.CharField(max_length=64)
    spend = models.DecimalField(**MONEY)
    orders = models.IntegerField()
    loyalty = models.IntegerField()
    # Not indexed: changes are read by member; an order is never deleted (its lots and
    # entries protect it), so SET_NULL never has to find them.
    order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, db_index=False
    )
    program_version = models.PositiveIntegerField()
    key = models.CharField(max_length=200, null=True, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["member", "-changed_at"]),
            models.Index(
                fields=["changed_at"], name="tierchange_unnotified", condition=Q(notified_at=None)
            ),
        ]
        constraints = [models.UniqueConstraint(fields=["key"], name="tierchange_key_once")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_tier}->{self.to_tier}"


class Reward(models.Model):
    """An item of the rewards catalog (PTS-4)."""

    class Kind(models.TextChoices):
        COUPON = "coupon", _("Coupon")
        VOUCHER = "voucher", _("Voucher")
        TICKET = "ticket", _("Ticket")
        PRIVILEGE = "privilege", _("Privilege")

    class Period(models.TextChoices):
        DAY = "day", _("Per day")
        MONTH = "month", _("Per month")
        YEAR = "year", _("Per year")
        EVER = "ever", _("In total")

    code = models.SlugField(max_length=48, unique=True)
    name = models.CharField(max_length=100)
    name_en = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.COUPON)
    cost_points = models.PositiveIntegerField()
    # None: unlimited. Decremented under a row lock; never below zero.
    stock = models.PositiveIntegerField(null=True, blank=True)
    per_member_limit = models.PositiveIntegerField(null=True, blank=True)
    limit_period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    min_tier = models.CharField(max_length=16, blank=True)
    value = models.DecimalField(**MONEY, default=Decimal("0"))
    min_spend = models.DecimalField(**MONEY, default=Decimal("0"))
    valid_days = models.PositiveIntegerField(default=30)
    active = models.BooleanField(default=True)
    available_from = models.DateTimeField(null=True, blank=True)
    available_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["cost_points", "code"]

    def __str__(self) -> str:
        return self.code


class Redemption(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        CANCELLED = "cancelled", _("Cancelled")

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="redemptions"
    )
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="redemptions")
    quantity = models.PositiveIntegerField()
    points = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["member", "reward", "created_at"])]

    def __str__(self) -> str:
        return f"{self.reward_id} x{self.quantity} ({self.status})"


class Coupon(models.Model):
    """A single-use coupon or voucher (BEN-1)."""

    class Source(models.TextChoices):
        REDEMPTION = "redemption", _("Redemption")
        BIRTHDAY = "birthday", _("Birthday")
        CAMPAIGN = "campaign", _("Campaign")
        COMPENSATION = "compensation", _("Compensation")

    class Status(models.TextChoices):
        ISSUED = "issued", _("Issued")
        USED = "used", _("Used")
        VOID = "void", _("Void")

    code = models.CharField(max_length=16, unique=True)
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="coupons")
    source = models.CharField(max_length=12, choices=Source.choices)
    redemption = models.ForeignKey(
        Redemption, on_delete=models.PROTECT, null=True, blank=True, related_name="coupons"
    )
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, null=True, blank=True)
    value = models.DecimalField(**MONEY)
    min_spend = models.DecimalField(**MONEY, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="CNY")
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ISSUED)
    used_order_id = models.CharField(max_length=64, blank=True)
    used_amount = models.DecimalField(**MONEY, null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    # Issue-once key for coupons not issued by a request (``birthday:<member>:<year>``).
    key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["member", "status", "valid_until"])]

    def __str__(self) -> str:
        return self.code


class ExpiryReminder(models.Model):
    """One reminder per member per stage per expiry date (PTS-6)."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+")
    stage = models.PositiveSmallIntegerField()  # days before expiry
    expires_on = models.DateField()
    points = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "stage", "expires_on"], name="expiry_reminder_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.stage}d before {self.expires_on}"


class JobRun(models.Model):
    """Progress of a batch job for one as-of date, so a rerun resumes where it stopped and
    a finished run is not repeated (OPS-2)."""

    job = models.CharField(max_length=48)
    as_of = models.DateField()
    cursor = models.BigIntegerField(default=0)  # last member id fully processed
    done = models.BooleanField(default=False)
    counts = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "as_of"], name="job_run_once")]

    def __str__(self) -> str:
        return f"{self.job} {self.as_of}"
