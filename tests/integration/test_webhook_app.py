"""The webhook sidecar in-process (httpx.ASGITransport), on SQLite and MariaDB."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import webhook_events
from tests.conftest import make_settings
from tests.integration.helpers import assert_ledger_ok, eur, new_company
from tests.integration.webhook_helpers import (
    RETELL_API_KEY,
    STRIPE_WEBHOOK_SECRET,
    retell_call,
    retell_headers,
    stripe_event,
    stripe_fixtures,
    stripe_headers,
)
from webhook_app.app import build_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def webhook_services(database_url, clock) -> AsyncIterator[Services]:
    settings = make_settings(database_url, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET, retell_api_key=RETELL_API_KEY)
    built = build_services(settings)
    yield built
    built.close()


@pytest.fixture
async def client(webhook_services) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(webhook_services, run_worker=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as http:
        yield http


def stored_events(services: Services) -> int:
    return services.db.read(lambda conn: conn.execute(select(func.count()).select_from(webhook_events)).scalar_one())


async def post_retell(client, body: bytes, **headers: str) -> httpx.Response:
    return await client.post("/api/retell/webhook", content=body, headers={**retell_headers(body), **headers})


async def test_call_ended_charges_once_however_often_it_is_delivered(client, webhook_services):
    company = new_company(webhook_services, funded="10.00")
    body = retell_call("call_ended", "call-1", company.id, seconds=187)
    responses = [await post_retell(client, body) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["status"] for r in responses] == ["processed", "duplicate", "duplicate"]
    assert webhook_services.balances.get(company.id).balance == eur("8.69")  # 187 s at 0.42/min = 1.309 -> 1.31
    assert stored_events(webhook_services) == 1
    assert_ledger_ok(webhook_services)


async def test_call_started_then_ended_reserves_then_releases(client, webhook_services):
    company = new_company(webhook_services, funded="10.00")
    start = int(time.time() * 1000) - 60_000
    r1 = await post_retell(client, retell_call("call_started", "call-2", company.id, start_ms=start))
    assert r1.status_code == 200
    assert webhook_services.balances.get(company.id).reserved == eur("2.10")
    r2 = await post_retell(client, retell_call("call_ended", "call-2", company.id, seconds=60, start_ms=start))
    assert r2.status_code == 200
    view = webhook_services.balances.get(company.id)
    assert view.reserved == eur("0.00") and view.balance == eur("9.58")


async def test_late_call_started_after_call_ended_holds_nothing(client, webhook_services):
    company = new_company(webhook_services, funded="10.00")
    start = int(time.time() * 1000) - 60_000
    await post_retell(client, retell_call("call_ended", "call-3", company.id, seconds=60, start_ms=start))
    await post_retell(client, retell_call("call_started", "call-3", company.id, start_ms=start))
    view = webhook_services.balances.get(company.id)
    assert view.reserved == eur("0.00") and view.balance == eur("9.58")


async def test_call_for_unknown_company_is_dead_lettered_with_a_reason(client, webhook_services):
    response = await post_retell(client, retell_call("call_ended", "call-4", 4242))
    assert response.status_code == 200 and response.json()["status"] == "dead"
    [dead] = webhook_services.webhooks.events(statuses=("dead",))
    assert "company 4242 does not exist" in (dead.last_error or "")


async def test_call_without_company_uses_the_agent_mapping(client, webhook_services):
    company = new_company(webhook_services, funded="10.00")
    webhook_services.companies.map_retell_agent("agent_x", company.id, actor="test")
    response = await post_retell(client, retell_call("call_ended", "call-5", None, seconds=60, agent_id="agent_x"))
    assert response.json()["status"] == "processed"
    assert webhook_services.balances.get(company.id).balance == eur("9.58")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing signature header"),
        ({"x-retell-signature": "garbage"}, "malformed signature header"),
        ({"x-retell-signature": "v=1,d=00"}, "malformed signature header"),
        ({"x-retell-signature": "v=1,d=" + "0" * 64}, "signature does not match"),
    ],
)
async def test_unsigned_or_badly_signed_retell_webhook_is_refused_and_stores_nothing(
    client, webhook_services, headers, reason
):
    body = retell_call("call_ended", "call-6", 1)
    response = await client.post("/api/retell/webhook", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == reason
    assert stored_events(webhook_services) == 0


async def test_stale_and_future_signatures_are_refused(client, webhook_services):
    body = retell_call("call_ended", "call-7", 1)
    now_ms = int(time.time() * 1000)
    for skew in (-301_000, 301_000):
        response = await client.post("/api/retell/webhook", content=body,
                                     headers=retell_headers(body, timestamp_ms=now_ms + skew))
        assert response.status_code == 400 and response.json()["error"] == "timestamp outside the tolerance"
    stale = stripe_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    response = await client.post("/api/stripe/webhook", content=stale,
                                 headers=stripe_headers(stale, timestamp=int(time.time()) + 400))
    assert response.status_code == 400
    assert stored_events(webhook_services) == 0


async def test_malformed_json_and_oversized_bodies_are_refused(client, webhook_services):
    body = b"{not json"
    response = await client.post("/api/retell/webhook", content=body, headers=retell_headers(body))
    assert response.status_code == 400 and response.json()["error"] == "malformed JSON"
    big = json.dumps({"event": "call_ended", "padding": "x" * (1024 * 1024)}).encode()
    response = await client.post("/api/retell/webhook", content=big, headers=retell_headers(big))
    assert response.status_code == 413
    assert stored_events(webhook_services) == 0


async def test_unknown_stripe_event_type_is_stored_as_ignored(client, webhook_services):
    body = stripe_event("customer.created", stripe_fixtures()["customer"], event_id="evt_ignored")
    response = await client.post("/api/stripe/webhook", content=body, headers=stripe_headers(body))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert stored_events(webhook_services) == 1


async def test_payment_intent_succeeded_credits_the_pending_topup_once(client, webhook_services):
    company = new_company(webhook_services, funded="1.00")
    topup = webhook_services.topups.create_pending(company_id=company.id, amount=eur("50.00"), source="payment_intent",
                                                   initiated_by="test", idempotency_key="k1")
    webhook_services.topups.attach_stripe_ids(topup.id, stripe_payment_intent_id="pi_test_1")
    intent = dict(stripe_fixtures()["payment_intent"], id="pi_test_1", amount=5000, amount_received=5000,
                  status="succeeded", currency="eur", metadata={"topup_id": str(topup.id)})
    body = stripe_event("payment_intent.succeeded", intent, event_id="evt_pi_1")
    for _ in range(2):
        response = await client.post("/api/stripe/webhook", content=body, headers=stripe_headers(body))
        assert response.status_code == 200
    again = stripe_event("charge.succeeded", dict(stripe_fixtures()["charge"], id="ch_1", payment_intent="pi_test_1",
                                                  amount=5000, currency="eur", paid=True, status="succeeded"),
                         event_id="evt_ch_1")
    await client.post("/api/stripe/webhook", content=again, headers=stripe_headers(again))
    assert webhook_services.balances.get(company.id).balance == eur("51.00")
    assert webhook_services.topups.get(topup.id).status == "succeeded"
    assert_ledger_ok(webhook_services)


async def test_health_ready_and_metrics_endpoints(client, webhook_services):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    company = new_company(webhook_services, funded="10.00")
    await post_retell(client, retell_call("call_ended", "call-m", company.id))
    text = (await client.get("/metrics")).text
    assert 'webhook_events_total{outcome="processed",provider="retell",type="call_ended"} 1.0' in text
    assert "webhook_inbox_backlog" in text


@pytest.mark.parametrize(
    "database_url_of",
    [
        pytest.param(lambda tmp_path: f"sqlite:///{tmp_path / 'never-migrated.db'}", id="unmigrated-sqlite"),
        pytest.param(lambda _: "mysql+pymysql://billing:pw@127.0.0.1:1/billing", id="unreachable-mariadb"),
    ],
)
async def test_a_database_that_cannot_take_the_event_answers_503_so_the_sender_retries(database_url_of, tmp_path):
    settings = make_settings(
        database_url_of(tmp_path), stripe_webhook_secret=STRIPE_WEBHOOK_SECRET, retell_api_key=RETELL_API_KEY
    )
    services = build_services(settings)
    app = build_app(services, run_worker=False)
    body = retell_call("call_ended", "call_db_down", 1)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as http:
            response = await http.post("/api/retell/webhook", content=body, headers=retell_headers(body))
    finally:
        services.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"error": "database unavailable, retry later"}
