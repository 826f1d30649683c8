"""Stripe top-ups started by people: customers, saved payment methods, Checkout and API payments.

Two-phase, never holding a database lock across a Stripe call: a pending top-up row is committed first,
Stripe is called with an idempotency key derived from that row, and what Stripe answered is recorded in
a second transaction. Whoever learns of the outcome first (this answer, a webhook, the reconciler)
settles the top-up; the others find it settled. ``forget_payment_method_in`` joins a caller's
transaction (the webhook of a detached method); every public method of :class:`PaymentService` is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from billing_core.db.tables import balances, companies
from billing_core.errors import (
    CompanyNotFound,
    InvalidInput,
    InvalidTopupState,
    PaymentDeclined,
    StripeRequestRejected,
)
from billing_core.money import Money
from billing_core.ports import PaymentGateway, PaymentIntentView, PaymentMethodView
from billing_core.services import audit, notifications, validation
from billing_core.services.context import ServiceContext
from billing_core.services.topups import Topup, TopupService


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    topup: Topup
    url: str

    def as_json(self) -> dict[str, Any]:
        return {"topup": self.topup.as_json(), "checkout_url": self.url}


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What a payment attempt came to: the top-up as now recorded, and Stripe's status."""

    topup: Topup
    stripe_status: str
    client_secret: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"topup": self.topup.as_json(), "stripe_status": self.stripe_status}


@dataclass(frozen=True, slots=True)
class SavedPaymentMethod:
    method: PaymentMethodView
    used_for_auto_topup: bool

    def as_json(self) -> dict[str, Any]:
        return {**self.method.as_json(), "used_for_auto_topup": self.used_for_auto_topup}


def describe_failure(intent: PaymentIntentView) -> str:
    reason = intent.failure_message or "the payment was not completed"
    code = intent.decline_code or intent.failure_code
    return f"{reason} ({code})" if code else reason


def forget_payment_method_in(
    conn: Connection, payment_method_id: str, *, actor: str, now: datetime, company_id: int | None = None
) -> bool:
    """A method is gone (detached here or in Stripe): auto top-up stops using it and says why."""
    query = select(balances.c.company_id).where(balances.c.stripe_payment_method_id == payment_method_id)
    if company_id is not None:
        query = query.where(balances.c.company_id == company_id)
    owners = conn.execute(query).scalars().all()
    for owner in owners:
        conn.execute(
            update(balances)
            .where(balances.c.company_id == owner)
            .values(
                stripe_payment_method_id=None,
                auto_topup_enabled=False,
                updated_at=now,
                auto_topup_disabled_reason="the saved payment method was removed; add a new one to turn "
                "auto top-up back on",
            )
        )
        audit.record(
            conn,
            actor=actor,
            action="auto_topup.payment_method_removed",
            entity_type="company",
            entity_id=owner,
            company_id=owner,
            now=now,
            details={"payment_method": payment_method_id},
        )
        notifications.enqueue(
            conn,
            kind="payment_method_detached",
            recipient="company",
            company_id=owner,
            now=now,
            payload={"payment_method": payment_method_id, "auto_topup_disabled": True},
        )
    return bool(owners)


