"""billing simulate's Retell events: signed as Retell signs them, shaped as Retell sends them."""

from __future__ import annotations

import json
import random
import time

from retell.lib.webhook_auth import verify

from billing_cli.simulate import call_duration, call_event, retell_signature
from billing_core.services.webhooks.payloads import RetellEvent, ended_call_times, parse
from billing_core.services.webhooks.retell_events import event_identity
from webhook_app.signatures import verify_retell

API_KEY = "key_local_simulation"


def test_signature_is_accepted_by_the_sidecar_and_by_retells_own_verifier():
    body = json.dumps(call_event("call_ended", "sim-1", 3, 1_795_740_000_000, 187)).encode()
    millis = int(time.time() * 1000)  # Retell's verifier checks the time against the clock
    header = retell_signature(body, API_KEY, millis)
    verify_retell(body, header, API_KEY, now=millis / 1000)
    assert verify(body.decode(), API_KEY, header)
    assert not verify(body.decode(), "another key", header)


def test_call_ended_carries_the_company_and_a_duration_the_handler_reads():
    event = call_event("call_ended", "sim-7", 4, 1_795_740_000_000, 95)
    assert event_identity(event) == ("call_ended:sim-7", "call_ended")
    assert event["call"]["metadata"] == {"company_id": "4"}
    call = parse(RetellEvent, event).call  # the sidecar's own payload model accepts it whole
    times = ended_call_times(call, max_seconds=14400)
    assert times.duration_seconds == 95 and times.ended is not None


def test_durations_stay_between_five_seconds_and_thirty_minutes():
    rng = random.Random(3)
    durations = [call_duration(rng) for _ in range(2000)]
    assert min(durations) >= 5 and max(durations) <= 1800
    assert 60 < sorted(durations)[1000] < 180  # the median call takes a minute or two
