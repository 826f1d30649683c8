"""In-memory fakes of the ports (billing_core/ports.py), for service tests that need no emulator.

Integration tests of the adapters keep the real localstripe and aiosmtpd; these fakes let a test state
exactly what the outside world answers (a decline, an outage, a refused mail) and check what was asked.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any

from billing_core.domain.invoice_document import InvoiceDocument
from billing_core.errors import PaymentError
from billing_core.ports import (
    CheckoutSessionView,
    MailSendError,
    PaymentIntentView,
    PaymentMethodView,
    RefundView,
)


@dataclass(frozen=True)
class FakeCard:
    """How a saved card behaves when a payment is confirmed with it."""

    decline_code: str | None = None  # e.g. "insufficient_funds": the confirm comes back declined
    needs_authentication: bool = False
    type: str = "card"


@dataclass
class FakePaymentGateway:
    """A payment provider that remembers everything and answers as its cards say.

    ``fail_next[name]`` holds errors the next calls of that method raise (e.g. ``StripeUnavailable``).
    Creating calls are idempotent by their key, like Stripe's.
    """

    cards: dict[str, FakeCard] = field(default_factory=dict)
    fail_next: dict[str, list[PaymentError]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    owners: dict[str, str | None] = field(default_factory=dict)
    intents: dict[str, PaymentIntentView] = field(default_factory=dict)
    refunds: dict[str, RefundView] = field(default_factory=dict)
    _by_key: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test set-up ----------------------------------------------------------------------------------

    def add_card(self, card: FakeCard | None = None) -> str:
        method_id = f"pm_fake_{next(self._ids)}"
        self.cards[method_id] = card or FakeCard()
        self.owners[method_id] = None
        return method_id

    def count(self, name: str) -> int:
        return self.calls.count(name)

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        queued = self.fail_next.get(name)
        if queued:
            raise queued.pop(0)

    def _once(self, key: str, make: Any) -> Any:
        if key not in self._by_key:
            self._by_key[key] = make()
        return self._by_key[key]

    # -- the port -------------------------------------------------------------------------------------

    def close(self) -> None:
        self.calls.append("close")

    def create_customer(self, *, company_id: int, name: str, email: str, idempotency_key: str) -> str:
        self._enter("create_customer")
        return str(self._once(idempotency_key, lambda: f"cus_fake_{company_id}"))

    def _method(self, method_id: str) -> PaymentMethodView:
        card = self.cards[method_id]
        return PaymentMethodView(
            id=method_id,
            type=card.type,
            customer=self.owners.get(method_id),
            brand="visa" if card.type == "card" else None,
            last4="4242",
            exp_month=12,
            exp_year=2034,
            country="DE",
        )

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodView]:
        self._enter("list_payment_methods")
        return [self._method(m) for m, owner in self.owners.items() if owner == customer_id]

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodView:
        self._enter("retrieve_payment_method")
        return self._method(payment_method_id)

    def attach_payment_method(self, payment_method_id: str, customer_id: str) -> PaymentMethodView:
        self._enter("attach_payment_method")
        self.owners[payment_method_id] = customer_id
        return self._method(payment_method_id)

    def detach_payment_method(self, payment_method_id: str) -> None:
        self._enter("detach_payment_method")
        self.owners[payment_method_id] = None

    def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        customer_id: str,
        product_name: str,
        success_url: str,
        cancel_url: str,
        metadata: Mapping[str, str],
        save_payment_method: bool,
        idempotency_key: str,
        locale: str | None = None,
    ) -> CheckoutSessionView:
        self._enter("create_checkout_session")

        def make() -> CheckoutSessionView:
            session_id = f"cs_fake_{next(self._ids)}"
            return CheckoutSessionView(
                id=session_id,
                url=f"https://checkout.example/{session_id}",
                status="open",
                payment_status="unpaid",
                payment_intent=None,
                customer=customer_id,
                amount_total=amount,
                currency=currency.lower(),
                metadata=dict(metadata),
            )

        session: CheckoutSessionView = self._once(idempotency_key, make)
        return session

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionView:
        self._enter("retrieve_checkout_session")
        for value in self._by_key.values():
            if isinstance(value, CheckoutSessionView) and value.id == session_id:
                return value
        raise KeyError(session_id)

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer_id: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        payment_method: str | None = None,
    ) -> PaymentIntentView:
        self._enter("create_payment_intent")

        def make() -> PaymentIntentView:
            intent = PaymentIntentView(
                id=f"pi_fake_{next(self._ids)}",
                status="requires_confirmation" if payment_method else "requires_payment_method",
                amount=amount,
                amount_received=0,
                currency=currency.lower(),
                customer=customer_id,
                payment_method=payment_method,
                latest_charge=None,
                metadata=dict(metadata),
                client_secret="pi_fake_secret",
            )
            self.intents[intent.id] = intent
            return intent

        made: PaymentIntentView = self._once(idempotency_key, make)
        return self.intents[made.id]

    def confirm_payment_intent(self, intent_id: str, *, off_session: bool, idempotency_key: str) -> PaymentIntentView:
        self._enter("confirm_payment_intent")
        intent = self.intents[intent_id]
        if intent.status != "requires_confirmation":
            return intent
        card = self.cards[intent.payment_method or ""]
        if card.needs_authentication:
            intent = replace(intent, status="requires_action", failure_code="authentication_required")
        elif card.decline_code:
            intent = replace(
                intent,
                status="requires_payment_method",
                failure_code="card_declined",
                decline_code=card.decline_code,
                failure_message="Your card was declined.",
            )
        else:
            status = "processing" if card.type == "sepa_debit" else "succeeded"
            received = intent.amount if status == "succeeded" else 0
            intent = replace(intent, status=status, amount_received=received, latest_charge=f"ch_{intent_id}")
        self.intents[intent_id] = intent
        return intent

    def retrieve_payment_intent(self, intent_id: str) -> PaymentIntentView:
        self._enter("retrieve_payment_intent")
        return self.intents[intent_id]

    def cancel_payment_intent(self, intent_id: str) -> PaymentIntentView:
        self._enter("cancel_payment_intent")
        self.intents[intent_id] = replace(self.intents[intent_id], status="canceled")
        return self.intents[intent_id]

    def create_refund(
        self, *, payment_intent: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundView:
        self._enter("create_refund")

        def make() -> RefundView:
            intent = self.intents[payment_intent]
            refund = RefundView(
                id=f"re_fake_{next(self._ids)}",
                status="succeeded",
                amount=amount,
                currency=intent.currency,
                payment_intent=payment_intent,
                charge=intent.latest_charge,
                failure_reason=None,
                metadata=dict(metadata),
            )
            self.refunds[refund.id] = refund
            return refund

        refund: RefundView = self._once(idempotency_key, make)
        return refund

    def retrieve_refund(self, refund_id: str) -> RefundView:
        self._enter("retrieve_refund")
        return self.refunds[refund_id]


@dataclass
class FakeMailSender:
    """Keeps every mail it was given; ``failures`` are raised, one per send, before anything is kept."""

    failures: list[MailSendError] = field(default_factory=list)
    sent: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0

    async def send(self, message: EmailMessage) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)


class FakePdfRenderer:
    """Returns a small, recognisable "PDF" per document and counts what it rendered."""

    def __init__(self) -> None:
        self.invoices: list[str] = []
        self.statements: list[str] = []

    def render_invoice(self, doc: InvoiceDocument) -> bytes:
        self.invoices.append(doc.number)
        return f"%PDF-fake {doc.number} {doc.totals.gross}".encode()

    def render_statement(self, doc: Mapping[str, Any]) -> bytes:
        self.statements.append(str(doc["month"]))
        return f"%PDF-fake statement {doc['month']}".encode()
