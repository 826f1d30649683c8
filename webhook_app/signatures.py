"""Webhook signature checks on the raw bytes, before anything is parsed.

Modelled on stripe-python's ``_webhook.py``: one typed error per failed check, constant-time comparison,
and timestamps checked in both directions (a signature from the future is as suspect as a stale one).
"""

from __future__ import annotations

import hashlib
import hmac
import time


class SignatureError(Exception):
    """Why a webhook was refused; the reason is safe to show the sender (no secrets, no expected values)."""

    reason = "invalid signature"


class MissingSignature(SignatureError):
    reason = "missing signature header"


class MalformedSignature(SignatureError):
    reason = "malformed signature header"


class StaleTimestamp(SignatureError):
    reason = "timestamp outside the tolerance"


class SignatureMismatch(SignatureError):
    reason = "signature does not match"


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _check_time(timestamp: float, tolerance: float, now: float | None) -> None:
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise StaleTimestamp()


def verify_stripe(
    payload: bytes, header: str | None, secret: str, *, tolerance: float = 300, now: float | None = None
) -> None:
    """``Stripe-Signature: t=<unix s>,v1=<hex>[,v1=...]`` over ``t.payload`` with the endpoint secret."""
    if not header:
        raise MissingSignature()
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise MalformedSignature()
    expected = _hmac(secret, f"{timestamp}.".encode() + payload)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureMismatch()
    _check_time(timestamp, tolerance, now)


def verify_retell(
    payload: bytes, header: str | None, api_key: str, *, tolerance: float = 300, now: float | None = None
) -> None:
    """``x-retell-signature: v=<unix ms>,d=<hex>`` over ``payload + str(ms)`` keyed by the Retell API key."""
    if not header:
        raise MissingSignature()
    fields = dict(part.strip().partition("=")[::2] for part in header.split(","))
    millis, digest = fields.get("v", ""), fields.get("d", "")
    if not millis.isdigit() or not digest:
        raise MalformedSignature()
    expected = _hmac(api_key, payload + millis.encode())
    if not hmac.compare_digest(expected, digest):
        raise SignatureMismatch()
    _check_time(int(millis) / 1000, tolerance, now)
