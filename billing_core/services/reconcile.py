"""``billing reconcile``: finish what a crash left between a Stripe call and its settle step.

Safe at any time and beside everything else: every step asks Stripe for the truth (retrieve by id, or
repeat the call with the same idempotency key) and then applies it through the same idempotent
settle/fail operations the live flows use. Rows younger than ``min_age`` are left to their live flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from billing_core.db.tables import topups
from billing_core.errors import PaymentError
from billing_core.ports import PaymentGateway
from billing_core.services.auto_topup import AutoTopupService
from billing_core.services.context import ServiceContext
from billing_core.services.payments import PaymentService
from billing_core.services.topup_refunds import TopupRefundService
from billing_core.services.topups import Topup, TopupService


@dataclass
class ReconcileReport:
    changes: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"changes": self.changes, "unchanged": self.unchanged, "errors": self.errors}


class ReconcileService:
    def __init__(
        self,
        ctx: ServiceContext,
        gateway: PaymentGateway,
        topups: TopupService,
        payments: PaymentService,
        auto_topup: AutoTopupService,
        refunds: TopupRefundService,
    ) -> None:
        self._ctx = ctx
        self._stripe = gateway
        self._topups = topups
        self._payments = payments
        self._auto_topup = auto_topup
        self._refunds = refunds

    def run(self, *, min_age: timedelta = timedelta(minutes=2)) -> ReconcileReport:
        report = ReconcileReport()
        cutoff = self._ctx.clock() - min_age
        open_topups = self._ctx.db.read(
            lambda conn: [
                Topup.from_row(r)
                for r in conn.execute(
                    select(topups)
                    .where(
                        topups.c.status.in_(("pending", "processing")),
                        topups.c.updated_at <= cutoff,
                        topups.c.source.in_(("checkout", "payment_intent", "auto_topup")),
                    )
                    .order_by(topups.c.id)
                ).mappings()
            ]
        )
        for topup in open_topups:
            self._step(report, f"top-up {topup.id}", topup.status, lambda t=topup: self._topup(t))
        for refund in self._refunds.pending(older_than=cutoff):
            self._step(
                report, f"top-up refund {refund.id}", refund.status, lambda r=refund: self._refunds.run(r).status
            )
        return report

    def _step(self, report: ReconcileReport, label: str, before: str, action: Any) -> None:
        try:
            after = action()
        except PaymentError as error:
            report.errors.append(f"{label}: {error.message}")
            return
        if after == before:
            report.unchanged += 1
        else:
            report.changes.append(f"{label}: {before} -> {after}")

    def _topup(self, topup: Topup) -> str:
        if topup.source == "auto_topup":
            outcome = self._auto_topup.run_attempt(topup)
            return outcome.topup.status if outcome.topup else topup.status
        if topup.stripe_payment_method_id:  # a saved-method payment: finish it from where it stopped
            return self._payments.resume_saved_method_payment(topup, off_session=True).topup.status
        if topup.stripe_payment_intent_id:
            intent = self._stripe.retrieve_payment_intent(topup.stripe_payment_intent_id)
            return self._payments.record_intent(topup.id, intent).topup.status
        if topup.stripe_checkout_session_id:
            session = self._stripe.retrieve_checkout_session(topup.stripe_checkout_session_id)
            if session.status == "expired":
                return self._topups.cancel(topup.id, reason="the Checkout Session expired").status
            if session.payment_intent:
                intent = self._stripe.retrieve_payment_intent(session.payment_intent)
                return self._payments.record_intent(topup.id, intent).topup.status
        return topup.status
