"""The local test checkout of emulator mode (``BILLING_TEST_CHECKOUT_URL``).

localstripe has no Checkout Sessions, so when ``billing run`` runs against it, a top-up link points to a
test page the webhook sidecar serves instead. The link carries an HMAC of the top-up id (keyed by the
webhook secret), so nobody can pay a top-up by guessing its number. Paying goes through localstripe's
PaymentIntents exactly like an API payment: the intent is created with the top-up in its metadata, the
card comes from the browser as a localstripe token, and the outcome arrives both in the answer and through
localstripe's webhooks, whichever is first.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from billing_core.config import Settings
from billing_core.db.tables import companies
from billing_core.domain.bonus import best_bonus
from billing_core.errors import InvalidInput, InvalidTopupState, NotFound
from billing_core.money import Money
from billing_core.services import validation
from billing_core.services.context import ServiceContext
from billing_core.services.payments import PaymentService
from billing_core.services.topups import Topup, TopupService, load_bonus_rules

PAYABLE = ("pending", "processing")


def _token(settings: Settings, topup_id: int) -> str:
    key = settings.stripe_webhook_secret.get_secret_value().encode()
    return hmac.new(key, f"test-checkout:{topup_id}".encode(), hashlib.sha256).hexdigest()[:32]


def link(settings: Settings, topup_id: int) -> str:
    base = (settings.test_checkout_url or "").rstrip("/")
    return f"{base}/{topup_id}?token={_token(settings, topup_id)}"


def token_valid(settings: Settings, topup_id: int, token: str) -> bool:
    return hmac.compare_digest(_token(settings, topup_id), token)


@dataclass(frozen=True, slots=True)
class CheckoutPage:
    """What the test page shows: who pays, how much, the bonus that comes with it, and where it stands."""

    topup: Topup
    company_name: str
    bonus: Money | None

    def as_json(self) -> dict[str, Any]:
        return {
            "topup": self.topup.as_json(),
            "company_name": self.company_name,
            "bonus": self.bonus.as_json() if self.bonus else None,
        }


@dataclass(frozen=True, slots=True)
class TestPayment:
    """The state after a payment step; ``client_secret`` is set when the card asks for 3-D Secure."""

    topup: Topup
    stripe_status: str
    client_secret: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "topup": self.topup.as_json(),
            "stripe_status": self.stripe_status,
            "client_secret": self.client_secret,
        }


class TestCheckoutService:
    def __init__(self, ctx: ServiceContext, topups: TopupService, payments: PaymentService) -> None:
        self._ctx = ctx
        self._topups = topups
        self._payments = payments

    def page(self, topup_id: int) -> CheckoutPage:
        topup = self._checkout_topup(topup_id)

        def work(conn: Any) -> tuple[str, Money | None]:
            name = conn.execute(select(companies.c.name).where(companies.c.id == topup.company_id)).scalar_one()
            rules = load_bonus_rules(conn, topup.company_id, topup.amount.currency)
            applied = best_bonus(rules, topup.amount, topup.company_id, self._ctx.clock())
            return str(name), applied.amount if applied else None

        name, bonus = self._ctx.db.read(work)
        return CheckoutPage(topup, name, topup.bonus if topup.status == "succeeded" else bonus)

    def pay(self, topup_id: int, card: str) -> TestPayment:
        """Charge the card (a localstripe ``card_...`` from a token) for this top-up through a PaymentIntent."""
        topup = self._checkout_topup(topup_id)
        card = validation.identifier(card, "card")
        if not card.startswith("card_"):
            raise InvalidInput("the test page pays with a card token from localstripe's Stripe.js")
        if topup.status not in PAYABLE or topup.stripe_payment_intent_id:
            raise InvalidTopupState(f"top-up {topup.id} is {topup.status}; start a new checkout to pay again")
        topup = self._topups.attach_stripe_ids(topup.id, stripe_payment_method_id=card, payment_method_type="card")
        outcome = self._payments.resume_saved_method_payment(topup, off_session=False)
        return TestPayment(outcome.topup, outcome.stripe_status, outcome.client_secret)

    def finish(self, topup_id: int) -> TestPayment:
        """After the 3-D Secure step: record what localstripe says about the intent now."""
        topup = self._checkout_topup(topup_id)
        if not topup.stripe_payment_intent_id:
            return TestPayment(topup, "requires_payment_method")
        intent = self._payments.retrieve_intent(topup.stripe_payment_intent_id)
        if intent.status == "requires_payment_method" and not intent.failure_code:
            return TestPayment(topup, intent.status)
        outcome = self._payments.record_intent(topup.id, intent)
        return TestPayment(outcome.topup, outcome.stripe_status)

    def _checkout_topup(self, topup_id: int) -> Topup:
        topup = self._topups.get(topup_id)
        if topup.source != "checkout":
            raise NotFound(f"top-up {topup_id} was not started as a checkout")
        return topup
