"""Signed webhooks with arbitrary bodies through the whole app (signature, body, models, handlers, inbox):
the answer is a 2xx or a 4xx, never a 5xx, and the ledger stays consistent. SQLite and MariaDB."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from billing_core.bootstrap import Services, build_services
from tests.conftest import make_settings
from tests.integration.helpers import assert_ledger_ok, new_company
from tests.integration.webhook_helpers import RETELL_API_KEY, STRIPE_WEBHOOK_SECRET, retell_examples, stripe_fixtures
from webhook_app.app import build_app

STATUSES = {"processed", "ignored", "dead", "failed", "duplicate", "conflict", "pending"}

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.text(max_size=40),
    st.sampled_from(["eur", "usd", "XXX", "\u0661\u0660", "\ud800", "call_1", "1", "-1", "9" * 30]),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3),
)
CALL_FIELDS = ["call_id", "start_timestamp", "end_timestamp", "duration_ms", "metadata", "from_number", "agent_id"]
OBJECT_FIELDS = ["id", "amount", "amount_received", "currency", "charge", "payment_intent", "status", "metadata"]
STRIPE_TYPES = ["payment_intent.succeeded", "charge.dispute.created", "charge.dispute.closed", "refund.created",
                "charge.refunded", "checkout.session.completed", "payment_method.detached"]
STRIPE_OBJECTS = {"payment_intent": "payment_intent", "charge.dispute": "dispute", "refund": "refund",
                  "charge": "charge", "checkout.session": "checkout.session", "payment_method": "payment_method"}


@pytest.fixture
def fuzz(database_url: str) -> Iterator[tuple[Services, Starlette, int]]:
    settings_ = make_settings(database_url, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET, retell_api_key=RETELL_API_KEY)
    built = build_services(settings_)
    company = new_company(built, funded="50.00")
    yield built, build_app(built, run_worker=False), company.id
    built.close()


def retell_signed(body: bytes) -> dict[str, str]:
    millis = int(time.time() * 1000)
    digest = hmac.new(RETELL_API_KEY.encode(), body + str(millis).encode(), hashlib.sha256).hexdigest()
    return {"x-retell-signature": f"v={millis},d={digest}"}


def stripe_signed(body: bytes) -> dict[str, str]:
    """Stripe's scheme over raw bytes (its SDK helper takes text): HMAC-SHA256 of ``t.body``."""
    now = int(time.time())
    digest = hmac.new(STRIPE_WEBHOOK_SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={now},v1={digest}"}


def encode(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")


def answer_is_safe(app: Starlette, path: str, body: bytes, headers: dict[str, str]) -> None:
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as http:
            return await http.post(path, content=body, headers=headers)

    response = anyio.run(post)
    assert response.status_code < 500, (response.status_code, response.text, body[:300])
    if response.status_code == 200:
        assert response.json()["status"] in STATUSES, response.text
    else:
        assert 400 <= response.status_code < 500 and response.json()["error"], response.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.sampled_from(["call_started", "call_ended", "call_analyzed"]),
       changes=st.dictionaries(st.sampled_from(CALL_FIELDS), values, max_size=4))
def test_signed_retell_events_with_arbitrary_fields_never_answer_5xx(fuzz, event: str, changes: dict[str, Any]):
    services, client, company_id = fuzz
    body = copy.deepcopy(retell_examples()[event])
    body["call"]["metadata"] = {"company_id": str(company_id)}
    body["call"].update(changes)
    raw = encode(body)
    answer_is_safe(client, "/api/retell/webhook", raw, retell_signed(raw))
    assert_ledger_ok(services)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_type=st.sampled_from(STRIPE_TYPES), changes=st.dictionaries(st.sampled_from(OBJECT_FIELDS), values,
                                                                          max_size=4),
       livemode=st.sampled_from([False, True, "false", None]))
def test_signed_stripe_events_with_arbitrary_fields_never_answer_5xx(fuzz, event_type: str, changes: dict[str, Any],
                                                                      livemode: Any):
    services, client, _ = fuzz
    kind = STRIPE_OBJECTS[event_type.rsplit(".", 1)[0]]
    obj = dict(copy.deepcopy(stripe_fixtures()[kind]), **changes)
    event = dict(copy.deepcopy(stripe_fixtures()["event"]), id=f"evt_fuzz_{time.time_ns()}", type=event_type,
                 livemode=livemode, data={"object": obj})
    raw = encode(event)
    answer_is_safe(client, "/api/stripe/webhook", raw, stripe_signed(raw))
    assert_ledger_ok(services)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), provider=st.sampled_from(["retell", "stripe"]))
def test_signed_arbitrary_bytes_never_answer_5xx(fuzz, raw: bytes, provider: str):
    _, client, _ = fuzz
    headers = retell_signed(raw) if provider == "retell" else stripe_signed(raw)
    answer_is_safe(client, f"/api/{provider}/webhook", raw, headers)
