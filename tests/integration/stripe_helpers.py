"""Builders for tests against localstripe: companies with saved cards and SEPA mandates."""

from __future__ import annotations

from typing import Any

import stripe

from billing_core.bootstrap import Services
from billing_core.money import Money
from tests.integration.helpers import eur, new_company
from tests.support.localstripe import SECRET_KEY

CARD_OK = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"
CARD_DECLINED_ON_ATTACH = "4000000000009995"
CARD_NEEDS_AUTHENTICATION = "4000002500003155"
IBAN_OK = "DE89370400440532013000"


def create_payment_method(services: Services, params: dict[str, Any]) -> str:
    """What a customer's browser does with Stripe.js: create a method (the emulator takes raw numbers)."""
    http = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": services.stripe.gateway.api_base},
                                     http_client=http)
        return str(client.v1.payment_methods.create(params).id)  # type: ignore[arg-type]
    finally:
        http.close()


def create_card(services: Services, number: str) -> str:
    return create_payment_method(
        services, {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )


def create_sepa(services: Services, iban: str = IBAN_OK) -> str:
    return create_payment_method(services, {"type": "sepa_debit", "sepa_debit": {"iban": iban}})


def company_with_method(
    services: Services,
    *,
    card: str | None = CARD_OK,
    sepa: bool = False,
    funded: str = "5.00",
    threshold: str = "10.00",
    amount: str = "50.00",
    auto_topup: bool = True,
    name: str = "Praxis Weber",
) -> tuple[int, str]:
    """A funded company whose auto top-up charges a saved card (or SEPA mandate)."""
    company = new_company(services, name=name, funded=funded)
    method = create_sepa(services) if sepa else create_card(services, card or CARD_OK)
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    services.stripe.payments.use_for_auto_topup(company.id, method, actor="test")
    services.companies.set(
        company.id, actor="test", auto_topup_enabled=auto_topup, auto_topup_threshold=eur(threshold),
        auto_topup_amount=eur(amount),
    )
    return company.id, method


def money(services: Services, company_id: int) -> Money:
    return services.balances.get(company_id).balance
