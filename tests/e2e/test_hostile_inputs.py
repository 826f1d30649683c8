"""Hostile input, signed and unsigned, against a real ``billing webhooks`` process on SQLite and MariaDB.

Each row of the table is one request and what it must get: a 4xx, or a 2xx with the event dead-lettered
(or ignored, for objects that are not ours), and never a 5xx. Before and after the whole table the test
reads what money depends on (balances, reserved amounts, the ledger, top-ups, holds, charges, disputes)
and requires it unchanged; ``billing ledger check`` passes; nothing in the answers, the stored errors or
the process's log repeats the caller's phone number, and no traceback is printed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select

from billing_core.bootstrap import Services
from billing_core.db.tables import (
    balances,
    call_charges,
    disputes,
    ledger,
    notifications,
    reservations,
    topups,
    webhook_events,
)
from billing_core.money import Money
from tests.e2e.test_webhook_process import ledger_check, private_database_url, services, sidecars  # noqa: F401
from tests.integration.helpers import new_company
from tests.integration.webhook_helpers import (
    RETELL_API_KEY,
    retell_examples,
    retell_headers,
    stripe_event,
    stripe_fixtures,
    stripe_headers,
)

PHONE = "+4915199988877"
HEX = "0" * 64


@dataclass
class Case:
    name: str
    path: str
    body: bytes
    headers: dict[str, Any] | list[tuple[str, Any]]
    expect: str  # 4xx | dead | ignored | conflict
    event_id: str | None = None  # the inbox row a 2xx must have left


@dataclass
class World:
    """What the table refers to: a funded company, a paid top-up, a pending one, a running and a charged call."""

    company_id: int
    paid_topup: int
    paid_intent: str
    paid_charge: str
    pending_intent: str
    checkout_topup: int
    start_ms: int
    cases: list[Case] = field(default_factory=list)


def retell_body(event: str, call_id: str, company: Any, *, start_ms: int, duration_ms: int | None = 60_000,
                end_ms: int | None = None, **call_fields: Any) -> bytes:
    body = copy.deepcopy(retell_examples()[event])
    call = body["call"]
    call.update(call_id=call_id, start_timestamp=start_ms, metadata={"company_id": company}, from_number=PHONE)
    if event != "call_started":
        call.update(duration_ms=duration_ms, end_timestamp=start_ms + (duration_ms or 0) if end_ms is None else end_ms)
    call.update(call_fields)
    return json.dumps(body).encode()


def stripe_obj(kind: str, **fields: Any) -> dict[str, Any]:
    return dict(copy.deepcopy(stripe_fixtures()[kind]), **fields)


def prepare(svc: Services, post: Callable[[str, bytes, dict[str, str]], httpx.Response]) -> World:
    company = new_company(svc, funded="300.00")
    paid = svc.topups.create_pending(company_id=company.id, amount=Money(1500, "EUR"),
                                          source="payment_intent", initiated_by="test", idempotency_key="hostile-paid")
    svc.topups.attach_stripe_ids(paid.id, stripe_payment_intent_id="pi_hostile_paid")
    svc.topups.settle(paid.id, stripe_payment_intent_id="pi_hostile_paid", stripe_charge_id="ch_hostile_paid")
    pending = svc.topups.create_pending(company_id=company.id, amount=Money(1200, "EUR"),
                                             source="payment_intent", initiated_by="test",
                                             idempotency_key="hostile-pending")
    svc.topups.attach_stripe_ids(pending.id, stripe_payment_intent_id="pi_hostile_pending")
    checkout = svc.topups.create_pending(company_id=company.id, amount=Money(2000, "EUR"), source="checkout",
                                              initiated_by="test", idempotency_key="hostile-checkout")
    svc.topups.attach_stripe_ids(checkout.id, stripe_checkout_session_id="cs_hostile_checkout")
    start_ms = int(time.time() * 1000) - 600_000
    # a call that is running (its hold stays) and one that was charged (a later conflicting end must not move money)
    for body in (retell_body("call_started", "call-running", str(company.id), start_ms=start_ms),
                 retell_body("call_ended", "call-done", str(company.id), start_ms=start_ms)):
        answer = post("/api/retell/webhook", body, retell_headers(body))
        assert answer.status_code == 200 and answer.json()["status"] == "processed", answer.text
    return World(company.id, paid.id, "pi_hostile_paid", "ch_hostile_paid", "pi_hostile_pending", checkout.id,
                 start_ms)


def retell_signature(body: bytes) -> dict[str, str]:
    """retell-sdk's signer takes text; for bodies that are not UTF-8 the same HMAC is made over the bytes."""
    try:
        return retell_headers(body)
    except UnicodeDecodeError:
        millis = int(time.time() * 1000)
        digest = hmac.new(RETELL_API_KEY.encode(), body + str(millis).encode(), hashlib.sha256).hexdigest()
        return {"x-retell-signature": f"v={millis},d={digest}", "content-type": "application/json"}


