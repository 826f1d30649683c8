"""The local test checkout page of emulator mode; mounted only when ``BILLING_TEST_CHECKOUT_URL`` is set,
which the settings allow only together with a Stripe emulator (``STRIPE_API_BASE``).

Every screen says it is a test page. The person picks one of Stripe's test cards; the card goes from the
browser straight to localstripe through the Stripe.js stand-in localstripe serves (``/js.stripe.com/v3/``),
and only the resulting token reaches this page's server, which pays the top-up through a PaymentIntent.
"""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from billing_core.bootstrap import Services
from billing_core.errors import BillingError, NotFound
from billing_core.services import test_checkout

# Stripe's test cards as localstripe understands them. localstripe declines 4000000000000002 only when the
# card is attached to a customer, so the decline card here is the one it declines when charged.
TEST_CARDS = (
    ("success", "4242424242424242", "Visa 4242 4242 4242 4242 — payment succeeds"),
    ("decline", "4000000000000341", "Visa 4000 0000 0000 0341 — the bank declines the charge"),
    ("three-d-secure", "4000002760003184", "Visa 4000 0027 6000 3184 — 3-D Secure authentication required"),
)

BANNER = "TEST PAGE — Stripe emulator (localstripe): no real money moves"

STYLE = """
body { font-family: sans-serif; max-width: 40rem; margin: 0 auto; padding: 1rem; }
.test-banner { background: #b00020; color: #fff; font-weight: bold; padding: .6rem 1rem; text-align: center; }
dl { display: grid; grid-template-columns: max-content auto; gap: .3rem 1rem; }
dt { font-weight: bold; }
label { display: block; margin: .3rem 0; }
#card-element { margin: 1rem 0; }
button#pay { font-size: 1.1rem; padding: .5rem 1.5rem; }
.outcome { padding: .8rem; margin: 1rem 0; border: 2px solid #888; }
"""


def _page(title: str, body: str, *, script: str = "") -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>[TEST] {html.escape(title)}</title>"
        f"<style>{STYLE}</style>{script}</head><body>"
        f"<div class='test-banner' id='test-banner'>{html.escape(BANNER)}</div>{body}</body></html>"
    )


