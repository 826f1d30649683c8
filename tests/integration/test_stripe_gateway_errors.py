"""The gateway against Stripe's own object shapes through ``httpx.MockTransport`` (no emulator).

Checkout Sessions (which localstripe lacks) and the error answers Stripe gives: declines with a decline code,
an invalid key, rate limits, network failures retried with the same idempotency key, and the test/live check.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import select

from billing_core.adapters.stripe_gateway import StripeGateway, check_key_mode
from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import topups
from billing_core.errors import (
    InvalidInput,
    PaymentDeclined,
    StripeConfigurationError,
    StripeRateLimited,
    StripeRequestRejected,
    StripeUnavailable,
)
from billing_core.services.auto_topup import AUTH_REQUIRED_REASON
from tests.conftest import make_settings
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur, new_company
from tests.integration.webhook_helpers import stripe_fixtures

FIXTURES = stripe_fixtures()  # Stripe's own example objects (shared/reference/stripe-api-fixtures.json)
TEST_KEY = "sk_test_51QxSecretKeyValue0123456789"
Handler = Callable[[httpx.Request], httpx.Response]


def fixture(kind: str, **fields: Any) -> dict[str, Any]:
    """One of Stripe's own example objects, with the fields this test cares about."""
    return {**copy.deepcopy(FIXTURES[kind]), **fields}


