"""Argument checks shared by the services: fail before any transaction starts.

This is the one input layer behind every entry point (CLI, MCP tools, webhooks): whatever reaches a
service has passed these checks, so each rule is written once. Messages never echo control characters.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal

from babel import Locale, UnknownLocaleError

from billing_core.errors import InvalidAmount, InvalidInput
from billing_core.money import Money

MAX_ID = 2**63 - 1  # database ids are signed 64-bit integers
_IDENTIFIER = re.compile(r"[!-~]+", re.ASCII)  # printable ASCII, no spaces or control characters
_LOCALE = re.compile(r"[a-z]{2,3}(?:_[A-Z]{2})?", re.ASCII)


def shown(value: object, limit: int = 40) -> str:
    """A value fit to quote in a message: ASCII, control characters escaped, cut short."""
    text = value if isinstance(value, str) else repr(value)
    return "'" + text[:limit].encode("ascii", "backslashreplace").decode("ascii") + "'"


def positive(amount: Money, what: str = "amount") -> Money:
    if not isinstance(amount, Money):
        raise InvalidAmount(f"{what} must be Money, got {type(amount).__name__}")
    if amount.cents <= 0:
        raise InvalidAmount(f"{what} must be positive, got {amount}")
    return amount


def operation_amount(amount: Money, maximum: Decimal, what: str = "amount", *, signed: bool = False) -> Money:
    """What one operation moves: positive (non-zero when ``signed``) and at most BILLING_MAX_OPERATION_AMOUNT."""
    if not isinstance(amount, Money):
        raise InvalidAmount(f"{what} must be Money, got {type(amount).__name__}")
    if signed and amount.cents == 0:
        raise InvalidAmount(f"{what} must not be zero")
    if not signed:
        positive(amount, what)
    return within(amount, Money.parse(format(maximum, "f"), amount.currency), what)


def within(amount: Money, maximum: Money, what: str = "amount") -> Money:
    """At most ``maximum`` either way (BILLING_MAX_OPERATION_AMOUNT for one operator operation)."""
    if abs(amount.cents) > maximum.cents:
        raise InvalidAmount(f"{what} {amount} is more than the maximum of {maximum} per operation")
    return amount


def text(value: str | None, what: str, *, max_length: int = 500) -> str:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    cleaned = (value or "").strip()
    if not cleaned:
        raise InvalidInput(f"{what} is required")
    if len(cleaned) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters")
    # printable ASCII holds no control character; anything else is checked character by character
    if not (cleaned.isascii() and cleaned.isprintable()) and any(unicodedata.category(ch)[0] == "C" for ch in cleaned):
        raise InvalidInput(f"{what} must not contain control characters")
    return cleaned


def identifier(value: str | None, what: str, *, max_length: int = 128) -> str:
    cleaned = text(value, what, max_length=max_length)
    if not _IDENTIFIER.fullmatch(cleaned):
        raise InvalidInput(f"{what} must be printable ASCII, without whitespace or control characters")
    return cleaned


def aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{what} must be a timezone-aware datetime")
    return value


def positive_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise InvalidInput(f"{what} must be a positive integer below 2^63, got {shown(value)}")
    return value


def company_id(value: int) -> int:
    return positive_id(value, "company id")


def rate(value: Decimal, maximum: Decimal) -> Decimal:
    """A per-minute rate: 0 up to BILLING_MAX_RATE_PER_MINUTE, at most 6 decimal places."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise InvalidInput(f"rate per minute must be a non-negative decimal, got {shown(value)}")
    if value.as_tuple().exponent < -6:  # type: ignore[operator]
        raise InvalidInput("rate per minute has more than 6 decimal places")
    if value > maximum:
        raise InvalidInput(f"rate per minute {value} is above the maximum of {maximum} (BILLING_MAX_RATE_PER_MINUTE)")
    return value


def locale(value: str) -> str:
    """A locale babel knows (``de_DE``, ``en``): statements, PDFs and mails are rendered in it."""
    cleaned = text(value, "locale", max_length=16)
    if not _LOCALE.fullmatch(cleaned):
        raise InvalidInput(f"locale {shown(cleaned)} is not of the form de_DE or en")
    try:
        Locale.parse(cleaned)
    except (UnknownLocaleError, ValueError):
        raise InvalidInput(f"unknown locale {shown(cleaned)}") from None
    return cleaned


def vat_id(value: str) -> str:
    """A VAT id; one of an EU member state must have the right format and check digits (python-stdnum).

    Ids of other countries (a Swiss UID, for instance) are kept as given: reverse charge never applies
    to them, so nothing is computed from their digits.
    """
    from stdnum.eu import vat
    from stdnum.exceptions import ValidationError

    cleaned = text(value, "VAT id", max_length=32)
    if not cleaned.isascii():
        raise InvalidInput("VAT id must be ASCII letters and digits")
    prefix = cleaned[:2].lower().replace("el", "gr")
    if prefix not in vat.MEMBER_STATES:
        return cleaned
    try:
        return str(vat.validate(cleaned))
    except ValidationError:
        raise InvalidInput(f"VAT id {shown(cleaned)} is not a valid EU VAT number (format or check digit)") from None