def build_routes(services: Services) -> list[Route]:
    settings = services.ctx.settings
    locale = settings.default_locale

    def checkout() -> test_checkout.TestCheckoutService:
        service = services.stripe.test_checkout
        if service is None:
            raise NotFound("the test checkout is not enabled")
        return service

    def authorised(request: Request) -> int | None:
        topup_id = int(request.path_params["topup_id"])
        token = request.query_params.get("token", "")
        return topup_id if test_checkout.token_valid(settings, topup_id, token) else None

    def failure(error: BillingError) -> JSONResponse:
        status = 404 if isinstance(error, NotFound) else 503 if error.retryable else 409
        return JSONResponse({"error": error.message, "code": error.code}, status_code=status)

    async def page(request: Request) -> Response:
        topup_id = authorised(request)
        if topup_id is None:
            return _page("Unknown link", "<p>This checkout link is not valid.</p>")
        try:
            view = await services.call(checkout().page, topup_id)
        except BillingError as error:
            return _page("Checkout", f"<p>{html.escape(error.message)}</p>")
        topup = view.topup
        bonus = view.bonus.format(locale) if view.bonus and view.bonus.cents else "none"
        cards = "".join(
            f"<label><input type='radio' name='card' value='{number}' data-card='{key}'"
            f"{' checked' if key == 'success' else ''}> {html.escape(text)}</label>"
            for key, number, text in TEST_CARDS
        )
        config = {
            "publishableKey": settings.stripe_key,
            "pay": f"{request.url.path}/pay?token={request.query_params['token']}",
            "finish": f"{request.url.path}/finish?token={request.query_params['token']}",
            "status": f"{request.url.path}/status?token={request.query_params['token']}",
            "state": topup.status,
        }
        outcome = html.escape(_describe(topup.status, topup.failure_reason))
        body = f"""
<h1>Top up the prepaid balance</h1>
<dl>
  <dt>Company</dt><dd id="company">{html.escape(view.company_name)}</dd>
  <dt>Amount</dt><dd id="amount">{html.escape(topup.amount.format(locale))}</dd>
  <dt>Bonus</dt><dd id="bonus">{html.escape(bonus)}</dd>
  <dt>Top-up</dt><dd id="topup">#{topup.id}</dd>
</dl>
<div id="payment"{" hidden" if topup.status not in test_checkout.PAYABLE else ""}>
  <fieldset><legend>Test card</legend>{cards}</fieldset>
  <div id="card-element"></div>
  <button id="pay" type="button">Pay {html.escape(topup.amount.format(locale))}</button>
</div>
<div id="outcome" class="outcome" role="status" data-status="{topup.status}">{outcome}</div>
<script>const CHECKOUT = {json.dumps(config)};</script>
<script>{CLIENT_SCRIPT}</script>
"""
        stripe_js = f"<script src='{html.escape(settings.stripe_api_base or '')}/js.stripe.com/v3/'></script>"
        return _page(f"Top-up {topup.id}", body, script=stripe_js)

    async def status(request: Request) -> Response:
        topup_id = authorised(request)
        if topup_id is None:
            return JSONResponse({"error": "invalid link"}, status_code=404)
        try:
            view = await services.call(checkout().page, topup_id)
        except BillingError as error:
            return failure(error)
        return JSONResponse(_state(view.topup.status, view.topup.failure_reason, None))

    async def pay(request: Request) -> Response:
        topup_id = authorised(request)
        if topup_id is None:
            return JSONResponse({"error": "invalid link"}, status_code=404)
        try:
            data: Any = json.loads(await request.body())
            card = str(data["card"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send {\"card\": \"card_...\"}"}, status_code=400)
        try:
            result = await services.call.blocking(checkout().pay, topup_id, card)
        except BillingError as error:
            return failure(error)
        return JSONResponse(_state(result.topup.status, result.topup.failure_reason, result.client_secret))

    async def finish(request: Request) -> Response:
        topup_id = authorised(request)
        if topup_id is None:
            return JSONResponse({"error": "invalid link"}, status_code=404)
        try:
            result = await services.call.blocking(checkout().finish, topup_id)
        except BillingError as error:
            return failure(error)
        return JSONResponse(_state(result.topup.status, result.topup.failure_reason, None))

    base = "/test-checkout/{topup_id:int}"
    return [
        Route(base, page, methods=["GET"]),
        Route(f"{base}/status", status, methods=["GET"]),
        Route(f"{base}/pay", pay, methods=["POST"]),
        Route(f"{base}/finish", finish, methods=["POST"]),
    ]


def _state(status: str, reason: str | None, client_secret: str | None) -> dict[str, Any]:
    return {
        "status": status,
        "failure_reason": reason,
        "client_secret": client_secret,
        "message": _describe(status, reason),
    }


def _describe(status: str, reason: str | None) -> str:
    if status == "succeeded":
        return "Payment succeeded: the balance has been credited. An invoice is on its way by mail."
    if status == "failed":
        return f"Payment failed: {reason or 'no reason given'}"
    if status == "canceled":
        return "This top-up was canceled."
    if status == "processing":
        return "Payment is processing…"
    return "Choose a test card and pay."


CLIENT_SCRIPT = """
(function () {
  const stripe = Stripe(CHECKOUT.publishableKey);
  const card = stripe.elements().create('card');
  const outcome = document.getElementById('outcome');
  const payment = document.getElementById('payment');
  if (!payment.hidden) { card.mount('#card-element'); }

  function fill(number) {
    const values = {number: number, exp_month: '12', exp_year: '34', cvc: '123', postal_code: '10117'};
    for (const field of Object.keys(values)) {
      const input = card._inputs[field];
      input.value = values[field];
      input.dispatchEvent(new Event('input'));
    }
  }
  for (const radio of document.querySelectorAll('input[name=card]')) {
    radio.addEventListener('change', () => fill(radio.value));
    if (radio.checked && !payment.hidden) { fill(radio.value); }
  }

  async function post(url) {
    const response = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                      body: arguments[1] ? JSON.stringify(arguments[1]) : '{}'});
    return [response.ok, await response.json()];
  }

  function show(state) {
    outcome.textContent = state.message || state.error || '';
    outcome.dataset.status = state.status || 'error';
    if (state.status && state.status !== 'pending') { payment.hidden = true; }
  }

  async function settle() {
    for (let i = 0; i < 60; i++) {
      const state = await (await fetch(CHECKOUT.status)).json();
      if (state.status !== 'pending' && state.status !== 'processing') { show(state); return; }
      await new Promise(resolve => setTimeout(resolve, 500));
    }
  }

  document.getElementById('pay').addEventListener('click', async () => {
    document.getElementById('pay').disabled = true;
    outcome.textContent = 'Paying…';
    const tokenResult = await stripe.createToken(card);
    if (tokenResult.error) { show({error: tokenResult.error.message}); return; }
    let [ok, state] = await post(CHECKOUT.pay, {card: tokenResult.token.card.id});
    if (!ok) { show(state); return; }
    if (state.client_secret) {
      outcome.textContent = '3-D Secure: the bank asks the cardholder to confirm.';
      await stripe.confirmCardPayment(state.client_secret);
      [ok, state] = await post(CHECKOUT.finish);
      if (!ok) { show(state); return; }
    }
    show(state);
    await settle();
  });
})();
"""