def signed_retell(name: str, body: bytes, expect: str, event_id: str | None = None) -> Case:
    return Case(name, "/api/retell/webhook", body, retell_signature(body), expect, event_id)


def signed_stripe(name: str, event_type: str, obj: dict[str, Any], expect: str, *, livemode: bool = False) -> Case:
    event_id = f"evt_hostile_{name}"
    event = json.loads(stripe_event(event_type, obj, event_id=event_id))
    event["livemode"] = livemode
    body = json.dumps(event).encode()
    return Case(name, "/api/stripe/webhook", body, stripe_headers(body), expect, event_id)


def signed_stripe_raw(name: str, body: bytes) -> Case:
    return Case(name, "/api/stripe/webhook", body, stripe_headers(body), "4xx")


def table(w: World) -> list[Case]:
    cid, start = str(w.company_id), w.start_ms
    ok_retell = retell_body("call_ended", "call-x", cid, start_ms=start)
    ok_stripe = stripe_event("customer.created", stripe_obj("customer", id="cus_hostile"), event_id="evt_hostile_ok")
    now = int(time.time())
    paid_dispute = {"charge": w.paid_charge, "payment_intent": w.paid_intent, "currency": "eur", "reason": "fraudulent"}
    pending = {"id": w.pending_intent, "status": "succeeded", "amount": 1200, "amount_received": 1200,
               "currency": "eur", "metadata": {"topup_id": "0"}, "latest_charge": None}
    return [
        # -- signature headers: every malformed one is a 400, never a 500
        Case("stripe t=\\xb2", "/api/stripe/webhook", ok_stripe, {"stripe-signature": b"t=\xb2,v1=" + HEX.encode()},
             "4xx"),
        Case("stripe unicode digits", "/api/stripe/webhook", ok_stripe,
             {"stripe-signature": "t=١٠,v1=".encode() + HEX.encode()}, "4xx"),
        Case("stripe 5000-digit t", "/api/stripe/webhook", ok_stripe,
             {"stripe-signature": f"t={'9' * 5000},v1={HEX}"}, "4xx"),
        Case("stripe duplicate t", "/api/stripe/webhook", ok_stripe,
             {"stripe-signature": f"t={now},t={now},{stripe_headers(ok_stripe)['stripe-signature'].split(',')[1]}"},
             "4xx"),
        Case("stripe v1 non-ascii", "/api/stripe/webhook", ok_stripe,
             {"stripe-signature": f"t={now},v1=".encode() + b"\xe9" * 64}, "4xx"),
        Case("stripe no header", "/api/stripe/webhook", ok_stripe, {}, "4xx"),
        Case("retell d=\\xe9", "/api/retell/webhook", ok_retell, {"x-retell-signature": b"v=1,d=\xe9"}, "4xx"),
        Case("retell duplicate d", "/api/retell/webhook", ok_retell,
             {"x-retell-signature": retell_headers(ok_retell)["x-retell-signature"] + f",d={HEX}"}, "4xx"),
        Case("retell 5000-digit v", "/api/retell/webhook", ok_retell, {"x-retell-signature": f"v={'1' * 5000},d={HEX}"},
             "4xx"),
        Case("1 MB header", "/api/retell/webhook", ok_retell,
             {**retell_headers(ok_retell), "x-padding": "a" * 1_000_000}, "4xx"),
        Case("2000 headers", "/api/retell/webhook", ok_retell,
             [*retell_headers(ok_retell).items(), *((f"x-h{n}", "1") for n in range(2000))], "4xx"),
        # -- signed bodies that cannot be read or stored: 400
        signed_retell("utf-16 body", json.dumps(json.loads(ok_retell)).encode("utf-16"), "4xx"),
        signed_retell("lone surrogate", ok_retell.replace(b'"call-x"', b'"call-\\ud800"'), "4xx"),
        signed_retell("10,000-deep JSON", b'{"event": "call_ended", "call": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
                      "4xx"),
        signed_retell("call id over its column", retell_body("call_ended", "c" * 181, cid, start_ms=start), "4xx"),
        signed_retell("event name over its column",
                      json.dumps({"event": "e" * 70, "call": {"call_id": "call-y"}}).encode(), "4xx"),
        signed_stripe_raw("stripe event id over its column",
                          stripe_event("customer.created", stripe_obj("customer"), event_id="evt_" + "x" * 300)),
        # -- signed calls whose data are wrong: dead letters, nothing charged
        signed_retell("duration 10^12", retell_body("call_ended", "call-huge", cid, start_ms=start,
                                                    duration_ms=10**12, end_ms=start + 30_000),
                      "dead", "call_ended:call-huge"),
        signed_retell("five-hour call", retell_body("call_ended", "call-long", cid, start_ms=start - 5 * 3600_000,
                                                    duration_ms=5 * 3600_000), "dead", "call_ended:call-long"),
        signed_retell("end before start", retell_body("call_ended", "call-back", cid, start_ms=start,
                                                      duration_ms=30_000, end_ms=start - 60_000),
                      "dead", "call_ended:call-back"),
        signed_retell("unicode company id", retell_body("call_ended", "call-uni", "١٠", start_ms=start),
                      "dead", "call_ended:call-uni"),
        signed_retell("huge company id", retell_body("call_ended", "call-big", "99999999999999999999",
                                                     start_ms=start), "dead", "call_ended:call-big"),
        signed_retell("control characters in the number", retell_body(
            "call_ended", "call-esc", cid, start_ms=start, from_number=PHONE + "\x1b[2J" + "9" * 70),
            "dead", "call_ended:call-esc"),
        signed_retell("unknown company", retell_body("call_ended", "call-nobody", "987654321", start_ms=start),
                      "dead", "call_ended:call-nobody"),
        signed_retell("second call_ended with another duration", retell_body(
            "call_ended", "call-done", cid, start_ms=start, duration_ms=600_000), "conflict"),
        # -- signed Stripe events that must not move money
        signed_stripe("negative_lost_dispute", "charge.dispute.closed",
                      stripe_obj("dispute", id="dp_neg_lost", amount=-5000, status="lost", **paid_dispute), "dead"),
        signed_stripe("negative_dispute", "charge.dispute.created",
                      stripe_obj("dispute", id="dp_neg", amount=-5000, status="needs_response", **paid_dispute),
                      "dead"),
        signed_stripe("dispute_beyond_payment", "charge.dispute.created",
                      stripe_obj("dispute", id="dp_big", amount=999_999, status="needs_response", **paid_dispute),
                      "dead"),
        signed_stripe("usd_payment", "payment_intent.succeeded",
                      stripe_obj("payment_intent", **dict(pending, currency="usd")), "dead"),
        signed_stripe("jpy_payment", "payment_intent.succeeded",
                      stripe_obj("payment_intent", **dict(pending, currency="jpy")), "dead"),
        signed_stripe("livemode_payment", "payment_intent.succeeded", stripe_obj("payment_intent", **pending), "dead",
                      livemode=True),
        signed_stripe("nothing_received", "payment_intent.succeeded",
                      stripe_obj("payment_intent", **dict(pending, amount_received=0)), "dead"),
        signed_stripe("boolean_amount", "payment_intent.succeeded",
                      stripe_obj("payment_intent", **dict(pending, amount_received=True)), "dead"),
        signed_stripe("foreign_intent_naming_our_topup", "payment_intent.succeeded",
                      stripe_obj("payment_intent", **dict(pending, id="pi_not_ours", amount=2000, amount_received=2000,
                                                         metadata={"topup_id": str(w.checkout_topup)})), "ignored"),
        signed_stripe("usd_refund", "refund.created", stripe_obj(
            "refund", id="re_usd", amount=500, currency="usd", charge=w.paid_charge, payment_intent=w.paid_intent,
            status="succeeded"), "dead"),
        signed_stripe("refund_beyond_payment", "refund.created", stripe_obj(
            "refund", id="re_big", amount=999_999, currency="eur", charge=w.paid_charge,
            payment_intent=w.paid_intent, status="succeeded"), "dead"),
        signed_stripe("negative_refund", "refund.created", stripe_obj(
            "refund", id="re_neg", amount=-500, currency="eur", charge=w.paid_charge, payment_intent=w.paid_intent,
            status="succeeded"), "dead"),
    ]


