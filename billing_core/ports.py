"""Ports: what the services call outside the process, as typed protocols.

Services depend on these protocols, never on an adapter. The adapters implement them
(:class:`~billing_core.adapters.stripe_gateway.StripeGateway`,
:class:`~billing_core.adapters.mail.SmtpMailSender`, :class:`~billing_core.adapters.pdf.WeasyPrintRenderer`),
``bootstrap`` wires them in, and unit tests pass fakes (``tests/fakes.py``).

The Stripe views (:mod:`billing_core.adapters.stripe_objects`, plain dataclasses without the SDK) are the
values the payment gateway returns; they are re-exported here so a service names its inputs from one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any, Protocol

from billing_core.adapters.stripe_objects import CheckoutSessionView, PaymentIntentView, PaymentMethodView, RefundView
from billing_core.domain.invoice_document import InvoiceDocument

__all__ = [
    "CheckoutSessionView",
    "MailSendError",
    "MailSender",
    "PaymentGateway",
    "PaymentIntentView",
    "PaymentMethodView",
    "PdfRenderer",
    "RefundView",
]


class PaymentGateway(Protocol):
    """The payment provider (Stripe). Every call that creates something takes an idempotency key derived
    from our own row, so a retry never charges twice. Failures raise
    :class:`~billing_core.errors.PaymentError` subclasses; ``retryable`` says whether another try may help."""

    def close(self) -> None: ...

    def create_customer(self, *, company_id: int, name: str, email: str, idempotency_key: str) -> str: ...

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodView]: ...

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodView: ...

    def attach_payment_method(self, payment_method_id: str, customer_id: str) -> PaymentMethodView: ...

    def detach_payment_method(self, payment_method_id: str) -> None: ...

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
    ) -> CheckoutSessionView: ...

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionView: ...

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
        """Create without confirming: the id is recorded before any money can move."""
        ...

    def confirm_payment_intent(self, intent_id: str, *, off_session: bool, idempotency_key: str) -> PaymentIntentView:
        """Confirm; a decline or an authentication demand comes back as the intent's state, not as an error."""
        ...

    def retrieve_payment_intent(self, intent_id: str) -> PaymentIntentView: ...

    def cancel_payment_intent(self, intent_id: str) -> PaymentIntentView: ...

    def create_refund(
        self, *, payment_intent: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundView: ...

    def retrieve_refund(self, refund_id: str) -> RefundView: ...


class MailSendError(Exception):
    """A mail was not sent.

    ``retryable``: the same mail may go through later (a 4xx reply, a dropped connection, a timeout, a
    refused login an operator can fix); otherwise the refusal is permanent (a 5xx reply). ``code``: the
    SMTP reply, if the server gave one. ``server_down``: the server could not be used at all, so any other
    mail sent now would fail the same way.
    """

    def __init__(self, message: str, *, retryable: bool, code: int | None = None, server_down: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.server_down = server_down

    @property
    def permanent(self) -> bool:
        return not self.retryable


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Send one mail; every failure is a :class:`MailSendError`."""
        ...


class PdfRenderer(Protocol):
    """Renders documents to PDF. Its methods run in a process pool, so an implementation must pickle."""

    def render_invoice(self, doc: InvoiceDocument) -> bytes:
        """PDF/A-3 with the Factur-X (EN 16931) XML embedded."""
        ...

    def render_statement(self, doc: Mapping[str, Any]) -> bytes: ...
