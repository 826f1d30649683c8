"""Webhook bodies and payload models: arbitrary bytes and JSON end in a typed rejection or a model within its
bounds, never in another exception; the providers' own example payloads pass."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.errors import CallTooLong, InvalidInput, InvalidPayload
from billing_core.services.webhooks.bodies import MalformedBody, decode_object
from billing_core.services.webhooks.payloads import (
    CALL_ID_LENGTH,
    MAX_AMOUNT,
    Charge,
    CheckoutSession,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    RetellEnvelope,
    RetellEvent,
    StripeEvent,
    ended_call_times,
    parse,
    stripe_identity,
)
from billing_core.services.webhooks.retell_events import event_identity
from tests.integration.webhook_helpers import retell_examples, stripe_fixtures

STRIPE_MODELS = {
    "payment_intent": PaymentIntent,
    "checkout.session": CheckoutSession,
    "charge": Charge,
    "refund": Refund,
    "dispute": Dispute,
    "payment_method": PaymentMethod,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def mutated(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(base)
    changed[key] = value
    return changed


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=400))
def test_any_bytes_decode_to_an_object_or_a_malformed_body(raw: bytes):
    try:
        assert isinstance(decode_object(raw), dict)
    except MalformedBody:
        pass


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"id": "evt_1"}'.encode("utf-16"), "not UTF-8"),
        (b'{"id": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        ('{"id": "\ud800"}'.encode("utf-8", "surrogatepass"), "not UTF-8"),
        (b'{"id": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "deeper"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": 1e400}', "not valid JSON"),
        (b'{"a": 1, "a": 2}', "not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
    ],
)
def test_hostile_bodies_are_malformed_with_their_reason(raw: bytes, why: str):
    with pytest.raises(MalformedBody, match=why):
        decode_object(raw)


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["id", "type", "livemode", "data", "object"]), json_values, max_size=5))
def test_any_stripe_envelope_is_identified_or_refused_as_invalid_input(data: dict[str, Any]):
    try:
        event_id, event_type = stripe_identity(data)
        assert 0 < len(event_id) <= 191 and 0 < len(event_type) <= 64 and event_id.isascii()
    except InvalidInput:
        pass


@settings(max_examples=150, deadline=None)
@given(
    event=json_values,
    call=st.dictionaries(
        st.sampled_from(["call_id", "start_timestamp", "end_timestamp", "duration_ms", "metadata", "from_number"]),
        json_values,
        max_size=6,
    ),
)
def test_any_retell_body_is_identified_or_refused_as_invalid_input(event: Any, call: dict[str, Any]):
    try:
        event_id, event_type = event_identity({"event": event, "call": call})
        assert len(event_id) <= 191 and len(event_type) <= 64 and event_id.isascii()
    except InvalidInput:
        pass
    try:
        parsed = parse(RetellEvent, {"event": "call_ended", "call": call}).call
        times = ended_call_times(parsed, max_seconds=14_400)
        assert 0 <= times.duration_seconds <= 14_400
        assert times.ended is None or times.started <= times.ended
    except InvalidInput:  # InvalidPayload, CallTooLong
        pass


@pytest.mark.parametrize("name", sorted(STRIPE_MODELS))
@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["id", "amount", "amount_received", "currency", "charge", "payment_intent", "metadata"]),
       value=json_values)
def test_any_value_in_a_stripe_object_gives_a_bounded_model_or_invalid_payload(name: str, key: str, value: Any):
    obj = mutated(stripe_fixtures()[name], key, value)
    try:
        model = parse(STRIPE_MODELS[name], obj)
    except InvalidPayload as error:
        assert repr(value) not in error.message or len(repr(value)) < 4  # rules and fields, not values
        return
    amount = getattr(model, "amount", None)
    assert amount is None or 0 < amount <= MAX_AMOUNT
    assert len(model.id) <= 128 and model.id.isascii()


def test_stripes_and_retells_example_payloads_pass():
    fixtures = stripe_fixtures()
    for name, model in STRIPE_MODELS.items():
        parse(model, fixtures[name])
    parse(StripeEvent, fixtures["event"])
    for event in ("call_started", "call_ended", "call_analyzed"):
        parse(RetellEvent, retell_examples()[event])
        parse(RetellEnvelope, retell_examples()[event])


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"amount": -5000}, "amount: greater_than"),
        ({"amount": 0}, "amount: greater_than"),
        ({"amount": True}, "amount: int_type"),
        ({"amount": "5000"}, "amount: int_type"),
        ({"amount": 10**30}, "amount: less_than_equal"),
        ({"currency": "xxx"}, "currency: value_error"),
        ({"currency": "euro"}, "currency: string_too_long"),
        ({"id": "dp_" + "x" * 64}, "id: string_too_long"),
        ({"id": "dp_\x1b[31m"}, "id: string_pattern_mismatch"),
        ({"charge": None}, "charge: string_type"),
    ],
)
def test_dispute_fields_out_of_bounds_are_invalid_payloads(changes: dict[str, Any], problem: str):
    obj = {**stripe_fixtures()["dispute"], **changes}
    with pytest.raises(InvalidPayload, match=problem):
        parse(Dispute, obj)


def call(**changes: Any) -> Any:
    body = copy.deepcopy(retell_examples()["call_ended"])
    body["call"].update(changes)
    return parse(RetellEvent, body).call


def test_a_call_whose_end_is_before_its_start_is_invalid():
    with pytest.raises(InvalidPayload, match="before"):
        ended_call_times(call(end_timestamp=1795739990000, duration_ms=30_000), max_seconds=14_400)


def test_a_duration_that_disagrees_with_the_timestamps_is_invalid():
    with pytest.raises(InvalidPayload, match="disagrees"):
        ended_call_times(call(duration_ms=10**12), max_seconds=14_400)


def test_a_call_longer_than_the_maximum_is_too_long_however_its_timestamps_agree():
    start = 1795740000000
    with pytest.raises(CallTooLong):
        ended_call_times(call(end_timestamp=start + 5 * 3600_000, duration_ms=5 * 3600_000), max_seconds=14_400)
    with pytest.raises(CallTooLong):
        ended_call_times(call(end_timestamp=None, duration_ms=10**12), max_seconds=14_400)


def test_the_example_call_lasts_its_duration_rounded_up():
    assert ended_call_times(call(), max_seconds=14_400).duration_seconds == 188


@pytest.mark.parametrize(
    "company_id", ["\u0661\u0660", "10\x1b", "-1", "0", True, 2**63, "1e3", " 7"]
)
def test_company_ids_in_call_metadata_are_ascii_digits_in_range(company_id: Any):
    with pytest.raises(InvalidPayload, match="metadata.company_id"):
        call(metadata={"company_id": company_id})


def test_call_ids_longer_than_their_column_are_refused_before_anything_is_stored():
    body = copy.deepcopy(retell_examples()["call_ended"])
    body["call"]["call_id"] = "c" * (CALL_ID_LENGTH + 1)
    with pytest.raises(InvalidPayload, match="call.call_id: string_too_long"):
        event_identity(body)
    body["call"]["call_id"] = "c" * CALL_ID_LENGTH
    assert event_identity(body) == (f"call_ended:{'c' * CALL_ID_LENGTH}", "call_ended")


def test_a_validation_message_names_fields_not_the_phone_number_sent():
    body = copy.deepcopy(retell_examples()["call_ended"])
    body["call"]["from_number"] = "+4915123456789\x00" + "9" * 80
    with pytest.raises(InvalidPayload) as caught:
        parse(RetellEvent, body)
    assert "from_number" in caught.value.message and "4915123456789" not in caught.value.message
    assert json.dumps(body)  # the payload itself is untouched


def intent(**fields: Any) -> PaymentIntent:
    return parse(PaymentIntent, {"id": "pi_1", "status": "succeeded", "amount": 1200, "currency": "eur", **fields})


def test_what_a_payment_intent_received_is_amount_received_never_amount():
    assert intent(amount_received=0).received == 0
    assert intent(amount_received=1200).received == 1200
    assert intent().received is None
    assert intent(latest_charge="ch_1").received is None


def test_an_embedded_captured_charge_says_what_was_received_when_amount_received_is_left_out():
    charge = {"id": "ch_1", "status": "succeeded", "amount": 1200, "paid": True, "captured": True}
    assert intent(latest_charge=charge).received == 1200
    assert intent(latest_charge={**charge, "amount_captured": 0}).received == 0
    assert intent(latest_charge={**charge, "captured": False}).received is None
    assert intent(latest_charge={**charge, "status": "pending"}).received is None
    assert intent(latest_charge="ch_1", latest_charge_detail=charge).received is None  # only Stripe's own field
