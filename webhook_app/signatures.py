"""Webhook signature checks on the raw bytes, before anything is parsed.

Modelled on stripe-python's ``_webhook.py``: one typed error per failed check, constant-time comparison,
and timestamps checked in both directions (a signature from the future is as suspect as a stale one).

Each header has exactly one parser with a strict grammar: ASCII only, bounded lengths, ASCII digits
(never ``str.isdigit``, which accepts ``²`` and ``١``), lowercase hex signatures of the one length
SHA-256 gives, and every single-valued part at most once. Whatever a sender puts in the header, the
only thing that can come out of these functions is a :class:`SignatureError`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

MAX_HEADER_LENGTH = 2048
MAX_STRIPE_SIGNATURES = 8  # several v1 while a secret is being rolled; more is not a Stripe header
_TOKEN = re.compile(r"[a-z][a-z0-9_]{0,15}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,16}", re.ASCII)
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_OTHER_VALUE = re.compile(r"[A-Za-z0-9_+/=-]{0,256}", re.ASCII)


class SignatureError(Exception):
    """Why a webhook was refused; the reason is safe to show the sender (no secrets, no expected values)."""

    reason = "invalid signature"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class MissingSignature(SignatureError):
    reason = "missing signature header"


class MalformedSignature(SignatureError):
    reason = "malformed signature header"


class StaleTimestamp(SignatureError):
    reason = "timestamp outside the tolerance"


class SignatureMismatch(SignatureError):
    reason = "signature does not match"


@dataclass(frozen=True, slots=True)
class StripeSignatureHeader:
    timestamp: int  # unix seconds
    signatures: tuple[bytes, ...]  # the v1 values, ASCII hex


@dataclass(frozen=True, slots=True)
class RetellSignatureHeader:
    timestamp_ms: int
    digest: bytes  # ASCII hex


def _parts(header: str | None) -> list[tuple[str, str]]:
    """``key=value`` pairs of a comma-separated header, checked for size and character set."""
    if header is None or header == "":
        raise MissingSignature()
    if not isinstance(header, str):
        raise MalformedSignature("not text")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignature("too long")
    if not header.isascii():
        raise MalformedSignature("non-ASCII characters")
    parts: list[tuple[str, str]] = []
    for part in header.split(","):
        key, equals, value = part.strip(" \t").partition("=")
        if not equals or not _TOKEN.fullmatch(key):
            raise MalformedSignature("expected key=value parts")
        parts.append((key, value))
    return parts


def _single(parts: list[tuple[str, str]], key: str) -> str:
    values = [value for k, value in parts if k == key]
    if not values:
        raise MalformedSignature(f"no {key}= part")
    if len(values) > 1:
        raise MalformedSignature(f"more than one {key}= part")
    return values[0]


def _digits(value: str, key: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise MalformedSignature(f"{key}= must be 1 to 16 ASCII digits")
    return int(value)


def _hex(value: str, key: str) -> bytes:
    if not _HEX_SHA256.fullmatch(value):
        raise MalformedSignature(f"{key}= must be 64 lowercase hex digits")
    return value.encode("ascii")


def parse_stripe_header(header: str | None) -> StripeSignatureHeader:
    """``t=<unix s>,v1=<hex>[,v1=<hex>...]``; other schemes (``v0``) are allowed and ignored."""
    parts = _parts(header)
    timestamp = _digits(_single(parts, "t"), "t")
    signatures: list[bytes] = []
    for key, value in parts:
        if key == "v1":
            signatures.append(_hex(value, "v1"))
        elif key != "t" and not _OTHER_VALUE.fullmatch(value):
            raise MalformedSignature(f"unexpected characters in {key}=")
    if not signatures:
        raise MalformedSignature("no v1= signature")
    if len(signatures) > MAX_STRIPE_SIGNATURES:
        raise MalformedSignature("too many v1= signatures")
    return StripeSignatureHeader(timestamp, tuple(signatures))


def parse_retell_header(header: str | None) -> RetellSignatureHeader:
    """``v=<unix ms>,d=<hex>``: exactly these two parts, each once."""
    parts = _parts(header)
    unknown = {key for key, _ in parts} - {"v", "d"}
    if unknown:
        raise MalformedSignature("only v= and d= parts are allowed")
    return RetellSignatureHeader(_digits(_single(parts, "v"), "v"), _hex(_single(parts, "d"), "d"))


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode("ascii")


def _check_time(timestamp: float, tolerance: float, now: float | None) -> None:
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise StaleTimestamp()


def verify_stripe(
    payload: bytes, header: str | None, secret: str, *, tolerance: float = 300, now: float | None = None
) -> None:
    """``Stripe-Signature: t=<unix s>,v1=<hex>[,v1=...]`` over ``t.payload`` with the endpoint secret."""
    parsed = parse_stripe_header(header)
    expected = _hmac(secret, f"{parsed.timestamp}.".encode() + payload)
    # compare every candidate (no early exit): the time taken says nothing about which one was close
    matches = [hmac.compare_digest(expected, candidate) for candidate in parsed.signatures]
    if not any(matches):
        raise SignatureMismatch()
    _check_time(parsed.timestamp, tolerance, now)


def verify_retell(
    payload: bytes, header: str | None, api_key: str, *, tolerance: float = 300, now: float | None = None
) -> None:
    """``x-retell-signature: v=<unix ms>,d=<hex>`` over ``payload + str(ms)`` keyed by the Retell API key."""
    parsed = parse_retell_header(header)
    expected = _hmac(api_key, payload + str(parsed.timestamp_ms).encode())
    if not hmac.compare_digest(expected, parsed.digest):
        raise SignatureMismatch()
    _check_time(parsed.timestamp_ms / 1000, tolerance, now)
