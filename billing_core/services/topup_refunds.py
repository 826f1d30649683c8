"""Refunds of top-ups back to the customer's card or account, through Stripe, two-phase.

Phase one (one transaction, balance row locked): check the amount against what was paid and not yet
refunded (or being refunded) and against the available balance, work out the bonus to take back in
proportion (:func:`~billing_core.domain.bonus.bonus_taken_back`, the rule lost disputes use too), write
a pending refund row and hold the total on the balance (``reserved``), so nothing else can spend it
while Stripe works. Phase two calls Stripe with the row's idempotency key. Phase
three settles: ledger entries (``refund`` for the money, ``reversal`` for the bonus), the top-up's status
and refunded amount, and the hold released; or, if Stripe refused, only the hold released.
``record_stripe_refund_in`` records a refund Stripe reports inside the webhook inbox's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from billing_core.db.database import inserted_id
from billing_core.db.ledger import LockedBalance, lock_balance, move_balance, post_entry
from billing_core.db.tables import topup_refunds, topups
from billing_core.domain.bonus import bonus_taken_back
from billing_core.errors import (
    CurrencyMismatch,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidTopupState,
    NotFound,
    PaymentError,
    RefundExceedsCharge,
    StripeConfigurationError,
    StripeRateLimited,
    StripeUnavailable,
)
from billing_core.money import Money
from billing_core.ports import PaymentGateway, RefundView
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext
from billing_core.services.topups import CREDITED, Topup, TopupService


@dataclass(frozen=True, slots=True)
class TopupRefund:
    id: int
    topup_id: int
    company_id: int
    amount: Money
    bonus_reversed: Money
    status: str  # pending | succeeded | failed
    source: str  # ours | stripe_dashboard
    reason: str
    actor: str
    stripe_refund_id: str | None
    failure_reason: str | None

    @classmethod
    def from_row(cls, row: Any) -> TopupRefund:
        currency = row["currency"]
        return cls(
            id=row["id"],
            topup_id=row["topup_id"],
            company_id=row["company_id"],
            amount=Money(row["amount"], currency),
            bonus_reversed=Money(row["bonus_reversed"], currency),
            status=row["status"],
            source=row["source"],
            reason=row["reason"],
            actor=row["actor"],
            stripe_refund_id=row["stripe_refund_id"],
            failure_reason=row["failure_reason"],
        )

    @property
    def balance_debit(self) -> int:
        return self.amount.cents + self.bonus_reversed.cents

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topup_id": self.topup_id,
            "company_id": self.company_id,
            "amount": self.amount.as_json(),
            "bonus_reversed": self.bonus_reversed.as_json(),
            "status": self.status,
            "source": self.source,
            "reason": self.reason,
            "actor": self.actor,
            "stripe_refund_id": self.stripe_refund_id,
            "failure_reason": self.failure_reason,
        }


class TopupRefundService:
    def __init__(self, ctx: ServiceContext, gateway: PaymentGateway | None, topups: TopupService) -> None:
        self._ctx = ctx
        self._stripe = gateway
        self._topups = topups
        # called in the settling transaction of a refund (credit notes register here): (conn, refund, topup)
        self.after_refund: list[Callable[[Connection, int, int], None]] = []

    def refund(
        self,
        *,
        topup_id: int,
        amount: Money | None,
        reason: str,
        actor: str,
        idempotency_key: str,
    ) -> TopupRefund:
        """Refund (part of) a Stripe top-up to the customer; ``amount=None`` refunds what is left."""
        reason = validation.text(reason, "reason")
        actor = validation.text(actor, "actor", max_length=200)
        key = "topup_refund:" + validation.identifier(idempotency_key, "idempotency key", max_length=170)
        if amount is not None:
            validation.positive(amount, "refund amount")
        pending = self._ctx.db.write(lambda conn: self._open(conn, topup_id, amount, reason, actor, key))
        if pending.status != "pending":
            return pending
        return self.run(pending)

    def run(self, pending: TopupRefund) -> TopupRefund:
        """Phase two and three (also used by the reconciler for refunds left pending)."""
        if self._stripe is None:
            raise StripeConfigurationError("Stripe is not configured (STRIPE_SECRET); top-up refunds go through it")
        topup = self._topups.get(pending.topup_id)
        try:
            if pending.stripe_refund_id:
                view = self._stripe.retrieve_refund(pending.stripe_refund_id)
            else:
                assert topup.stripe_payment_intent_id is not None
                view = self._stripe.create_refund(
                    payment_intent=topup.stripe_payment_intent_id,
                    amount=pending.amount.cents,
                    metadata={"topup_id": str(topup.id), "topup_refund_id": str(pending.id)},
                    idempotency_key=f"topup_refund:{pending.id}",
                )
        except (StripeUnavailable, StripeRateLimited):
            return pending  # unknown outcome: stays pending and held; `billing reconcile` finishes it
        except PaymentError as error:
            message = error.message
            return self._ctx.db.write(lambda conn: self._close_failed(conn, pending.id, message))
        return self.record(pending.id, view)

    def record(self, refund_id: int, view: RefundView) -> TopupRefund:
        if view.status == "succeeded":
            return self._ctx.db.write(lambda conn: self._close_succeeded(conn, refund_id, view.id))
        if view.status in ("failed", "canceled"):
            reason = f"Stripe reports the refund {view.status}: {view.failure_reason or 'no reason given'}"
            return self._ctx.db.write(lambda conn: self._close_failed(conn, refund_id, reason, view.id))
        return self._ctx.db.write(lambda conn: self._note_stripe_id(conn, refund_id, view.id))

    def record_stripe_refund_in(
        self,
        conn: Connection,
        *,
        topup: Topup,
        stripe_refund_id: str,
        amount: int,
        status: str,
        metadata: dict[str, str],
    ) -> str:
        """A refund Stripe reports (``charge.refunded``): ours is settled, one made in the dashboard is debited once.

        Our refunds carry their row id in the metadata, so an event that overtakes our own settle step is
        recognised and never counted twice.
        """
        ours = metadata.get("topup_refund_id")
        if ours and ours.isdigit():
            if status == "succeeded":
                return self._close_succeeded(conn, int(ours), stripe_refund_id).status
            return "pending"
        known = conn.execute(
            select(topup_refunds.c.id).where(topup_refunds.c.stripe_refund_id == stripe_refund_id)
        ).first()
        if known is not None or status != "succeeded":
            return "already recorded" if known is not None else "not final"
        locked = lock_balance(conn, topup.company_id)
        current = TopupService.get_in(conn, topup.id, lock=True)
        cents = min(amount, current.amount.cents - current.refunded.cents)
        if cents <= 0:
            return "nothing left to refund"
        bonus_done = conn.execute(
            select(func.coalesce(func.sum(topup_refunds.c.bonus_reversed), 0)).where(
                topup_refunds.c.topup_id == topup.id, topup_refunds.c.status.in_(("succeeded", "pending"))
            )
        ).scalar_one()
        bonus = bonus_taken_back(
            bonus=current.bonus.cents,
            paid=current.amount.cents,
            returned=cents,
            already_taken=int(bonus_done),
            returned_after=current.refunded.cents + cents,
        )
        now = self._ctx.clock()
        refund_id = inserted_id(
            conn.execute(
                topup_refunds.insert().values(
                    topup_id=topup.id,
                    company_id=topup.company_id,
                    amount=cents,
                    bonus_reversed=bonus,
                    currency=current.amount.currency,
                    status="pending",
                    source="stripe_dashboard",
                    reason="refunded in the Stripe dashboard",
                    actor="stripe",
                    idempotency_key=f"stripe_refund:{stripe_refund_id}",
                    created_at=now,
                    updated_at=now,
                )
            )
        )
        move_balance(conn, locked, amount=0, reserved_delta=cents + bonus, now=now)
        return self._close_succeeded(conn, refund_id, stripe_refund_id).status

    def get(self, refund_id: int) -> TopupRefund:
        return self._ctx.db.read(lambda conn: self._get(conn, refund_id))

    def pending(self, *, older_than: datetime | None = None) -> list[TopupRefund]:
        """Refunds still pending; with ``older_than``, only those untouched since then (left by a crash)."""
        query = select(topup_refunds).where(topup_refunds.c.status == "pending").order_by(topup_refunds.c.id)
        if older_than is not None:
            query = query.where(topup_refunds.c.updated_at <= older_than)
        return self._ctx.db.read(lambda conn: [TopupRefund.from_row(r) for r in conn.execute(query).mappings()])

    # -- phases -----------------------------------------------------------------------------------

    def _open(
        self, conn: Connection, topup_id: int, amount: Money | None, reason: str, actor: str, key: str
    ) -> TopupRefund:
        existing = conn.execute(select(topup_refunds).where(topup_refunds.c.idempotency_key == key)).mappings().first()
        if existing is not None:
            refund = TopupRefund.from_row(existing)
            if refund.topup_id != topup_id or (amount is not None and amount != refund.amount):
                raise IdempotencyKeyReused(key.removeprefix("topup_refund:"))
            return refund
        locked = lock_balance(conn, TopupService.get_in(conn, topup_id).company_id)
        topup = TopupService.get_in(conn, topup_id, lock=True)
        if topup.status not in CREDITED or not topup.stripe_payment_intent_id:
            raise InvalidTopupState(
                f"top-up {topup_id} is {topup.status}"
                f"{'' if topup.stripe_payment_intent_id else ' and was not paid through Stripe'}; "
                "only paid Stripe top-ups can be refunded to the customer"
            )
        if amount is not None and amount.currency != topup.amount.currency:
            raise CurrencyMismatch(topup.amount.currency, amount.currency)
        in_flight, bonus_in_flight = conn.execute(
            select(
                func.coalesce(func.sum(topup_refunds.c.amount), 0),
                func.coalesce(func.sum(topup_refunds.c.bonus_reversed), 0),
            ).where(topup_refunds.c.topup_id == topup_id, topup_refunds.c.status == "pending")
        ).one()
        bonus_done = conn.execute(
            select(func.coalesce(func.sum(topup_refunds.c.bonus_reversed), 0)).where(
                topup_refunds.c.topup_id == topup_id, topup_refunds.c.status == "succeeded"
            )
        ).scalar_one()
        refundable = topup.amount.cents - topup.refunded.cents - int(in_flight)
        cents = refundable if amount is None else amount.cents
        if cents <= 0 or cents > refundable:
            raise RefundExceedsCharge(cents or topup.amount.cents, max(refundable, 0), topup.amount.currency)
        bonus = bonus_taken_back(
            bonus=topup.bonus.cents,
            paid=topup.amount.cents,
            returned=cents,
            already_taken=int(bonus_done) + int(bonus_in_flight),
            returned_after=topup.refunded.cents + int(in_flight) + cents,
        )
        if cents + bonus > locked.available:
            raise InsufficientBalance(topup.company_id, cents + bonus, locked.available, locked.currency)
        now = self._ctx.clock()
        refund_id = inserted_id(
            conn.execute(
                topup_refunds.insert().values(
                    topup_id=topup_id,
                    company_id=topup.company_id,
                    amount=cents,
                    bonus_reversed=bonus,
                    currency=topup.amount.currency,
                    status="pending",
                    source="ours",
                    reason=reason,
                    actor=actor,
                    idempotency_key=key,
                    created_at=now,
                    updated_at=now,
                )
            )
        )
        move_balance(conn, locked, amount=0, reserved_delta=cents + bonus, now=now)  # hold it during phase two
        audit.record(
            conn,
            actor=actor,
            action="topup.refund_requested",
            entity_type="balance_topup",
            entity_id=topup_id,
            company_id=topup.company_id,
            now=now,
            details={"amount": cents, "bonus_reversed": bonus, "reason": reason, "refund_id": refund_id},
        )
        return self._get(conn, refund_id)

    def _release_hold(self, conn: Connection, refund_id: int) -> tuple[TopupRefund, LockedBalance | None]:
        """Lock the balance, then the refund; a pending refund's hold is released (the caller settles it)."""
        locked = lock_balance(conn, self._get(conn, refund_id).company_id)
        refund = self._get(conn, refund_id, lock=True)
        if refund.status != "pending":
            return refund, None
        move_balance(conn, locked, amount=0, reserved_delta=-refund.balance_debit, now=self._ctx.clock())
        return refund, locked

    def _close_succeeded(self, conn: Connection, refund_id: int, stripe_refund_id: str) -> TopupRefund:
        refund, locked = self._release_hold(conn, refund_id)
        if locked is None:
            return refund
        now = self._ctx.clock()
        post_entry(
            conn,
            locked,
            type="refund",
            amount=-refund.amount.cents,
            description=f"Refund of top-up {refund.topup_id} to the customer: {refund.reason}",
            idempotency_key=f"topup_refund:{refund.id}",
            reference_type="topup_refund",
            reference_id=str(refund.id),
            actor=refund.actor,
            now=now,
        )
        if refund.bonus_reversed.cents:
            post_entry(
                conn,
                locked,
                type="reversal",
                amount=-refund.bonus_reversed.cents,
                description=f"Bonus taken back with the refund of top-up {refund.topup_id}",
                idempotency_key=f"topup_refund:{refund.id}:bonus",
                reference_type="topup_refund",
                reference_id=str(refund.id),
                actor=refund.actor,
                now=now,
            )
        self._mark_topup_refunded(conn, refund.topup_id, refund.amount.cents, now)
        conn.execute(
            update(topup_refunds)
            .where(topup_refunds.c.id == refund_id)
            .values(status="succeeded", stripe_refund_id=stripe_refund_id, updated_at=now)
        )
        for hook in self.after_refund:
            hook(conn, refund_id, refund.topup_id)
        return self._get(conn, refund_id)

    def _close_failed(
        self, conn: Connection, refund_id: int, reason: str, stripe_refund_id: str | None = None
    ) -> TopupRefund:
        refund, locked = self._release_hold(conn, refund_id)
        if locked is None:
            return refund
        now = self._ctx.clock()
        values: dict[str, Any] = {"status": "failed", "failure_reason": reason[:500], "updated_at": now}
        if stripe_refund_id:
            values["stripe_refund_id"] = stripe_refund_id
        conn.execute(update(topup_refunds).where(topup_refunds.c.id == refund_id).values(**values))
        return self._get(conn, refund_id)

    def _note_stripe_id(self, conn: Connection, refund_id: int, stripe_refund_id: str) -> TopupRefund:
        conn.execute(
            update(topup_refunds)
            .where(topup_refunds.c.id == refund_id, topup_refunds.c.status == "pending")
            .values(stripe_refund_id=stripe_refund_id, updated_at=self._ctx.clock())
        )
        return self._get(conn, refund_id)

    def _mark_topup_refunded(self, conn: Connection, topup_id: int, cents: int, now: Any) -> None:
        topup = TopupService.get_in(conn, topup_id, lock=True)
        refunded = topup.refunded.cents + cents
        status = "refunded" if refunded >= topup.amount.cents else "partially_refunded"
        conn.execute(
            update(topups)
            .where(topups.c.id == topup_id)
            .values(refunded_amount=refunded, status=status, updated_at=now)
        )

    @staticmethod
    def _get(conn: Connection, refund_id: int, *, lock: bool = False) -> TopupRefund:
        query = select(topup_refunds).where(topup_refunds.c.id == refund_id)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is None:
            raise NotFound(f"top-up refund {refund_id} does not exist")
        return TopupRefund.from_row(row)
