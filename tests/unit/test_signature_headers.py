"""The signature header parsers: arbitrary headers and bodies end in a typed rejection, never anything else;
what the providers' own signers produce always verifies."""

from __future__ import annotations

import time

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st
from retell.lib.webhook_auth import symmetric

from webhook_app.signatures import (
    MalformedSignature,
    MissingSignature,
    SignatureError,
    SignatureMismatch,
    StaleTimestamp,
    parse_retell_header,
    parse_stripe_header,
    verify_retell,
    verify_stripe,
)

SECRET = "whsec_unit_0123456789"
NOW = 1_795_740_000
HEX = "a" * 64

headers = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),  # what Starlette makes of raw header bytes
    st.lists(
        st.tuples(st.sampled_from(["t", "v", "d", "v1", "v0", "x", "T", "", "t "]), st.text(max_size=80)),
        max_size=6,
    ).map(lambda parts: ",".join(f"{k}={v}" for k, v in parts)),
)


@settings(max_examples=120, deadline=None)
@given(body=st.binary(max_size=200), header=headers)
def test_any_stripe_header_and_body_is_accepted_or_refused_with_a_typed_reason(body: bytes, header: str | None):
    try:
        verify_stripe(body, header, SECRET, now=NOW)
    except SignatureError as error:
        assert error.reason and str(error).startswith(error.reason)


@settings(max_examples=120, deadline=None)
@given(body=st.binary(max_size=200), header=headers)
def test_any_retell_header_and_body_is_accepted_or_refused_with_a_typed_reason(body: bytes, header: str | None):
    try:
        verify_retell(body, header, SECRET, now=NOW)
    except SignatureError as error:
        assert error.reason and str(error).startswith(error.reason)


@settings(max_examples=120, deadline=None)
@given(body=st.text(max_size=300), offset=st.integers(-200, 200))
def test_what_stripes_own_signer_makes_always_verifies(body: str, offset: int):
    header = stripe.WebhookSignature.generate_signature_header(body, SECRET, NOW + offset)
    verify_stripe(body.encode(), header, SECRET, now=NOW)


@settings(max_examples=120, deadline=None)
@given(body=st.text(max_size=300), offset_ms=st.integers(-200_000, 200_000))
def test_what_retells_own_signer_makes_always_verifies(body: str, offset_ms: int):
    header = symmetric["sign"](body, SECRET, NOW * 1000 + offset_ms)
    verify_retell(body.encode(), header, SECRET, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "t=\xb2,v1=" + HEX,  # a superscript two: str.isdigit says yes, int() says no
        "t=\u0661\u0660,v1=" + HEX,  # Arabic-Indic digits
        "t=" + "9" * 5000 + ",v1=" + HEX,  # a 5,000-digit timestamp
        f"t={NOW},v1=" + "\xe9" * 64,  # non-ASCII signature
        f"t={NOW},t={NOW},v1=" + HEX,  # duplicate t
        f"t={NOW}",  # no signature
        f"t={NOW},v1=" + "A" * 64,  # upper-case hex is not what Stripe sends
        f"t={NOW},v1=abc",  # too short
        f"t={NOW},v1=" + HEX + ",v1=" + HEX + "," * 3,  # empty parts
        "garbage",
    ],
)
def test_malformed_stripe_headers_are_refused_as_malformed(header: str):
    with pytest.raises(MalformedSignature):
        parse_stripe_header(header)


@pytest.mark.parametrize(
    "header",
    [
        "v=\xb2,d=" + HEX,
        "v=1795740000000,d=" + "\xe9" * 64,
        "v=1795740000000,v=1795740000000,d=" + HEX,  # duplicate v
        "v=1795740000000,d=" + HEX + ",d=" + HEX,  # duplicate d
        "v=1795740000000,d=" + HEX + ",x=1",  # unknown part
        "v=" + "1" * 5000 + ",d=" + HEX,
        "d=" + HEX,
    ],
)
def test_malformed_retell_headers_are_refused_as_malformed(header: str):
    with pytest.raises(MalformedSignature):
        parse_retell_header(header)


def test_missing_headers_are_refused_as_missing():
    for verify in (verify_stripe, verify_retell):
        for header in (None, ""):
            with pytest.raises(MissingSignature):
                verify(b"{}", header, SECRET)


def test_a_valid_stripe_signature_among_several_verifies_and_a_wrong_one_does_not():
    body = b'{"id": "evt_1"}'
    good = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET, NOW)
    other = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_other", NOW)
    verify_stripe(body, f"{other},v1={good.split('v1=')[1]}", SECRET, now=NOW)
    with pytest.raises(SignatureMismatch):
        verify_stripe(body, other, SECRET, now=NOW)


def test_signatures_from_the_past_or_the_future_are_stale():
    body = b"{}"
    for skew in (-301, 301):
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET, NOW + skew)
        with pytest.raises(StaleTimestamp):
            verify_stripe(body, header, SECRET, now=NOW)
        retell = symmetric["sign"](body.decode(), SECRET, (NOW + skew) * 1000)
        with pytest.raises(StaleTimestamp):
            verify_retell(body, retell, SECRET, now=NOW)


def test_retell_header_signed_now_verifies_against_the_clock():
    body = b'{"event": "call_started"}'
    verify_retell(body, symmetric["sign"](body.decode(), SECRET), SECRET)
    verify_stripe(body, stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET, int(time.time())),
                  SECRET)
