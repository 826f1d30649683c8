"""The only module that talks to Stripe: the official SDK's ``StripeClient`` behind a small typed surface.

Every call that creates something carries an idempotency key derived from our own row, so a retry after a
timeout never charges twice; the SDK retries network errors itself with the same key. Stripe's errors
become our typed :class:`~billing_core.errors.PaymentError` values; messages never contain the API key or
card data (Stripe's own messages do not either, and we add none).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import httpx
import stripe
from stripe.params import PaymentIntentConfirmParams, PaymentIntentCreateParams
from stripe.params.checkout import SessionCreateParams

from billing_core.adapters.stripe_keys import check_key_mode
from billing_core.adapters.stripe_objects import (
    CheckoutSessionView,
    PaymentIntentView,
    PaymentMethodView,
    RefundView,
    checkout_session_view,
    payment_intent_view,
    payment_method_view,
    refund_view,
)
from billing_core.concurrency import refuse_in_event_loop
from billing_core.errors import (
    AuthenticationRequired,
    PaymentDeclined,
    PaymentError,
    StripeConfigurationError,
    StripeRateLimited,
    StripeRequestRejected,
    StripeUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PAYMENT_METHOD_TYPES = ("card", "sepa_debit")


class _HttpxClient(stripe.HTTPXClient):
    """The SDK's httpx client with sync calls enabled and, in tests, a swapped transport."""

    def __init__(self, transport: httpx.BaseTransport | None = None, timeout: float = 30) -> None:
        super().__init__(timeout=timeout, allow_sync_methods=True)
        if transport is not None:
            self._client = httpx.Client(transport=transport)


