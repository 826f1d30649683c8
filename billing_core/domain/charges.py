"""How a finished call turns into an amount: billed seconds and the one rounding step."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing_core.errors import CurrencyMismatch, InvalidInput
from billing_core.money import Money, round_to_minor

SECONDS_PER_MINUTE = 60


@dataclass(frozen=True, slots=True)
class Rate:
    """A per-minute price in major units (Decimal, e.g. 0.4200 EUR) and the billing increment."""

    per_minute: Decimal
    currency: str
    increment_seconds: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.per_minute, Decimal) or not self.per_minute.is_finite() or self.per_minute < 0:
            raise InvalidInput(f"rate per minute must be a non-negative Decimal, got {self.per_minute!r}")
        if self.increment_seconds < 1:
            raise InvalidInput("billing increment must be at least one second")


@dataclass(frozen=True, slots=True)
class CallCharge:
    billed_seconds: int
    amount: Money


def billed_seconds(duration_seconds: int, increment_seconds: int) -> int:
    """Round the duration up to the next whole billing increment (60 s increments bill 61 s as 120 s)."""
    if duration_seconds < 0:
        raise InvalidInput("call duration cannot be negative")
    if increment_seconds < 1:
        raise InvalidInput("billing increment must be at least one second")
    increments = -(-duration_seconds // increment_seconds)
    return increments * increment_seconds


def compute_charge(duration_seconds: int, rate: Rate) -> CallCharge:
    """billed seconds x rate per minute / 60, rounded half-up to the minor unit, exactly once."""
    seconds = billed_seconds(duration_seconds, rate.increment_seconds)
    exact = Decimal(seconds) * rate.per_minute / SECONDS_PER_MINUTE
    return CallCharge(seconds, Money(round_to_minor(exact, rate.currency), rate.currency))


def reservation_amount(minutes: int, rate: Rate, available: Money) -> Money:
    """What to hold for a starting call: ``minutes`` at the rate, capped by what is available."""
    if available.currency != rate.currency:
        raise CurrencyMismatch(rate.currency, available.currency)
    wanted = compute_charge(minutes * SECONDS_PER_MINUTE, rate).amount
    return Money(max(0, min(wanted.cents, available.cents)), rate.currency)
