"""The Stripe-backed write tools against the localstripe emulator, through the in-memory MCP client."""

from __future__ import annotations

import pytest

from billing_core.bootstrap import Services
from billing_core.config import Settings
from tests.conftest import Clock
from tests.integration.helpers import balance_cents, eur, new_company
from tests.integration.mcp_helpers import accept, call, connect
from tests.integration.stripe_helpers import CARD_DECLINED_ON_CHARGE, create_card
from tests.integration.test_stripe_gateway_errors import FakeStripe, build_mocked

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["legacy", "2026-07-28"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def paid_by_card(services: Services, card: str, amount: str = "60.00") -> tuple[int, int]:
    company = new_company(services)
    method = create_card(services, card)
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    outcome = services.stripe.payments.pay_with_saved_method(
        company_id=company.id,
        amount=eur(amount),
        payment_method_id=method,
        initiated_by="test",
        idempotency_key=f"pay-{company.id}",
    )
    return company.id, outcome.topup.id


async def test_refund_topup_goes_back_to_the_card_after_consent(stripe_services: Services, mode: str) -> None:
    company_id, topup_id = paid_by_card(stripe_services, "4242424242424242")
    async with connect(stripe_services, mode, answer=accept) as client:
        outcome = await call(client, "refund_topup", topup_id=topup_id, amount_cents=1000, reason="unused credit")
    assert outcome["status"] == "executed"
    assert outcome["result"]["status"] == "succeeded" and outcome["result"]["amount"]["cents"] == 1000
    assert balance_cents(stripe_services, company_id) == 5000


async def test_retry_failed_topup_charges_the_saved_method_again(stripe_services: Services, mode: str) -> None:
    company_id, topup_id = paid_by_card(stripe_services, CARD_DECLINED_ON_CHARGE)
    assert stripe_services.topups.get(topup_id).status == "failed"
    async with connect(stripe_services, mode) as client:
        first = await call(client, "retry_failed_topup", topup_id=topup_id)
        assert first["status"] == "confirmation_required"
        done = await call(
            client, "retry_failed_topup", topup_id=topup_id, confirmation_token=first["confirmation_token"]
        )
    assert done["status"] == "executed"
    assert done["result"]["retried_topup_id"] == topup_id
    assert done["result"]["topup"]["id"] != topup_id  # a new top-up; the failed one stays as it was
    assert balance_cents(stripe_services, company_id) == 0  # the same card is declined again


async def test_create_topup_link_needs_checkout_which_the_emulator_lacks(stripe_services: Services, mode: str) -> None:
    company_id = new_company(stripe_services).id
    async with connect(stripe_services, mode) as client:
        result = await client.call_tool("create_topup_link", {"company_id": company_id, "amount_cents": 5000})
    # localstripe has no Checkout Sessions: the tool reports Stripe's refusal as a clear error, no trace
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error and "payment_error" in text and "Traceback" not in text and "sk_test" not in text


async def test_create_topup_link_returns_the_checkout_url(settings: Settings, clock: Clock, mode: str) -> None:
    fake = FakeStripe()  # Stripe's Checkout Session shapes through httpx.MockTransport (localstripe has none)
    services = build_mocked(settings, clock, fake)
    try:
        company_id = new_company(services).id
        async with connect(services, mode) as client:
            first = await call(
                client, "create_topup_link", company_id=company_id, amount_cents=5000, idempotency_key="link-0001"
            )
            again = await call(
                client, "create_topup_link", company_id=company_id, amount_cents=5000, idempotency_key="link-0001"
            )
        assert first["status"] == "executed"  # nothing is charged until the customer pays: no confirmation
        assert first["result"]["checkout_url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
        assert again["status"] == "replayed" and again["result"] == first["result"]
        assert len(fake.calls("POST", "/v1/checkout/sessions")) == 1
        assert balance_cents(services, company_id) == 0
    finally:
        services.close()