class StripeGateway:
    def __init__(
        self,
        secret_key: str,
        *,
        test_mode: bool,
        api_base: str | None = None,
        transport: httpx.BaseTransport | None = None,
        max_network_retries: int = 2,
    ) -> None:
        check_key_mode(secret_key, test_mode=test_mode)
        # The local emulator (STRIPE_API_BASE) lacks a few things Stripe has (off_session on confirm, listing
        # SEPA mandates); we leave those out there and say so, instead of forking the flows.
        self.emulated = api_base is not None
        self._http = _HttpxClient(transport)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self._v1 = self._client.v1
        self.api_base = api_base

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated

    # -- customers and payment methods -------------------------------------------------------------

    def create_customer(self, *, company_id: int, name: str, email: str, idempotency_key: str) -> str:
        customer = self._call(
            lambda: self._v1.customers.create(
                {"name": name, "email": email, "metadata": {"company_id": str(company_id)}},
                {"idempotency_key": idempotency_key},
            )
        )
        return str(customer.id)

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodView]:
        methods: list[PaymentMethodView] = []
        # the emulator lists cards only
        for kind in ("card",) if self.emulated else PAYMENT_METHOD_TYPES:
            methods.extend(payment_method_view(pm) for pm in self._list_payment_methods(customer_id, kind))
        return methods

    def _list_payment_methods(self, customer_id: str, kind: str) -> list[Any]:
        page = self._call(lambda: self._v1.payment_methods.list({"customer": customer_id, "type": kind, "limit": 100}))
        return list(page.data)

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodView:
        return payment_method_view(self._call(lambda: self._v1.payment_methods.retrieve(payment_method_id)))

    def attach_payment_method(self, payment_method_id: str, customer_id: str) -> PaymentMethodView:
        return payment_method_view(
            self._call(lambda: self._v1.payment_methods.attach(payment_method_id, {"customer": customer_id}))
        )

    def detach_payment_method(self, payment_method_id: str) -> None:
        self._call(lambda: self._v1.payment_methods.detach(payment_method_id))

    # -- payments -------------------------------------------------------------------------------------

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
        payment_intent_data: dict[str, Any] = {"metadata": dict(metadata)}
        if save_payment_method:
            payment_intent_data["setup_future_usage"] = "off_session"
        params: dict[str, Any] = {
            "mode": "payment",
            "customer": customer_id,
            "payment_method_types": list(PAYMENT_METHOD_TYPES),
            "billing_address_collection": "required",
            "customer_update": {"address": "auto", "name": "auto"},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount,
                        "product_data": {"name": product_name},
                    },
                }
            ],
            "client_reference_id": metadata.get("topup_id"),
            "metadata": dict(metadata),
            "payment_intent_data": payment_intent_data,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        if locale:
            params["locale"] = locale
        session = self._call(
            lambda: self._v1.checkout.sessions.create(
                cast(SessionCreateParams, params), {"idempotency_key": idempotency_key}
            )
        )
        return checkout_session_view(session)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionView:
        return checkout_session_view(self._call(lambda: self._v1.checkout.sessions.retrieve(session_id)))

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
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "metadata": dict(metadata),
            "payment_method_types": list(PAYMENT_METHOD_TYPES),
        }
        if payment_method:
            params["payment_method"] = payment_method
        intent = self._call(
            lambda: self._v1.payment_intents.create(
                cast(PaymentIntentCreateParams, params), {"idempotency_key": idempotency_key}
            )
        )
        return payment_intent_view(intent)

    def confirm_payment_intent(self, intent_id: str, *, off_session: bool, idempotency_key: str) -> PaymentIntentView:
        """Confirm; a decline or an off-session authentication demand comes back as a view, not an error."""
        params: dict[str, Any] = {}
        if off_session and not self.emulated:
            params["off_session"] = True
        try:
            intent = self._raw(
                lambda: self._v1.payment_intents.confirm(
                    intent_id, cast(PaymentIntentConfirmParams, params), {"idempotency_key": idempotency_key}
                )
            )
        except stripe.CardError as error:
            # Stripe answers a declined or authentication-required confirm with a 402 carrying the intent.
            return self._intent_after_card_error(intent_id, error)
        return payment_intent_view(intent)

    def _intent_after_card_error(self, intent_id: str, error: stripe.CardError) -> PaymentIntentView:
        intent = self.retrieve_payment_intent(intent_id)
        err = error.error
        return dataclasses.replace(
            intent,
            failure_code=(err.code if err else None) or intent.failure_code or "card_declined",
            decline_code=(err.decline_code if err else None) or intent.decline_code,
            failure_message=(err.message if err else None) or intent.failure_message,
        )

    def retrieve_payment_intent(self, intent_id: str) -> PaymentIntentView:
        return payment_intent_view(self._call(lambda: self._v1.payment_intents.retrieve(intent_id)))

    def cancel_payment_intent(self, intent_id: str) -> PaymentIntentView:
        return payment_intent_view(self._call(lambda: self._v1.payment_intents.cancel(intent_id)))

    def create_refund(
        self, *, payment_intent: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundView:
        refund = self._call(
            lambda: self._v1.refunds.create(
                {"payment_intent": payment_intent, "amount": amount, "metadata": dict(metadata)},
                {"idempotency_key": idempotency_key},
            )
        )
        return refund_view(refund)

    def retrieve_refund(self, refund_id: str) -> RefundView:
        return refund_view(self._call(lambda: self._v1.refunds.retrieve(refund_id)))

    # -- error mapping --------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return self._raw(fn)
        except stripe.CardError as error:
            raise _declined(error) from None

    @staticmethod
    def _raw(fn: Callable[[], T]) -> T:
        refuse_in_event_loop("a Stripe request")
        try:
            return fn()
        except stripe.CardError:
            raise
        except stripe.AuthenticationError:
            raise StripeConfigurationError(
                "Stripe rejected the API key (Invalid API Key): check STRIPE_SECRET and that it belongs to "
                "the same mode (test or live) as STRIPE_TEST_MODE"
            ) from None
        except stripe.RateLimitError:
            raise StripeRateLimited("Stripe is rate limiting requests; try again shortly") from None
        except stripe.APIConnectionError:
            raise StripeUnavailable("Stripe could not be reached; the request is safe to retry") from None
        except stripe.InvalidRequestError as error:
            raise StripeRequestRejected(f"Stripe rejected the request: {_message(error)}") from None
        except stripe.StripeError as error:
            status = getattr(error, "http_status", None)
            if status is None or status >= 500:
                raise StripeUnavailable("Stripe had an internal error; the request is safe to retry") from None
            raise PaymentError(f"Stripe error: {_message(error)}") from None


def _message(error: stripe.StripeError) -> str:
    return (error.user_message or str(getattr(error.error, "message", "") or "") or "no details").strip()


def _declined(error: stripe.CardError) -> PaymentError:
    err = error.error
    code = err.code if err else None
    if code in ("authentication_required", "payment_intent_authentication_failure"):
        return AuthenticationRequired(
            "the bank requires the cardholder to authenticate this payment (3-D Secure); "
            "update the payment method with the customer present"
        )
    decline = (err.decline_code if err else None) or code
    return PaymentDeclined(f"payment declined: {_message(error)}", decline_code=decline)
