"""Property-based tests of the points ledger (PTS-3, PTS-5, PTS-7): random interleavings.

A hypothesis state machine drives the ledger with random sequences of earning (available
or pending), releasing, spending, cancelling a spend, refunding (full or partial, pending or
available, before or after the points were spent), extending, expiring and moving time, and
after every step checks:

- ``verify_ledger()``: available == sum of the available lots' remaining == sum of the
  entries (the same for pending and debt), every lot within 0..amount and equal to its
  amount plus its allocations, the points of every fully refunded order net to zero;
- a model kept beside the ledger: each member's available, pending and debt are what the
  operations so far should have made them, and never negative;
- spending takes the lots nearest to expiry first; a refused spend changes nothing; a
  repeated idempotency key is refused by the database and changes nothing.

Runs are derandomised (the same examples on every run, no example database) so CI is
deterministic, on SQLite and PostgreSQL alike. Every example runs in a transaction that is
rolled back at its end.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from patron.core.audit import Actor
from patron.core.exceptions import PatronError
from patron.loyalty import jobs, ledger
from patron.loyalty import rules as program
from patron.loyalty.ledger import Credit, InsufficientPoints
from patron.loyalty.models import Account, Entry, Lot, Order, Reward
from patron.loyalty.services import orders, redemptions
from patron.loyalty.services import points as staff_points
from patron.loyalty.tests.helpers import LEDGER_MODELS, NOW, counts, make_member
from patron.loyalty.verify import verify_ledger
from patron.members.models import Member

SYSTEM = Actor.system()
PROFILE = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,  # same examples every run; no example database
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def snapshot() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in LEDGER_MODELS}


class LedgerMachine(RuleBasedStateMachine):
    """The ledger primitives under random interleavings, with a model beside them."""

    def __init__(self) -> None:
        super().__init__()
        # One example, one transaction, rolled back in teardown: examples do not see each
        # other's rows, and the test's own database stays clean.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = NOW
        self.rules = program.current()
        self.members: list[int] = []
        self.model: dict[int, dict[str, int]] = {}
        self.spends: list[int] = []  # entry ids of spends not yet restored
        self.seq = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers --------------------------------------------------------------------------

    def key(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}:{self.seq}"

    def step(self):
        """Run one ledger write at the machine's time, in its own (nested) transaction."""
        return time_machine.travel(self.now, tick=False)

    def lots(self, **filters) -> list[Lot]:
        return list(Lot.objects.filter(member_id__in=self.members, **filters).order_by("id"))

    def usable(self, member_id: int) -> int:
        return sum(
            lot.remaining
            for lot in self.lots(member_id=member_id, status="available", expires_at__gt=self.now)
        )

    # --- set-up ---------------------------------------------------------------------------

    @initialize()
    def members_with_accounts(self) -> None:
        with self.step():
            for _ in range(2):
                member = make_member()
                with transaction.atomic():
                    ledger.lock_account(member.pk)
                self.members.append(member.pk)
                self.model[member.pk] = {"available": 0, "pending": 0, "debt": 0}

    # --- time -----------------------------------------------------------------------------

    @rule(days=st.integers(0, 40) | st.integers(300, 400), hours=st.integers(0, 23))
    def time_passes(self, days: int, hours: int) -> None:
        self.now += dt.timedelta(days=days, hours=hours)

    # --- earning --------------------------------------------------------------------------

    @rule(who=st.integers(0, 1), points=st.integers(1, 500))
    def earn_available(self, who: int, points: int) -> None:
        member_id = self.members[who]
        with self.step(), transaction.atomic():
            account = ledger.lock_account(member_id)
            ledger.credit(
                account,
                Credit(points=points, source="activity", key=self.key("earn")),
                rules=self.rules,
                actor=SYSTEM,
            )
        model = self.model[member_id]
        repaid = min(model["debt"], points)
        model["debt"] -= repaid
        model["available"] += points - repaid

    @rule(who=st.integers(0, 1), points=st.integers(1, 500), window_closed=st.booleans())
    def earn_purchase(self, who: int, points: int, window_closed: bool) -> None:
        """An order's points: pending until its return window closes, or (an order whose
        window already closed) available at once."""
        member_id = self.members[who]
        with self.step(), transaction.atomic():
            account = ledger.lock_account(member_id)
            self.seq += 1
            order = Order.objects.create(
                order_id=f"o-{self.seq}",
                member_id=member_id,
                amount=Decimal(points),
                category="ticket",
                status=Order.Status.PAID,
                paid_at=self.now,
                tier_at_paid="regular",
            )
            ledger.credit(
                account,
                Credit(
                    points=points,
                    source="purchase",
                    key=f"order:{order.order_id}:paid",
                    pending=not window_closed,
                    release_at=self.now + dt.timedelta(days=self.rules.return_window_days),
                    order_id=order.pk,
                ),
                rules=self.rules,
                actor=SYSTEM,
            )
        model = self.model[member_id]
        if window_closed:
            repaid = min(model["debt"], points)
            model["debt"] -= repaid
            model["available"] += points - repaid
        else:
            model["pending"] += points

    @precondition(lambda self: Lot.objects.filter(status="pending").exists())
    @rule(data=st.data())
    def release(self, data) -> None:
        lot = data.draw(st.sampled_from(self.lots(status="pending")))
        points = lot.remaining
        with self.step(), transaction.atomic():
            account = ledger.lock_account(lot.member_id)
            ledger.release(account, lot, rules=self.rules, actor=SYSTEM, key=self.key("release"))
        model = self.model[lot.member_id]
        repaid = min(model["debt"], points)
        model["pending"] -= points
        model["debt"] -= repaid
        model["available"] += points - repaid
        lot.refresh_from_db()
        assert lot.status == "available"
        assert ledger.last_usable_day(lot.expires_at, self.rules) == ledger.add_months(
            ledger.local_date(self.now, self.rules), self.rules.expiry_months
        )

    # --- spending -------------------------------------------------------------------------

    @rule(who=st.integers(0, 1), data=st.data(), too_much=st.booleans())
    def spend(self, who: int, data, too_much: bool) -> None:
        """Spend some of what is usable, or (refused) more than that."""
        member_id = self.members[who]
        model = self.model[member_id]
        usable = self.usable(member_id)
        if too_much or not usable:
            points = data.draw(st.integers(usable + 1, usable + 100))
        else:
            points = data.draw(st.integers(1, usable))
        before = snapshot()
        try:
            with self.step(), transaction.atomic():
                account = ledger.lock_account(member_id)
                entry = ledger.spend(account, points, key=self.key("spend"), actor=SYSTEM)
        except InsufficientPoints:
            assert points > min(usable, model["available"])
            assert snapshot() == before  # a refused spend writes nothing
            return
        assert points <= usable <= model["available"]
        model["available"] -= points
        self.spends.append(entry.pk)
        # Nearest expiry first: every usable lot expiring before the last lot taken from
        # was emptied by this spend.
        taken = {a.lot_id: -a.points for a in entry.allocations.all()}
        assert sum(taken.values()) == points
        last = max(Lot.objects.filter(pk__in=taken).values_list("expires_at", "id"))
        for lot in self.lots(member_id=member_id, status="available", expires_at__gt=self.now):
            if (lot.expires_at, lot.pk) < last:
                assert lot.remaining == 0, (lot.pk, taken)

    @precondition(lambda self: bool(self.spends))
    @rule(data=st.data())
    def cancel_spend(self, data) -> None:
        entry = Entry.objects.get(pk=data.draw(st.sampled_from(self.spends)))
        back = sum(
            -a.points
            for a in entry.allocations.select_related("lot")
            if a.lot.status == "available" and a.lot.expires_at > self.now
        )
        with self.step(), transaction.atomic():
            account = ledger.lock_account(entry.member_id)
            restored = ledger.restore(account, entry, key=self.key("restore"), actor=SYSTEM)
        self.spends.remove(entry.pk)
        assert restored.points == back
        self.model[entry.member_id]["available"] += back

    # --- refunds --------------------------------------------------------------------------

    @precondition(
        lambda self: Lot.objects.filter(
            status__in=("pending", "available"), order__isnull=False
        ).exists()
    )
    @rule(data=st.data(), full=st.booleans(), spent_first=st.booleans())
    def refund(self, data, full: bool, spent_first: bool) -> None:
        """Refund (part of) an order whose points are pending, available or already spent:
        ``spent_first`` prefers a lot that was spent from, where the refund makes debt."""
        candidates = [
            lot
            for lot in self.lots(status__in=("pending", "available"), order__isnull=False)
            if lot.amount > lot.clawed
        ]
        spent = [lot for lot in candidates if lot.remaining < lot.amount - lot.clawed]
        if spent_first and spent:
            candidates = spent
        if not candidates:
            return
        lot = data.draw(st.sampled_from(candidates))
        left = lot.amount - lot.clawed
        points = left if full else data.draw(st.integers(1, left))
        model = self.model[lot.member_id]
        was_pending, remaining = lot.status == "pending", lot.remaining
        with self.step(), transaction.atomic():
            account = ledger.lock_account(lot.member_id)
            ledger.take_back(
                account, lot, points, key=self.key("refund"), actor=SYSTEM, reason="refund"
            )
            if points == left:  # the whole order is refunded now
                Order.objects.filter(pk=lot.order_id).update(
                    status=Order.Status.REFUNDED, refunded_amount=Decimal(lot.amount)
                )
        if was_pending:
            model["pending"] -= points
        else:
            take = min(points, remaining)
            model["available"] -= take
            model["debt"] += points - take

    # --- expiry ---------------------------------------------------------------------------

    @precondition(
        lambda self: Lot.objects.filter(status="available", expires_at__isnull=False).exists()
    )
    @rule(data=st.data(), months=st.integers(1, 6))
    def extend(self, data, months: int) -> None:
        lot = data.draw(st.sampled_from(self.lots(status="available")))
        last_day = ledger.last_usable_day(lot.expires_at, self.rules)
        with self.step(), transaction.atomic():
            ledger.lock_account(lot.member_id)
            ledger.extend(lot, months, rules=self.rules)
        lot.refresh_from_db()
        assert ledger.last_usable_day(lot.expires_at, self.rules) == ledger.add_months(
            last_day, months
        )

    # --- idempotency ----------------------------------------------------------------------

    @precondition(lambda self: Entry.objects.exists())
    @rule(data=st.data())
    def replayed_key_is_refused(self, data) -> None:
        keys = list(
            Entry.objects.filter(member_id__in=self.members).order_by("id").values_list("key")
        )
        (key,) = data.draw(st.sampled_from(keys))
        before = snapshot()
        with pytest.raises(IntegrityError), self.step(), transaction.atomic():
            account = ledger.lock_account(self.members[0])
            ledger.credit(
                account,
                Credit(points=1, source="activity", key=key),
                rules=self.rules,
                actor=SYSTEM,
            )
        assert snapshot() == before

    # --- after every step -----------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        if not self.members:
            return
        report = verify_ledger()
        assert report.ok, report.problems
        for account in Account.objects.filter(pk__in=self.members):
            expected = self.model[account.pk]
            actual = {"available": account.available, "pending": account.pending}
            actual["debt"] = account.debt
            assert actual == expected, (account.pk, actual, expected)
            assert min(actual.values()) >= 0


