"""The Stripe gateway of the running processes, with the SDK loaded on the first call to Stripe.

Importing the official SDK costs about 0.2 s, and most work of a process with STRIPE_SECRET set never calls
Stripe: the MCP server answering a balance, a CLI command listing companies, the webhook sidecar filing an
event. So the processes get this stand-in: it checks the key at once (a key of the wrong mode is refused
at start, as before) and builds the :class:`~billing_core.adapters.stripe_gateway.StripeGateway` when a
service first calls Stripe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from billing_core.adapters.stripe_keys import check_key_mode

if TYPE_CHECKING:
    from billing_core.adapters.stripe_gateway import StripeGateway
    from billing_core.adapters.stripe_objects import (
        CheckoutSessionView,
        PaymentIntentView,
        PaymentMethodView,
        RefundView,
    )


class StripeOnDemand:
    """A :class:`~billing_core.ports.PaymentGateway` that builds the real gateway on its first call."""

    def __init__(self, secret_key: str, *, test_mode: bool, api_base: str | None = None) -> None:
        check_key_mode(secret_key, test_mode=test_mode)
        self._secret_key = secret_key
        self._test_mode = test_mode
        self._api_base = api_base
        self._gateway: StripeGateway | None = None
        self._lock = threading.Lock()

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            with self._lock:
                if self._gateway is None:
                    from billing_core.adapters.stripe_gateway import StripeGateway

                    self._gateway = StripeGateway(self._secret_key, test_mode=self._test_mode, api_base=self._api_base)
        return self._gateway

    def close(self) -> None:
        if self._gateway is not None:
            self._gateway.close()

    def create_customer(self, *, company_id: int, name: str, email: str, idempotency_key: str) -> str:
        return self.gateway.create_customer(
            company_id=company_id, name=name, email=email, idempotency_key=idempotency_key
        )

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodView]:
        return self.gateway.list_payment_methods(customer_id)

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodView:
        return self.gateway.retrieve_payment_method(payment_method_id)

    def attach_payment_method(self, payment_method_id: str, customer_id: str) -> PaymentMethodView:
        return self.gateway.attach_payment_method(payment_method_id, customer_id)

    def detach_payment_method(self, payment_method_id: str) -> None:
        self.gateway.detach_payment_method(payment_method_id)

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
        return self.gateway.create_checkout_session(
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            product_name=product_name,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata=metadata,
            save_payment_method=save_payment_method,
            idempotency_key=idempotency_key,
            locale=locale,
        )

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionView:
        return self.gateway.retrieve_checkout_session(session_id)

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
        return self.gateway.create_payment_intent(
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            metadata=metadata,
            idempotency_key=idempotency_key,
            payment_method=payment_method,
        )

    def confirm_payment_intent(self, intent_id: str, *, off_session: bool, idempotency_key: str) -> PaymentIntentView:
        return self.gateway.confirm_payment_intent(intent_id, off_session=off_session, idempotency_key=idempotency_key)

    def retrieve_payment_intent(self, intent_id: str) -> PaymentIntentView:
        return self.gateway.retrieve_payment_intent(intent_id)

    def cancel_payment_intent(self, intent_id: str) -> PaymentIntentView:
        return self.gateway.cancel_payment_intent(intent_id)

    def create_refund(
        self, *, payment_intent: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundView:
        return self.gateway.create_refund(
            payment_intent=payment_intent, amount=amount, metadata=metadata, idempotency_key=idempotency_key
        )

    def retrieve_refund(self, refund_id: str) -> RefundView:
        return self.gateway.retrieve_refund(refund_id)
