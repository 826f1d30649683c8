"""Argument checks shared by the services: fail before any transaction starts."""

from __future__ import annotations

from datetime import datetime

from billing_core.errors import InvalidAmount, InvalidInput
from billing_core.money import Money


def positive(amount: Money, what: str = "amount") -> Money:
    if not isinstance(amount, Money):
        raise InvalidAmount(f"{what} must be Money, got {type(amount).__name__}")
    if amount.cents <= 0:
        raise InvalidAmount(f"{what} must be positive, got {amount}")
    return amount


def text(value: str | None, what: str, *, max_length: int = 500) -> str:
    cleaned = (value or "").strip()
    if not cleaned:
        raise InvalidInput(f"{what} is required")
    if len(cleaned) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters")
    return cleaned


def identifier(value: str | None, what: str, *, max_length: int = 128) -> str:
    cleaned = text(value, what, max_length=max_length)
    if any(ch.isspace() for ch in cleaned):
        raise InvalidInput(f"{what} must not contain whitespace")
    return cleaned


def aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{what} must be a timezone-aware datetime")
    return value


def company_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"company id must be a positive integer, got {value!r}")
    return value
