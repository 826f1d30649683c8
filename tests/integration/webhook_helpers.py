"""Signed webhook deliveries, made with the providers' own signers (retell-sdk, stripe)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import stripe
from retell.lib.webhook_auth import symmetric

# Stripe's own example objects (its OpenAPI fixtures) and Retell's webhook bodies, copied from the reference
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures"

STRIPE_WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
RETELL_API_KEY = "key_retell_test_0123456789"


def retell_examples() -> dict[str, Any]:
    return dict(json.loads((REFERENCE / "retell-webhook-examples.json").read_text()))


def stripe_fixtures() -> dict[str, Any]:
    return dict(json.loads((REFERENCE / "stripe-api-fixtures.json").read_text())["resources"])


def retell_call(event: str, call_id: str, company_id: int | None, *, seconds: int = 187,
                start_ms: int | None = None, agent_id: str | None = None) -> bytes:
    """A Retell body shaped like the reference example, for one call."""
    body = copy.deepcopy(retell_examples()[event])
    call = body["call"]
    call["call_id"] = call_id
    start = start_ms or int(time.time() * 1000) - seconds * 1000 - 5000
    call["start_timestamp"] = start
    if event != "call_started":
        call["end_timestamp"] = start + seconds * 1000
        call["duration_ms"] = seconds * 1000
    if company_id is None:
        call.pop("metadata", None)
    else:
        call["metadata"] = {"company_id": str(company_id)}
    if agent_id is not None:
        call["agent_id"] = agent_id
    return json.dumps(body).encode()


def retell_headers(body: bytes, *, key: str = RETELL_API_KEY, timestamp_ms: int | None = None) -> dict[str, str]:
    """Signed by retell-sdk's own signer (the one Retell's servers mirror)."""
    signature = symmetric["sign"](body.decode(), key, timestamp_ms)
    return {"x-retell-signature": signature, "content-type": "application/json"}


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> bytes:
    event = copy.deepcopy(stripe_fixtures()["event"])
    event.update(id=event_id or f"evt_{abs(hash((event_type, json.dumps(obj, sort_keys=True)))):x}",
                 type=event_type, data={"object": obj}, created=int(time.time()))
    return json.dumps(event).encode()


def stripe_headers(body: bytes, *, secret: str = STRIPE_WEBHOOK_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Signed by the stripe SDK's own test helper."""
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    return {"stripe-signature": header, "content-type": "application/json"}
