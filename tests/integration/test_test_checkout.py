"""The emulator-mode test checkout against localstripe, on SQLite and MariaDB: links, payments, 3-D Secure,
and the page's absence outside emulator mode."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from billing_core.bootstrap import Services, build_services
from billing_core.errors import InvalidTopupState
from billing_core.services import test_checkout
from tests.conftest import Clock, make_settings
from tests.integration.helpers import balance_cents, eur, new_company
from tests.support.localstripe import LocalStripe
from webhook_app.app import build_app

WEBHOOK_SECRET = "whsec_test_checkout"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator_services(database_url: str, clock: Clock, localstripe: LocalStripe) -> Iterator[Services]:
    settings = make_settings(
        database_url,
        STRIPE_SECRET="sk_test_localstripe_0123456789",
        STRIPE_API_BASE=localstripe.url,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        BILLING_TEST_CHECKOUT_URL="http://sidecar/test-checkout",
    )
    built = build_services(settings, clock=clock)
    try:
        yield built
    finally:
        built.close()


def card_token(localstripe: LocalStripe, number: str) -> str:
    """What the Stripe.js stand-in does in the browser: a token for the card, with the publishable key."""
    response = httpx.post(
        f"{localstripe.url}/v1/tokens",
        data={"card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123",
              "key": "pk_test_localstripe"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["card"]["id"])


def authenticate(localstripe: LocalStripe, client_secret: str, *, success: bool) -> None:
    """The stand-in's 3-D Secure dialog: the cardholder completes or fails the authentication."""
    intent = client_secret.split("_secret_")[0]
    response = httpx.post(
        f"{localstripe.url}/v1/payment_intents/{intent}/_authenticate?success={'true' if success else 'false'}",
        json={"key": "pk_test_localstripe", "client_secret": client_secret},
        timeout=10,
    )
    response.raise_for_status()


def start(services: Services, amount: str = "50.00") -> tuple[int, int, str]:
    company = new_company(services)
    started = services.stripe.payments.start_checkout(
        company_id=company.id, amount=eur(amount), initiated_by="test", idempotency_key=f"co-{company.id}-{amount}"
    )
    return company.id, started.topup.id, started.url


def test_checkout_link_points_to_the_signed_test_page_and_creates_no_session(emulator_services):
    _, topup_id, url = start(emulator_services)
    settings = emulator_services.ctx.settings
    assert url == test_checkout.link(settings, topup_id)
    assert url.startswith(f"http://sidecar/test-checkout/{topup_id}?token=")
    token = url.split("token=")[1]
    assert test_checkout.token_valid(settings, topup_id, token)
    assert not test_checkout.token_valid(settings, topup_id + 1, token)
    topup = emulator_services.topups.get(topup_id)
    assert (topup.status, topup.stripe_checkout_session_id, topup.checkout_url) == ("pending", None, url)


def test_success_card_credits_the_top_up(emulator_services, localstripe):
    company_id, topup_id, _ = start(emulator_services)
    paid = emulator_services.stripe.test_checkout.pay(topup_id, card_token(localstripe, "4242424242424242"))
    assert (paid.topup.status, paid.client_secret) == ("succeeded", None)
    assert balance_cents(emulator_services, company_id) == 5000
    with pytest.raises(InvalidTopupState):
        emulator_services.stripe.test_checkout.pay(topup_id, card_token(localstripe, "4242424242424242"))
    assert balance_cents(emulator_services, company_id) == 5000


def test_declined_card_fails_the_top_up_with_the_banks_reason(emulator_services, localstripe):
    company_id, topup_id, _ = start(emulator_services)
    paid = emulator_services.stripe.test_checkout.pay(topup_id, card_token(localstripe, "4000000000000341"))
    assert (paid.topup.status, paid.topup.failure_code) == ("failed", "card_declined")
    assert paid.topup.failure_reason == "Your card was declined. (card_declined)"
    assert balance_cents(emulator_services, company_id) == 0


def test_three_d_secure_card_pays_once_the_cardholder_authenticates(emulator_services, localstripe):
    company_id, topup_id, _ = start(emulator_services)
    asked = emulator_services.stripe.test_checkout.pay(topup_id, card_token(localstripe, "4000002760003184"))
    assert (asked.topup.status, asked.stripe_status) == ("pending", "requires_action")
    assert asked.client_secret
    authenticate(localstripe, asked.client_secret, success=True)
    done = emulator_services.stripe.test_checkout.finish(topup_id)
    assert done.topup.status == "succeeded"
    assert balance_cents(emulator_services, company_id) == 5000


def test_failed_authentication_fails_the_top_up(emulator_services, localstripe):
    company_id, topup_id, _ = start(emulator_services)
    asked = emulator_services.stripe.test_checkout.pay(topup_id, card_token(localstripe, "4000002760003184"))
    assert asked.client_secret
    authenticate(localstripe, asked.client_secret, success=False)
    done = emulator_services.stripe.test_checkout.finish(topup_id)
    assert (done.topup.status, done.topup.failure_code) == ("failed", "payment_intent_authentication_failure")
    assert balance_cents(emulator_services, company_id) == 0


@pytest.mark.anyio
async def test_the_page_exists_in_emulator_mode_only(emulator_services, stripe_services):
    _, topup_id, url = start(emulator_services)
    path = url.removeprefix("http://sidecar")
    for built, expected in ((emulator_services, 200), (stripe_services, 404)):
        app = build_app(built, run_worker=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as http:
            page = await http.get(path)
        assert page.status_code == expected
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(emulator_services, run_worker=False)), base_url="http://sidecar"
    ) as http:
        page = await http.get(path)
        assert "TEST PAGE" in page.text and "Praxis Weber" in page.text
        forged = await http.post(f"/test-checkout/{topup_id}/pay?token=0", json={"card": "card_x"})
        assert forged.status_code == 404


def test_the_test_checkout_needs_an_emulator(database_url):
    with pytest.raises(ValidationError, match="BILLING_TEST_CHECKOUT_URL needs STRIPE_API_BASE"):
        make_settings(database_url, BILLING_TEST_CHECKOUT_URL="http://127.0.0.1:8001/test-checkout",
                      STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