def snapshot(svc: Services) -> dict[str, Any]:
    def read(conn: Any) -> dict[str, Any]:
        return {
            "balances": sorted(conn.execute(select(balances.c.company_id, balances.c.balance,
                                                   balances.c.reserved_balance)).all()),
            "ledger": conn.execute(select(func.count(), func.coalesce(func.sum(ledger.c.amount), 0))).one(),
            "topups": sorted(conn.execute(select(
                topups.c.id, topups.c.status, topups.c.amount, topups.c.refunded_amount, topups.c.currency,
                topups.c.stripe_payment_intent_id, topups.c.stripe_checkout_session_id, topups.c.stripe_charge_id,
            )).all()),
            "holds": sorted(conn.execute(select(reservations.c.call_id, reservations.c.status,
                                                reservations.c.amount)).all()),
            "charges": sorted(conn.execute(select(call_charges.c.call_id, call_charges.c.amount_charged)).all()),
            "disputes": conn.execute(select(func.count()).select_from(disputes)).scalar_one(),
        }

    return svc.db.read(read)


def stored_event(svc: Services, event_id: str) -> Any:
    query = select(webhook_events.c.status, webhook_events.c.last_error).where(webhook_events.c.event_id == event_id)
    return svc.db.read(lambda conn: conn.execute(query).first())