@pytest.mark.django_db
def test_pts7_ledger_invariants_hold_under_random_interleavings():
    run_state_machine_as_test(LedgerMachine, settings=PROFILE)


# --- the services over the ledger ------------------------------------------------------------

SERVICE_PROFILE = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CENT = Decimal("0.01")


def everything() -> dict[str, int]:
    from patron.core.models import AuditEvent

    return counts(AuditEvent)


class ServiceMachine(RuleBasedStateMachine):
    """The same invariants with the services doing the writes: order events (one by one and
    in batches), the release and expiry jobs, redemptions and their cancellation, staff
    adjustments and expiry extensions, retried and out-of-order order states."""

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = NOW
        self.rules = program.current()
        self.members: list[Member] = []
        self.orders: dict[str, dict] = {}  # order id -> the last state sent
        self.redemptions: list[int] = []
        self.seq = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def key(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq}"

    def at_now(self):
        return time_machine.travel(self.now, tick=False)

    def send(self, state: dict):
        with self.at_now():
            return orders.apply_order(dict(state), actor=SYSTEM)

    def open_orders(self, *statuses: str) -> list[str]:
        return sorted(k for k, s in self.orders.items() if s["status"] in statuses)

    @initialize()
    def members_and_a_reward(self) -> None:
        with self.at_now():
            self.members = [make_member(), make_member()]
            Reward.objects.create(code="film", name="电影票", cost_points=40, value=10)

    @rule(days=st.integers(0, 10) | st.integers(20, 40) | st.integers(300, 400))
    def time_passes(self, days: int) -> None:
        self.now += dt.timedelta(days=days, hours=days % 7)

    # --- orders ---------------------------------------------------------------------------

    @rule(
        who=st.integers(0, 1),
        amounts=st.lists(st.integers(1, 300_000), min_size=1, max_size=4),
        category=st.sampled_from(["ticket", "concession", "merchandise"]),
        batch=st.booleans(),
        days_ago=st.sampled_from([0, 0, 3, 10, 30]),
    )
    def pay(self, who: int, amounts: list[int], category: str, batch: bool, days_ago: int) -> None:
        """New paid orders (amounts in cents), one by one or through ``apply_orders``; some
        paid a while ago (the platform tells late)."""
        states = []
        for cents in amounts:
            self.seq += 1
            states.append(
                {
                    "order_id": f"o{self.seq}",
                    "member": self.members[who].number,
                    "amount": str(Decimal(cents) * CENT),
                    "currency": "CNY",
                    "category": category,
                    "status": "paid",
                    "paid_at": (self.now - dt.timedelta(days=days_ago)).isoformat(),
                }
            )
        if batch:
            with self.at_now():
                results = orders.apply_orders([dict(s) for s in states], actor=SYSTEM)
            assert not [r for r in results if isinstance(r, Exception)], results
        else:
            for state in states:
                self.send(state)
        for state in states:
            self.orders[state["order_id"]] = state

    @precondition(lambda self: any(s["status"] == "paid" for s in self.orders.values()))
    @rule(data=st.data(), late=st.booleans())
    def deliver(self, data, late: bool) -> None:
        """Delivered now, or (told late) when it was paid: its window may be closed already."""
        order_id = data.draw(st.sampled_from(self.open_orders("paid")))
        state = {**self.orders[order_id], "status": "delivered"}
        state["delivered_at"] = state["paid_at"] if late else self.now.isoformat()
        self.send(state)
        self.orders[order_id] = state

    @precondition(
        lambda self: any(
            s["status"] in ("paid", "delivered", "refunded") for s in self.orders.values()
        )
    )
    @rule(
        data=st.data(),
        full=st.booleans(),
        after_window=st.booleans(),
        spent_first=st.booleans(),
    )
    def refund(self, data, full: bool, after_window: bool, spent_first: bool) -> None:
        """A full or partial refund (growing), before or after the return window closed
        (``after_window``: delivered if need be, then the window passes), before or after
        the member spent the points (``spent_first``: a staff adjustment takes them all,
        so the refund makes debt)."""
        candidates = [
            k
            for k in self.open_orders("paid", "delivered", "refunded")
            if Decimal(self.orders[k].get("refunded_amount", "0"))
            < Decimal(self.orders[k]["amount"])
        ]
        if not candidates:
            return
        order_id = data.draw(st.sampled_from(candidates))
        state = self.orders[order_id]
        if after_window:
            if state["status"] == "paid":
                state = {**state, "status": "delivered", "delivered_at": self.now.isoformat()}
                self.send(state)
                self.orders[order_id] = state
            self.now += dt.timedelta(days=self.rules.return_window_days + 1)
        if spent_first:
            member = next(m for m in self.members if m.number == state["member"])
            usable = sum(
                Lot.objects.filter(
                    member=member, status="available", expires_at__gt=self.now
                ).values_list("remaining", flat=True)
            )
            if usable:
                with self.at_now():
                    staff_points.adjust(
                        member,
                        -usable,
                        reason="property test",
                        key=self.key("spend"),
                        actor=Actor("staff", "1"),
                    )
        amount, done = Decimal(state["amount"]), Decimal(state.get("refunded_amount", "0"))
        left = int((amount - done) / CENT)
        refunded = amount if full else done + Decimal(data.draw(st.integers(1, left))) * CENT
        state = {**state, "status": "refunded", "refunded_amount": str(refunded)}
        self.send(state)
        self.orders[order_id] = state

    @precondition(lambda self: any(s["status"] == "paid" for s in self.orders.values()))
    @rule(data=st.data())
    def cancel(self, data) -> None:
        order_id = data.draw(st.sampled_from(self.open_orders("paid")))
        state = {**self.orders[order_id], "status": "cancelled"}
        self.send(state)
        self.orders[order_id] = state

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data(), batch=st.booleans())
    def retried_state_changes_nothing(self, data, batch: bool) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        before = everything()
        if batch:
            with self.at_now():
                (result,) = orders.apply_orders([dict(self.orders[order_id])], actor=SYSTEM)
        else:
            result = self.send(self.orders[order_id])
        assert not result.changed
        assert everything() == before

    @precondition(lambda self: any(s["status"] != "paid" for s in self.orders.values()))
    @rule(data=st.data())
    def older_state_is_refused(self, data) -> None:
        order_id = data.draw(
            st.sampled_from(self.open_orders("delivered", "refunded", "cancelled"))
        )
        state = self.orders[order_id]
        older = {k: v for k, v in state.items() if k not in ("delivered_at", "refunded_amount")}
        older["status"] = "paid"
        before = everything()
        with pytest.raises(PatronError) as refused:
            self.send(older)
        assert refused.value.status == 409
        assert everything() == before

    # --- jobs -----------------------------------------------------------------------------

    @rule(days=st.sampled_from([0, 1, 8, 30, 366]), which=st.sampled_from(["release", "expire"]))
    def daily_job(self, days: int, which: str) -> None:
        """Time passes, then a daily job runs (as the scheduler would, once per day)."""
        self.now += dt.timedelta(days=days)
        job = jobs.release_pending_points if which == "release" else jobs.expire_points
        with self.at_now():
            job(ledger.local_date(self.now, self.rules))

    # --- spending and staff ---------------------------------------------------------------

    @rule(who=st.integers(0, 1), quantity=st.integers(1, 5))
    def redeem(self, who: int, quantity: int) -> None:
        before = everything()
        try:
            with self.at_now():
                redemption = redemptions.redeem(
                    self.members[who], "film", quantity, key=self.key("r"), actor=SYSTEM
                )
        except PatronError as exc:
            assert exc.code == "insufficient_points", exc
            assert everything() == before
            return
        self.redemptions.append(redemption.pk)

    @precondition(lambda self: bool(self.redemptions))
    @rule(data=st.data())
    def cancel_redemption(self, data) -> None:
        redemption_id = data.draw(st.sampled_from(self.redemptions))
        with self.at_now():
            redemptions.cancel(redemption_id, key=self.key("c"), actor=SYSTEM)
        self.redemptions.remove(redemption_id)

    @rule(who=st.integers(0, 1), points=st.integers(-500, 500).filter(bool))
    def adjust(self, who: int, points: int) -> None:
        before = everything()
        try:
            with self.at_now():
                staff_points.adjust(
                    self.members[who],
                    points,
                    reason="property test",
                    key=self.key("a"),
                    actor=Actor("staff", "1"),
                )
        except PatronError as exc:
            assert exc.code == "insufficient_points", exc
            assert everything() == before

    @rule(who=st.integers(0, 1), months=st.integers(1, 6))
    def extend(self, who: int, months: int) -> None:
        with self.at_now():
            staff_points.extend_expiry(
                self.members[who], months=months, reason="property test", actor=Actor("staff", "1")
            )

    # --- after every step -----------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        if not self.members:
            return
        report = verify_ledger()
        assert report.ok, report.problems
        for account in Account.objects.filter(pk__in=[m.pk for m in self.members]):
            assert min(account.available, account.pending, account.debt) >= 0
        # Every order's lots are worth exactly what its net amount earns under the rule
        # that earned them: nothing left behind by a refund, nothing taken twice.
        for order in Order.objects.filter(order_id__in=self.orders):
            net = Decimal(0) if order.status == "cancelled" else order.net_amount
            for lot in order.lots.all():
                worth = orders.target_points(lot, order.amount, net)
                assert lot.amount - lot.clawed == worth, (order.order_id, lot.pk, worth)
                if lot.status == "pending":
                    assert lot.remaining == worth


@pytest.mark.django_db
def test_pts3_pts7_services_keep_the_ledger_right_under_random_interleavings():
    run_state_machine_as_test(ServiceMachine, settings=SERVICE_PROFILE)
