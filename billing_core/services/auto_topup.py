"""Auto top-up: charge the saved payment method when the balance falls below the company's threshold.

Two-phase: the pending attempt row is committed first under the balance row lock (it counts toward the
limits and blocks a second attempt), Stripe is called outside any lock with keys derived from the
attempt, and the attempt is settled or failed in a second transaction. After ``max_failures``
consecutive failures auto top-up switches itself off and says so. :class:`AutoTopupRecorder`'s
``record_success_in`` and ``record_failure_in`` settle an attempt inside a caller's transaction (the
second phase here, or a webhook that reports the outcome).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from billing_core.db.database import inserted_id
from billing_core.db.ledger import lock_balance, locking_select, write_guard
from billing_core.db.tables import balances, companies, topups
from billing_core.domain.auto_topup import AutoTopupSnapshot, decide
from billing_core.errors import PaymentError, StripeRateLimited, StripeUnavailable
from billing_core.ports import PaymentGateway, PaymentIntentView
from billing_core.services import notifications
from billing_core.services.context import ServiceContext
from billing_core.services.payments import PaymentService, describe_failure
from billing_core.services.topups import Topup, TopupService

AUTH_REQUIRED_REASON = (
    "the bank asked the cardholder to authenticate (3-D Secure), which an automatic top-up cannot do; "
    "please update the payment method for auto top-up"
)

LOCK_FOR_AUTO_TOPUP = locking_select(
    balances.c.auto_topup_enabled,
    balances.c.auto_topup_threshold,
    balances.c.auto_topup_amount,
    balances.c.auto_topup_daily_limit,
    balances.c.auto_topup_monthly_limit,
    balances.c.stripe_payment_method_id,
    balances.c.auto_topup_consecutive_failures,
)


@dataclass(frozen=True, slots=True)
class AutoTopupOutcome:
    company_id: int
    triggered: bool
    reason: str
    topup: Topup | None = None
    disabled: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "triggered": self.triggered,
            "reason": self.reason,
            "topup": self.topup.as_json() if self.topup else None,
            "auto_topup_disabled": self.disabled,
        }


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class AutoTopupRecorder:
    """Records the outcome of an auto top-up inside a transaction; needs no Stripe (webhooks use it too)."""

    def __init__(self, ctx: ServiceContext, topups: TopupService) -> None:
        self._ctx = ctx
        self._topups = topups

    def record_success_in(self, conn: Connection, topup: Topup, intent: PaymentIntentView) -> AutoTopupOutcome:
        result = self._topups.settle_in(
            conn, topup.id, stripe_payment_intent_id=intent.id, stripe_charge_id=intent.latest_charge
        )
        now = self._ctx.clock()
        conn.execute(
            update(balances)
            .where(balances.c.company_id == topup.company_id)
            .values(auto_topup_consecutive_failures=0, updated_at=now)
        )
        if result.credited_now:
            notifications.enqueue(
                conn,
                kind="auto_topup_succeeded",
                recipient="company",
                company_id=topup.company_id,
                now=now,
                payload={
                    "topup_id": topup.id,
                    "amount": topup.amount.as_json(),
                    "balance_after": result.balance_after.as_json(),
                },
            )
        return AutoTopupOutcome(topup.company_id, True, "auto top-up succeeded", result.topup)

    def record_failure_in(
        self, conn: Connection, topup: Topup, reason: str, code: str | None, *, payment_intent: str | None = None
    ) -> AutoTopupOutcome:
        locked = lock_balance(conn, topup.company_id, LOCK_FOR_AUTO_TOPUP)
        current, changed = self._topups.fail_in(
            conn, topup.id, reason=reason, code=code, stripe_payment_intent_id=payment_intent
        )
        if not changed:
            return AutoTopupOutcome(topup.company_id, True, current.failure_reason or reason, current)
        failures = int(locked.extra["auto_topup_consecutive_failures"]) + 1
        limit = self._ctx.settings.auto_topup_max_failures
        disable = failures >= limit and bool(locked.extra["auto_topup_enabled"])
        now = self._ctx.clock()
        values: dict[str, Any] = {"auto_topup_consecutive_failures": failures, "updated_at": now}
        if disable:
            values.update(
                auto_topup_enabled=False,
                auto_topup_disabled_reason=f"switched off after {failures} failed auto top-ups in a row: {reason}",
            )
        conn.execute(update(balances).where(balances.c.company_id == topup.company_id).values(**values))
        payload = {
            "topup_id": topup.id,
            "amount": topup.amount.as_json(),
            "reason": reason,
            "code": code,
            "consecutive_failures": failures,
        }
        notifications.enqueue(
            conn, kind="auto_topup_failed", recipient="company", company_id=topup.company_id, now=now, payload=payload
        )
        notifications.enqueue(
            conn, kind="payment_failed", recipient="admin", company_id=topup.company_id, now=now, payload=payload
        )
        if disable:
            notifications.enqueue(
                conn,
                kind="auto_topup_disabled",
                recipient="company",
                company_id=topup.company_id,
                now=now,
                payload=payload,
            )
        message = f"{reason}; auto top-up switched off after {failures} failures" if disable else reason
        return AutoTopupOutcome(topup.company_id, True, message, current, disabled=disable)


class AutoTopupService:
    def __init__(
        self, ctx: ServiceContext, gateway: PaymentGateway, payments: PaymentService, topups: TopupService
    ) -> None:
        self._ctx = ctx
        self._stripe = gateway
        self._payments = payments
        self._topups = topups
        self.recorder = AutoTopupRecorder(ctx, topups)

    def trigger(self, company_id: int) -> AutoTopupOutcome:
        """Check the rules and, if they allow it, charge the saved method once (called after every charge)."""
        attempt = self._ctx.db.write(lambda conn: self._open_attempt(conn, company_id))
        if isinstance(attempt, AutoTopupOutcome):
            return attempt
        return self.run_attempt(attempt)

    def run_attempt(self, topup: Topup) -> AutoTopupOutcome:
        """Phase two, also used by the reconciler: Stripe with the attempt's keys, then record the outcome."""
        try:
            intent = self._charge(topup)
        except (StripeUnavailable, StripeRateLimited) as error:
            # Unknown whether Stripe acted: the attempt stays pending; `billing reconcile` finishes it.
            return AutoTopupOutcome(
                topup.company_id, True, f"left pending for reconciliation: {error.message}", self._topups.get(topup.id)
            )
        except PaymentError as error:
            message, code = error.message, error.code
            return self._ctx.db.write(lambda conn: self.recorder.record_failure_in(conn, topup, message, code))
        return self.record_outcome(topup.id, intent)

    def record_outcome(self, topup_id: int, intent: PaymentIntentView) -> AutoTopupOutcome:
        topup = self._topups.get(topup_id)
        if intent.status == "requires_action" or intent.failure_code == "authentication_required":
            self._cancel_quietly(intent.id)
            return self._ctx.db.write(
                lambda conn: self.recorder.record_failure_in(
                    conn, topup, AUTH_REQUIRED_REASON, "authentication_required", payment_intent=intent.id
                )
            )
        if intent.status in ("requires_payment_method", "canceled") or intent.failure_code:
            return self._ctx.db.write(
                lambda conn: self.recorder.record_failure_in(
                    conn,
                    topup,
                    describe_failure(intent),
                    intent.decline_code or intent.failure_code,
                    payment_intent=intent.id,
                )
            )
        if intent.status == "succeeded":
            return self._ctx.db.write(lambda conn: self.recorder.record_success_in(conn, topup, intent))
        outcome = self._payments.record_intent(topup.id, intent)  # processing (SEPA): credited when confirmed
        return AutoTopupOutcome(topup.company_id, True, f"payment {intent.status}", outcome.topup)

    # -- phase one --------------------------------------------------------------------------------

    def _open_attempt(self, conn: Connection, company_id: int) -> Topup | AutoTopupOutcome:
        locked = lock_balance(conn, company_id, LOCK_FOR_AUTO_TOPUP)
        now = self._ctx.clock()
        month_start = _day_start(now).replace(day=1)
        auto = (topups.c.company_id == company_id) & (topups.c.source == "auto_topup")
        in_flight = conn.execute(
            select(func.count()).where(auto, topups.c.status.in_(("pending", "processing")))
        ).scalar_one()
        attempts_today = conn.execute(
            select(func.count()).where(auto, topups.c.created_at >= _day_start(now))
        ).scalar_one()
        month_total = conn.execute(
            select(func.coalesce(func.sum(topups.c.amount), 0)).where(
                auto,
                topups.c.created_at >= month_start,
                topups.c.status.in_(("pending", "processing", "succeeded", "partially_refunded", "refunded")),
            )
        ).scalar_one()
        billing_enabled = conn.execute(
            select(companies.c.prepaid_billing_enabled).where(companies.c.id == company_id)
        ).scalar_one()
        extra = locked.extra
        monthly = extra["auto_topup_monthly_limit"]
        if monthly is None and self._ctx.settings.auto_topup_monthly_limit is not None:
            monthly = self._ctx.settings.money(self._ctx.settings.auto_topup_monthly_limit, locked.currency).cents
        decision = decide(
            AutoTopupSnapshot(
                globally_enabled=self._ctx.settings.auto_topup_enabled,
                company_enabled=bool(extra["auto_topup_enabled"]),
                billing_enabled=bool(billing_enabled),
                balance=locked.balance,
                threshold=extra["auto_topup_threshold"],
                amount=extra["auto_topup_amount"],
                payment_method=extra["stripe_payment_method_id"],
                in_flight=in_flight > 0,
                attempts_today=attempts_today,
                daily_limit=extra["auto_topup_daily_limit"],
                month_total=int(month_total),
                monthly_limit=monthly,
            )
        )
        if not decision.go:
            return AutoTopupOutcome(company_id, False, decision.reason)
        # one in flight, two a day, the monthly cap: counted above, so the guarding row is written too
        write_guard(conn, locked)
        topup_id = inserted_id(
            conn.execute(
                topups.insert().values(
                    company_id=company_id,
                    amount=extra["auto_topup_amount"],
                    currency=locked.currency,
                    status="pending",
                    source="auto_topup",
                    initiated_by="auto_topup",
                    idempotency_key=f"auto_topup:{uuid.uuid4().hex}",
                    stripe_payment_method_id=extra["stripe_payment_method_id"],
                    created_at=now,
                    updated_at=now,
                )
            )
        )
        return Topup.from_row(conn.execute(select(topups).where(topups.c.id == topup_id)).mappings().one())

    # -- phase two --------------------------------------------------------------------------------

    def _charge(self, topup: Topup) -> PaymentIntentView:
        if topup.stripe_payment_intent_id:
            intent = self._stripe.retrieve_payment_intent(topup.stripe_payment_intent_id)
            if intent.status != "requires_confirmation":
                return intent
        else:
            customer_id = self._payments.ensure_customer(topup.company_id)
            intent = self._stripe.create_payment_intent(
                amount=topup.amount.cents,
                currency=topup.amount.currency,
                customer_id=customer_id,
                metadata={"topup_id": str(topup.id), "company_id": str(topup.company_id), "source": "auto_topup"},
                idempotency_key=f"topup:{topup.id}:payment_intent",
                payment_method=topup.stripe_payment_method_id,
            )
            self._topups.attach_stripe_ids(topup.id, stripe_payment_intent_id=intent.id)
        return self._stripe.confirm_payment_intent(
            intent.id, off_session=True, idempotency_key=f"topup:{topup.id}:confirm"
        )

    def _cancel_quietly(self, intent_id: str) -> None:
        """Leave no half-authenticated intent behind; if Stripe refuses, the intent simply expires."""
        try:
            self._stripe.cancel_payment_intent(intent_id)
        except PaymentError:
            pass

    def due_companies(self) -> list[int]:
        """Companies that look due for an auto top-up (the worker's sweep; :meth:`trigger` re-checks every rule)."""
        if not self._ctx.settings.auto_topup_enabled:
            return []
        in_flight = (
            select(topups.c.id)
            .where(
                topups.c.company_id == balances.c.company_id,
                topups.c.source == "auto_topup",
                topups.c.status.in_(("pending", "processing")),
            )
            .exists()
        )
        query = select(balances.c.company_id).where(
            balances.c.auto_topup_enabled.is_(True),
            balances.c.stripe_payment_method_id.is_not(None),
            balances.c.balance < balances.c.auto_topup_threshold,
            ~in_flight,
        )
        return self._ctx.db.read(lambda conn: list(conn.execute(query).scalars()))