class PaymentService:
    def __init__(self, ctx: ServiceContext, gateway: PaymentGateway, topups: TopupService) -> None:
        self._ctx = ctx
        self._stripe = gateway
        self._topups = topups

    # -- customers and payment methods ------------------------------------------------------------

    def ensure_customer(self, company_id: int) -> str:
        """The company's Stripe customer, created once (company id in its metadata)."""
        company_id = validation.company_id(company_id)
        row = self._ctx.db.read(lambda conn: self._company(conn, company_id))
        if row.stripe_customer_id:
            return str(row.stripe_customer_id)
        customer_id = self._stripe.create_customer(
            company_id=company_id, name=row.name, email=row.email, idempotency_key=f"customer:{company_id}"
        )

        def work(conn: Connection) -> str:
            conn.execute(
                update(companies)
                .where(companies.c.id == company_id, companies.c.stripe_customer_id.is_(None))
                .values(stripe_customer_id=customer_id, updated_at=self._ctx.clock())
            )
            return str(self._company(conn, company_id).stripe_customer_id)

        return self._ctx.db.write(work)

    def list_payment_methods(self, company_id: int) -> list[SavedPaymentMethod]:
        customer_id = self.ensure_customer(company_id)
        chosen = self._ctx.db.read(lambda conn: self._auto_topup_method(conn, company_id))
        return [SavedPaymentMethod(m, m.id == chosen) for m in self._stripe.list_payment_methods(customer_id)]

    def attach_payment_method(self, company_id: int, payment_method_id: str, *, actor: str) -> PaymentMethodView:
        """Save a payment method (created by Stripe.js or a SetupIntent) on the company's customer."""
        customer_id = self.ensure_customer(company_id)
        method = self._stripe.attach_payment_method(
            validation.identifier(payment_method_id, "payment method"), customer_id
        )
        self._audit(company_id, actor, "payment_method.attached", method.id, {"type": method.type})
        return method

    def use_for_auto_topup(self, company_id: int, payment_method_id: str, *, actor: str) -> PaymentMethodView:
        """Choose the saved method that auto top-up charges; it must belong to the company's customer."""
        customer_id = self.ensure_customer(company_id)
        method = self._owned_method(customer_id, payment_method_id)

        def work(conn: Connection) -> None:
            conn.execute(
                update(balances)
                .where(balances.c.company_id == company_id)
                .values(
                    stripe_payment_method_id=method.id,
                    auto_topup_consecutive_failures=0,
                    auto_topup_disabled_reason=None,
                    updated_at=self._ctx.clock(),
                )
            )
            audit.record(
                conn,
                actor=actor,
                action="auto_topup.payment_method_set",
                entity_type="company",
                entity_id=company_id,
                company_id=company_id,
                now=self._ctx.clock(),
                details={"payment_method": method.id, "type": method.type, "last4": method.last4},
            )

        self._ctx.db.write(work)
        return method

    def detach_payment_method(self, company_id: int, payment_method_id: str, *, actor: str) -> bool:
        """Remove a saved method at Stripe; returns True when auto top-up lost its method because of it."""
        customer_id = self.ensure_customer(company_id)
        method = self._owned_method(customer_id, payment_method_id)
        self._stripe.detach_payment_method(method.id)
        return self.forget_payment_method(method.id, actor=actor, company_id=company_id)

    def forget_payment_method(self, payment_method_id: str, *, actor: str, company_id: int | None = None) -> bool:
        """A method is gone (detached here or in Stripe): auto top-up stops using it and says why."""
        return self._ctx.db.write(
            lambda conn: forget_payment_method_in(
                conn, payment_method_id, actor=actor, now=self._ctx.clock(), company_id=company_id
            )
        )

    # -- payments ---------------------------------------------------------------------------------

    def start_checkout(
        self,
        *,
        company_id: int,
        amount: Money,
        initiated_by: str,
        idempotency_key: str,
        save_payment_method: bool = False,
    ) -> CheckoutStarted:
        """The reference's "Add Funds": a pending top-up, then a Stripe Checkout Session for it."""
        company = self._ctx.db.read(lambda conn: self._company(conn, validation.company_id(company_id)))
        country = (company.country or "").upper()
        allowed = self._ctx.settings.allowed_countries
        if country and allowed and country not in allowed:
            raise InvalidInput(f"checkout is offered for {', '.join(sorted(allowed))}; the company is in {country}")
        topup = self._topups.create_pending(
            company_id=company_id,
            amount=amount,
            source="checkout",
            initiated_by=initiated_by,
            idempotency_key=idempotency_key,
        )
        if topup.checkout_url:  # the same request again: the same session, whatever became of it
            return CheckoutStarted(topup, topup.checkout_url)
        if topup.status != "pending":
            raise InvalidTopupState(
                f"top-up {topup.id} is {topup.status}; start a new checkout with a new idempotency key"
            )
        customer_id = self.ensure_customer(company_id)
        settings = self._ctx.settings
        session = self._stripe.create_checkout_session(
            amount=amount.cents,
            currency=amount.currency,
            customer_id=customer_id,
            product_name=f"Prepaid balance top-up ({company.name})",
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
            metadata=self._metadata(topup),
            save_payment_method=save_payment_method,
            idempotency_key=f"topup:{topup.id}:checkout",
            locale=(company.locale or "")[:2] or None,
        )
        if not session.url:
            raise StripeRequestRejected("Stripe returned a Checkout Session without a URL")
        topup = self._topups.attach_stripe_ids(
            topup.id, stripe_checkout_session_id=session.id, checkout_url=session.url
        )
        return CheckoutStarted(topup, session.url)

    def create_payment_intent(
        self, *, company_id: int, amount: Money, initiated_by: str, idempotency_key: str
    ) -> PaymentOutcome:
        """A PaymentIntent for API payments, confirmed by the customer's client (client_secret)."""
        topup = self._topups.create_pending(
            company_id=company_id,
            amount=amount,
            source="payment_intent",
            initiated_by=initiated_by,
            idempotency_key=idempotency_key,
        )
        intent = self._intent_for(topup)
        return PaymentOutcome(self._topups.get(topup.id), intent.status, intent.client_secret)

    def pay_with_saved_method(
        self,
        *,
        company_id: int,
        amount: Money,
        payment_method_id: str,
        initiated_by: str,
        idempotency_key: str,
        off_session: bool = False,
        source: str = "payment_intent",
    ) -> PaymentOutcome:
        """Charge a saved method now and record the outcome; declines come back as a failed top-up."""
        customer_id = self.ensure_customer(company_id)
        method = self._owned_method(customer_id, payment_method_id)
        topup = self._topups.create_pending(
            company_id=company_id,
            amount=amount,
            source=source,
            initiated_by=initiated_by,
            idempotency_key=idempotency_key,
        )
        if topup.status not in ("pending", "processing"):
            return PaymentOutcome(topup, topup.status)
        if not topup.stripe_payment_method_id:
            topup = self._topups.attach_stripe_ids(
                topup.id, stripe_payment_method_id=method.id, payment_method_type=method.type
            )
        return self.resume_saved_method_payment(topup, off_session=off_session)

    def resume_saved_method_payment(self, topup: Topup, *, off_session: bool) -> PaymentOutcome:
        """Create (or find) the top-up's intent, confirm it unless Stripe already did, record the outcome.

        Every step is keyed by the top-up, so a retry after any failure (here or in the reconciler)
        continues where the last attempt stopped and never charges twice.
        """
        intent = self._intent_for(topup, payment_method=topup.stripe_payment_method_id)
        if intent.status == "requires_confirmation":
            intent = self._stripe.confirm_payment_intent(
                intent.id, off_session=off_session, idempotency_key=f"topup:{topup.id}:confirm"
            )
        return self.record_intent(topup.id, intent)

    def record_intent(self, topup_id: int, intent: PaymentIntentView) -> PaymentOutcome:
        """Apply what Stripe says about a top-up's PaymentIntent (from an API answer, webhook or reconcile)."""
        ids = {"stripe_payment_intent_id": intent.id, "stripe_charge_id": intent.latest_charge}
        if intent.status == "succeeded":
            result = self._topups.settle(topup_id, **ids)
            return PaymentOutcome(result.topup, intent.status)
        if intent.status == "processing":
            return PaymentOutcome(self._topups.mark_processing(topup_id, **ids), intent.status)
        if intent.status == "canceled":
            return PaymentOutcome(self._topups.cancel(topup_id, reason="the payment was canceled"), intent.status)
        if intent.failure_code or intent.decline_code:
            topup = self._topups.fail(
                topup_id, reason=describe_failure(intent), code=intent.decline_code or intent.failure_code, **ids
            )
            return PaymentOutcome(topup, intent.status)
        return PaymentOutcome(self._topups.attach_stripe_ids(topup_id, **ids), intent.status, intent.client_secret)

    # -- internals --------------------------------------------------------------------------------

    def _intent_for(self, topup: Topup, *, payment_method: str | None = None) -> PaymentIntentView:
        """Create (idempotently) the top-up's PaymentIntent and record its id before anything is confirmed."""
        if topup.stripe_payment_intent_id:
            return self._stripe.retrieve_payment_intent(topup.stripe_payment_intent_id)
        intent = self._stripe.create_payment_intent(
            amount=topup.amount.cents,
            currency=topup.amount.currency,
            customer_id=self.ensure_customer(topup.company_id),
            metadata=self._metadata(topup),
            idempotency_key=f"topup:{topup.id}:payment_intent",
            payment_method=payment_method,
        )
        self._topups.attach_stripe_ids(topup.id, stripe_payment_intent_id=intent.id)
        return intent

    def _owned_method(self, customer_id: str, payment_method_id: str) -> PaymentMethodView:
        method = self._stripe.retrieve_payment_method(validation.identifier(payment_method_id, "payment method"))
        if method.customer != customer_id:
            raise InvalidInput(f"payment method {payment_method_id} does not belong to this company")
        if method.type not in self._ctx.settings.offered_payment_methods:
            raise PaymentDeclined(f"payment method type {method.type} is not offered", decline_code="not_offered")
        return method

    @staticmethod
    def _metadata(topup: Topup) -> dict[str, str]:
        return {"topup_id": str(topup.id), "company_id": str(topup.company_id), "source": topup.source}

    @staticmethod
    def _company(conn: Connection, company_id: int) -> Any:
        row = conn.execute(select(companies).where(companies.c.id == company_id)).first()
        if row is None:
            raise CompanyNotFound(company_id)
        return row

    @staticmethod
    def _auto_topup_method(conn: Connection, company_id: int) -> str | None:
        return conn.execute(
            select(balances.c.stripe_payment_method_id).where(balances.c.company_id == company_id)
        ).scalar()

    def _audit(self, company_id: int, actor: str, action: str, entity_id: str, details: dict[str, Any]) -> None:
        self._ctx.db.write(
            lambda conn: audit.record(
                conn,
                actor=actor,
                action=action,
                entity_type="payment_method",
                entity_id=entity_id,
                company_id=company_id,
                details=details,
                now=self._ctx.clock(),
            )
        )