def stripe_error(status: int, **error: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": error})


class FakeStripe:
    """Answers like api.stripe.com; records every request (with its form fields and headers)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: list[tuple[str, str, Handler]] = []
        self.sessions: dict[str, dict[str, Any]] = {}  # by id
        self.session_by_key: dict[str, str] = {}  # Idempotency-Key -> session id, as Stripe replays it
        self.on_create_session: Callable[[httpx.Request], None] | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.insert(0, (method, path, handler))

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path, r.url.path)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for method, path, handler in self.routes:
            if request.method == method and re.fullmatch(path, request.url.path):
                return handler(request)
        if request.method == "POST" and request.url.path == "/v1/customers":
            data = form(request)
            return httpx.Response(200, json=fixture(
                "customer", id=f"cus_test{len(self.calls('POST', '/v1/customers'))}", name=data.get("name"),
                email=data.get("email"), metadata={"company_id": data.get("metadata[company_id]")},
            ))
        if request.method == "POST" and request.url.path == "/v1/checkout/sessions":
            return self.create_session(request)
        if request.method == "GET" and request.url.path.startswith("/v1/checkout/sessions/"):
            return httpx.Response(200, json=self.sessions[request.url.path.rsplit("/", 1)[1]])
        return stripe_error(404, type="invalid_request_error", code="resource_missing",
                            message=f"No such route: {request.method} {request.url.path}")

    def create_session(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        if key in self.session_by_key:  # Stripe replays the first answer for a repeated key
            return httpx.Response(200, json=self.sessions[self.session_by_key[key]])
        if self.on_create_session is not None:
            self.on_create_session(request)
        data = form(request)
        session_id = f"cs_test_a1{len(self.sessions) + 1}"
        session = fixture(
            "checkout.session", id=session_id, url=f"https://checkout.stripe.com/c/pay/{session_id}",
            amount_total=int(data["line_items[0][price_data][unit_amount]"]),
            currency=data["line_items[0][price_data][currency]"], customer=data["customer"],
            client_reference_id=data.get("client_reference_id"), payment_intent=None, status="open",
            payment_status="unpaid", success_url=data["success_url"], cancel_url=data["cancel_url"],
            metadata={k[len("metadata["):-1]: v for k, v in data.items() if k.startswith("metadata[")},
        )
        self.sessions[session_id] = session
        self.session_by_key[key] = session_id
        return httpx.Response(200, json=session)


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


def build_mocked(settings, clock, fake: FakeStripe, *, retries: int = 0) -> Services:
    gateway = StripeGateway(TEST_KEY, test_mode=True, transport=httpx.MockTransport(fake), max_network_retries=retries)
    return build_services(settings, clock=clock, gateway=gateway)


@pytest.fixture
def mocked(settings, clock, fake) -> Iterator[Services]:
    """The whole system; its gateway talks to ``fake`` as if it were api.stripe.com."""
    built = build_mocked(settings, clock, fake)
    try:
        yield built
    finally:
        built.close()


def checkout(services, company_id, amount="50.00", key="checkout-1", save=False):
    return services.stripe.payments.start_checkout(
        company_id=company_id, amount=eur(amount), initiated_by="mcp:claude", idempotency_key=key,
        save_payment_method=save,
    )


def topup_rows(services, company_id):
    return services.db.read(lambda conn: conn.execute(
        select(topups.c.id, topups.c.status, topups.c.source).where(topups.c.company_id == company_id)
    ).all())


# -- Checkout Sessions ----------------------------------------------------------------------------------------


def test_checkout_records_a_pending_topup_before_creating_the_session_and_returns_its_url(mocked, fake, settings):
    company = new_company(mocked)
    seen_in_db: list[Any] = []
    fake.on_create_session = lambda request: seen_in_db.extend(topup_rows(mocked, company.id))

    started = checkout(mocked, company.id, "50.00")

    [(topup_id, status, source)] = seen_in_db
    assert (status, source) == ("pending", "checkout")
    [request] = fake.calls("POST", "/v1/checkout/sessions")
    assert request.headers["Idempotency-Key"] == f"topup:{topup_id}:checkout"
    sent = form(request)
    assert sent["mode"] == "payment"
    assert (sent["payment_method_types[0]"], sent["payment_method_types[1]"]) == ("card", "sepa_debit")
    assert "payment_method_types[2]" not in sent
    assert sent["billing_address_collection"] == "required"
    assert sent["success_url"] == settings.checkout_success_url
    assert sent["cancel_url"] == settings.checkout_cancel_url
    assert sent["metadata[topup_id]"] == str(topup_id)
    assert sent["payment_intent_data[metadata][topup_id]"] == str(topup_id)
    assert sent["client_reference_id"] == str(topup_id)
    assert sent["customer"] == mocked.companies.show(company.id).stripe_customer_id
    assert sent["line_items[0][price_data][unit_amount]"] == "5000"
    assert sent["line_items[0][price_data][currency]"] == "eur"
    assert sent["line_items[0][quantity]"] == "1"
    assert "payment_intent_data[setup_future_usage]" not in sent
    session_id = fake.session_by_key[f"topup:{topup_id}:checkout"]
    assert started.url == fake.sessions[session_id]["url"]
    assert started.topup.id == topup_id
    assert started.topup.stripe_checkout_session_id == session_id
    assert started.topup.checkout_url == started.url
    assert started.topup.status == "pending"
    assert balance_cents(mocked, company.id) == 0


@pytest.mark.parametrize("save", [True, False])
def test_checkout_saves_the_payment_method_for_off_session_use_only_when_asked(mocked, fake, save):
    company = new_company(mocked)

    checkout(mocked, company.id, save=save)

    sent = form(fake.calls("POST", "/v1/checkout/sessions")[0])
    assert sent.get("payment_intent_data[setup_future_usage]") == ("off_session" if save else None)


def test_starting_checkout_again_with_the_same_key_returns_the_same_session_without_calling_stripe(mocked, fake):
    company = new_company(mocked)
    first = checkout(mocked, company.id, key="add-funds-7")
    calls_before = len(fake.requests)

    again = checkout(mocked, company.id, key="add-funds-7")

    assert again.url == first.url
    assert again.topup.id == first.topup.id
    assert len(fake.requests) == calls_before
    assert len(topup_rows(mocked, company.id)) == 1


def test_starting_checkout_again_with_the_key_of_a_paid_topup_does_not_call_stripe_again(mocked, fake):
    company = new_company(mocked)
    first = checkout(mocked, company.id, key="add-funds-9")
    mocked.topups.settle(first.topup.id, stripe_payment_intent_id="pi_3Paid", stripe_charge_id="ch_3Paid")
    requests_before = len(fake.requests)

    again = checkout(mocked, company.id, key="add-funds-9")

    assert again.topup.status == "succeeded"
    assert len(fake.requests) == requests_before


def test_checkout_retried_after_a_lost_answer_asks_stripe_again_with_the_same_key(mocked, fake):
    company = new_company(mocked)
    lost = {"first": True}

    def create_then_lose_the_answer(request: httpx.Request) -> httpx.Response:
        answer = fake.create_session(request)
        if lost.pop("first", False):
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return answer

    fake.route("POST", "/v1/checkout/sessions", create_then_lose_the_answer)
    with pytest.raises(StripeUnavailable):
        checkout(mocked, company.id, key="add-funds-8")

    started = checkout(mocked, company.id, key="add-funds-8")

    keys = [r.headers["Idempotency-Key"] for r in fake.calls("POST", "/v1/checkout/sessions")]
    assert keys == [f"topup:{started.topup.id}:checkout"] * 2
    assert len(fake.sessions) == 1
    assert started.url == next(iter(fake.sessions.values()))["url"]
    assert len(topup_rows(mocked, company.id)) == 1


@pytest.mark.parametrize("country", ["US", "FR"])
def test_checkout_for_a_company_outside_the_allowed_countries_is_refused_before_anything_is_created(
    mocked, fake, country
):
    company = new_company(mocked)
    mocked.companies.set(company.id, actor="test", country=country)

    with pytest.raises(InvalidInput, match=country):
        checkout(mocked, company.id)

    assert fake.requests == []
    assert topup_rows(mocked, company.id) == []
    assert mocked.companies.show(company.id).stripe_customer_id is None


@pytest.mark.parametrize("country", ["DE", "AT", "CH"])
def test_checkout_is_offered_in_the_configured_countries(mocked, fake, country):
    company = new_company(mocked)
    mocked.companies.set(company.id, actor="test", country=country)
    assert checkout(mocked, company.id).url.startswith("https://checkout.stripe.com/")


def test_reconcile_credits_a_checkout_session_that_was_paid(mocked, fake):
    company = new_company(mocked)
    started = checkout(mocked, company.id, "50.00")
    session = fake.sessions[started.topup.stripe_checkout_session_id]
    session.update(status="complete", payment_status="paid", payment_intent="pi_3PaidCheckout")
    fake.route("GET", "/v1/payment_intents/pi_3PaidCheckout", lambda request: httpx.Response(200, json=fixture(
        "payment_intent", id="pi_3PaidCheckout", amount=5000, amount_received=5000, currency="eur",
        status="succeeded", latest_charge="ch_3PaidCheckout", last_payment_error=None, next_action=None,
        customer=session["customer"], metadata={"topup_id": str(started.topup.id)},
    )))

    report = mocked.stripe.reconcile.run(min_age=timedelta(0))

    assert report.changes == [f"top-up {started.topup.id}: pending -> succeeded"]
    topup = mocked.topups.get(started.topup.id)
    assert (topup.stripe_payment_intent_id, topup.stripe_charge_id) == ("pi_3PaidCheckout", "ch_3PaidCheckout")
    assert balance_cents(mocked, company.id) == 5000
    assert mocked.stripe.reconcile.run(min_age=timedelta(0)).changes == []
    assert balance_cents(mocked, company.id) == 5000
    assert_ledger_ok(mocked)


def test_reconcile_cancels_the_topup_of_an_expired_checkout_session(mocked, fake):
    company = new_company(mocked)
    started = checkout(mocked, company.id, "50.00")
    fake.sessions[started.topup.stripe_checkout_session_id].update(status="expired")

    report = mocked.stripe.reconcile.run(min_age=timedelta(0))

    assert report.changes == [f"top-up {started.topup.id}: pending -> canceled"]
    assert mocked.topups.get(started.topup.id).status == "canceled"
    assert balance_cents(mocked, company.id) == 0


# -- error mapping ---------------------------------------------------------------------------------------------


def test_a_card_declined_for_insufficient_funds_raises_payment_declined_with_that_code(mocked, fake):
    company = new_company(mocked)
    fake.route("POST", r"/v1/payment_methods/[^/]+/attach", lambda request: stripe_error(
        402, type="card_error", code="card_declined", decline_code="insufficient_funds",
        message="Your card has insufficient funds.", param="",
    ))

    with pytest.raises(PaymentDeclined) as declined:
        mocked.stripe.payments.attach_payment_method(company.id, "pm_1Declined", actor="test")

    assert declined.value.decline_code == "insufficient_funds"
    assert "insufficient funds" in declined.value.message


def saved_method_routes(fake: FakeStripe, customer_id: str, confirm: Handler, after_confirm: dict[str, Any]) -> None:
    """A saved card on ``customer_id`` and a PaymentIntent whose confirm ``confirm`` answers."""
    intent = fixture("payment_intent", id="pi_3Saved", amount=5000, currency="eur", customer=customer_id,
                     payment_method="pm_1Saved", status="requires_confirmation", last_payment_error=None,
                     next_action=None)
    fake.route("GET", "/v1/payment_methods/pm_1Saved", lambda request: httpx.Response(200, json=fixture(
        "payment_method", id="pm_1Saved", type="card", customer=customer_id)))
    fake.route("POST", "/v1/payment_intents", lambda request: httpx.Response(200, json=intent))
    fake.route("POST", "/v1/payment_intents/pi_3Saved/confirm", confirm)
    fake.route("GET", "/v1/payment_intents/pi_3Saved", lambda request: httpx.Response(
        200, json={**intent, **after_confirm}))
    fake.route("POST", "/v1/payment_intents/pi_3Saved/cancel", lambda request: httpx.Response(
        200, json={**intent, **after_confirm, "status": "canceled"}))


def test_a_confirm_declined_with_a_decline_code_fails_the_topup_with_that_code(mocked, fake):
    company = new_company(mocked)
    customer_id = mocked.stripe.payments.ensure_customer(company.id)
    error = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
             "message": "Your card has insufficient funds."}
    saved_method_routes(fake, customer_id, lambda request: stripe_error(402, **error, payment_intent={
        **fixture("payment_intent"), "id": "pi_3Saved", "status": "requires_payment_method"}),
        {"status": "requires_payment_method", "last_payment_error": error})

    outcome = mocked.stripe.payments.pay_with_saved_method(
        company_id=company.id, amount=eur("50.00"), payment_method_id="pm_1Saved", initiated_by="api:client",
        idempotency_key="pay-1",
    )

    assert outcome.topup.status == "failed"
    assert outcome.topup.failure_code == "insufficient_funds"
    assert "insufficient funds" in (outcome.topup.failure_reason or "")
    assert balance_cents(mocked, company.id) == 0


def test_an_off_session_auto_topup_stripe_wants_authenticated_fails_and_asks_for_a_new_method(mocked, fake):
    company = new_company(mocked, funded="5.00")
    customer_id = mocked.stripe.payments.ensure_customer(company.id)
    mocked.companies.set(company.id, actor="test", auto_topup_enabled=True, auto_topup_threshold=eur("10.00"),
                         auto_topup_amount=eur("50.00"), stripe_payment_method_id="pm_1Saved")
    error = {"type": "card_error", "code": "authentication_required", "decline_code": "authentication_required",
             "message": "Your card was declined. This transaction requires authentication."}
    saved_method_routes(fake, customer_id, lambda request: stripe_error(402, **error),
                        {"status": "requires_payment_method", "last_payment_error": error})

    outcome = mocked.stripe.auto_topup.trigger(company.id)

    [confirm] = fake.calls("POST", "/v1/payment_intents/pi_3Saved/confirm")
    assert form(confirm).get("off_session") == "true"  # real Stripe is told the customer is not present
    assert outcome.topup is not None and outcome.topup.status == "failed"
    assert outcome.topup.failure_code == "authentication_required"
    assert outcome.topup.failure_reason == AUTH_REQUIRED_REASON
    assert balance_cents(mocked, company.id) == 500


def test_an_invalid_api_key_hints_at_a_test_live_mismatch_without_revealing_the_key(mocked, fake, caplog):
    company = new_company(mocked)
    fake.route("POST", "/v1/customers", lambda request: stripe_error(
        401, type="invalid_request_error", message=f"Invalid API Key provided: sk_test_****{TEST_KEY[-4:]}"))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(StripeConfigurationError) as refused:
        mocked.stripe.payments.ensure_customer(company.id)

    message = refused.value.message
    assert "test" in message and "live" in message and "STRIPE_TEST_MODE" in message
    assert TEST_KEY not in message and TEST_KEY[-4:] not in message
    assert TEST_KEY not in str(refused.value) and TEST_KEY not in repr(refused.value)
    assert TEST_KEY not in caplog.text
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_rate_limited_request_raises_stripe_rate_limited_without_retrying(mocked, fake):
    company = new_company(mocked)
    fake.route("POST", "/v1/customers", lambda request: stripe_error(
        429, type="invalid_request_error", code="rate_limit",
        message="Too many requests hit the API too quickly."))

    with pytest.raises(StripeRateLimited):
        mocked.stripe.payments.ensure_customer(company.id)

    assert len(fake.calls("POST", "/v1/customers")) == 1


def test_a_network_error_is_retried_with_the_same_idempotency_key_and_then_reported_unavailable(
    settings, clock, fake
):
    services = build_mocked(settings, clock, fake, retries=2)
    try:
        company = new_company(services)

        def unreachable(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        fake.route("POST", "/v1/payment_intents", unreachable)

        with pytest.raises(StripeUnavailable, match="safe to retry"):
            services.stripe.payments.create_payment_intent(
                company_id=company.id, amount=eur("50.00"), initiated_by="api:client", idempotency_key="pi-1")

        [topup] = services.topups.list(company_id=company.id)
        attempts = fake.calls("POST", "/v1/payment_intents")
        assert [r.headers["Idempotency-Key"] for r in attempts] == [f"topup:{topup.id}:payment_intent"] * 3
        assert len({r.content for r in attempts}) == 1
        assert topup.status == "pending" and topup.stripe_payment_intent_id is None
        assert balance_cents(services, company.id) == 0
    finally:
        services.close()


def test_stripe_internal_errors_are_reported_unavailable(mocked, fake):
    company = new_company(mocked)
    fake.route("POST", "/v1/customers", lambda request: stripe_error(500, type="api_error", message="Oops"))
    with pytest.raises(StripeUnavailable):
        mocked.stripe.payments.ensure_customer(company.id)


def test_an_unknown_object_is_reported_as_a_rejected_request(mocked, fake):
    company = new_company(mocked)
    with pytest.raises(StripeRequestRejected, match="No such"):
        mocked.stripe.payments.use_for_auto_topup(company.id, "pm_1Unknown", actor="test")
    assert mocked.companies.show(company.id).stripe_payment_method_id is None


# -- test mode and live mode -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "test_mode"),
    [("sk_live_51QxLiveSecret0123456789", True), ("sk_test_51QxTestSecret0123456789", False),
     ("rk_live_51QxRestricted0123456789", True)],
)
def test_a_key_of_the_other_mode_is_refused_at_start_up(key, test_mode, tmp_path):
    with pytest.raises(StripeConfigurationError, match="STRIPE_TEST_MODE") as refused:
        check_key_mode(key, test_mode=test_mode)
    assert key not in refused.value.message
    with pytest.raises(StripeConfigurationError):
        StripeGateway(key, test_mode=test_mode)
    settings = make_settings(f"sqlite:///{tmp_path / 'billing.db'}", stripe_secret=key, stripe_test_mode=test_mode)
    with pytest.raises(StripeConfigurationError):
        build_services(settings)


@pytest.mark.parametrize(
    ("key", "test_mode"),
    [("sk_test_51QxTestSecret0123456789", True), ("sk_live_51QxLiveSecret0123456789", False),
     ("rk_test_51QxRestricted0123456789", True)],
)
def test_a_key_of_the_configured_mode_is_accepted(key, test_mode):
    check_key_mode(key, test_mode=test_mode)


@pytest.mark.parametrize("key", ["", "pk_test_51QxPublishable", "whsec_abc", "sk_51QxNoMode"])
def test_something_that_is_not_a_secret_key_is_refused(key):
    with pytest.raises(StripeConfigurationError) as refused:
        check_key_mode(key, test_mode=True)
    assert not key or key not in refused.value.message