def test_hostile_requests_get_4xx_or_a_dead_letter_and_change_no_money(services, private_database_url, sidecars):  # noqa: F811
    sidecar = sidecars(private_database_url).start()
    with httpx.Client(base_url=sidecar.url, timeout=30) as http:

        def post(path: str, body: bytes, headers: Any) -> httpx.Response:
            return http.post(path, content=body, headers=headers)

        world = prepare(services, post)
        before = snapshot(services)
        problems: list[str] = []
        answers: list[str] = []
        for case in table(world):
            try:
                answer = post(case.path, case.body, case.headers)
            except httpx.TransportError as error:  # the server may close a connection it refuses outright
                problems.append(f"{case.name}: connection error {type(error).__name__}")
                continue
            answers.append(answer.text)
            status = answer.status_code
            if status >= 500:
                problems.append(f"{case.name}: {status} {answer.text[:200]}")
            elif case.expect == "4xx":
                if not 400 <= status < 500:
                    problems.append(f"{case.name}: expected 4xx, got {status} {answer.text[:200]}")
            elif status != 200 or answer.json().get("status") != case.expect:
                problems.append(f"{case.name}: expected 200 {case.expect}, got {status} {answer.text[:200]}")
            elif case.event_id is not None:
                row = stored_event(services, case.event_id)
                if row is None or row.status != case.expect:
                    problems.append(f"{case.name}: inbox row {row}")
        after = snapshot(services)
        alive = http.get("/healthz").status_code

    assert problems == [], "\n".join(problems)
    assert alive == 200
    assert after == before
    ledger_check(sidecar)
    errors = services.db.read(lambda conn: [r[0] or "" for r in conn.execute(select(webhook_events.c.last_error))])
    alerts = services.db.read(lambda conn: conn.execute(
        select(notifications.c.payload).where(notifications.c.kind == "webhook_dead_letter")).scalars().all())
    assert any("call_too_long" in a or "CallTooLong" in a for a in alerts), alerts
    assert any("contradicts" in a for a in alerts), alerts
    assert any("EventMismatch" in a for a in alerts), alerts
    for text in (*errors, *alerts, *answers, sidecar.log_tail(200_000)):
        assert PHONE.removeprefix("+") not in text, text
    assert "Traceback" not in sidecar.log_tail(200_000)
