"""Network faults between us and the Stripe emulator, made by a real transport (no patching).

``FaultyStripe`` forwards every request to localstripe, except that requests matching ``unreachable`` never
leave (Stripe could not be reached: nothing happened there) and the answers to requests matching
``lose_answer`` are thrown away after Stripe acted on them (a timeout after success: the crash the
reconciler exists for). Requests matching ``reject`` are refused with a 400 the way Stripe refuses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import stripe

from billing_core.adapters.stripe_gateway import StripeGateway
from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from tests.support.localstripe import SECRET_KEY

Rule = tuple[str, str]  # (HTTP method, regular expression the whole path must match)

CREATE_PAYMENT_INTENT: Rule = ("POST", r"/v1/payment_intents")
CONFIRM_PAYMENT_INTENT: Rule = ("POST", r"/v1/payment_intents/[^/]+/confirm")
CREATE_REFUND: Rule = ("POST", r"/v1/refunds")


class FaultyStripe(httpx.HTTPTransport):
    def __init__(
        self, *, unreachable: tuple[Rule, ...] = (), lose_answer: tuple[Rule, ...] = (), reject: tuple[Rule, ...] = ()
    ) -> None:
        super().__init__()
        self.unreachable = unreachable
        self.lose_answer = lose_answer
        self.reject = reject
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Idempotency-Key)

    @staticmethod
    def _matches(request: httpx.Request, rules: tuple[Rule, ...]) -> bool:
        return any(request.method == method and re.fullmatch(path, request.url.path) for method, path in rules)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path, request.headers.get("Idempotency-Key")))
        if self._matches(request, self.unreachable):
            raise httpx.ConnectError("connection refused (test)", request=request)
        if self._matches(request, self.reject):
            return httpx.Response(400, json={"error": {
                "type": "invalid_request_error", "code": "charge_already_refunded",
                "message": "Charge has already been refunded.",
            }})
        response = super().handle_request(request)
        if self._matches(request, self.lose_answer):
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost (test)", request=request)
        return response


@contextmanager
def services_with_faults(
    settings: Settings, clock: Any, api_base: str, *, unreachable: tuple[Rule, ...] = (),
    lose_answer: tuple[Rule, ...] = (), reject: tuple[Rule, ...] = (),
) -> Iterator[tuple[Services, FaultyStripe]]:
    """A second copy of the system on the same database whose way to Stripe is faulty."""
    transport = FaultyStripe(unreachable=unreachable, lose_answer=lose_answer, reject=reject)
    gateway = StripeGateway(SECRET_KEY, test_mode=True, api_base=api_base, transport=transport,
                            max_network_retries=0)
    built = build_services(settings, clock=clock, gateway=gateway)
    try:
        yield built, transport
    finally:
        built.close()


def emulator_payment_intents(services: Services, customer_id: str) -> list[Any]:
    """Every PaymentIntent the emulator holds for one customer (what Stripe really created)."""
    http = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": services.stripe.gateway.api_base},
                                     http_client=http)
        intents = client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
        return [pi for pi in intents if pi.customer == customer_id]
    finally:
        http.close()


def emulator_refunds(services: Services, payment_intent_id: str) -> list[Any]:
    http = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": services.stripe.gateway.api_base},
                                     http_client=http)
        return list(client.v1.refunds.list({"payment_intent": payment_intent_id, "limit": 100}).auto_paging_iter())
    finally:
        http.close()
