"""Money as integer minor units with an ISO 4217 currency.

No float ever enters or leaves this module: amounts are parsed from decimal strings, stored as ``int``
minor units, and per-minute rates (which carry more precision) are turned into minor units exactly once,
with explicit ROUND_HALF_UP, by :func:`round_to_minor`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

from billing_core.errors import CurrencyMismatch, InvalidAmount

_CURRENCY_CODE = re.compile(r"[A-Z]{3}", re.ASCII)
# ASCII digits only: ``\d`` and ``str.isdigit`` also match "١٠" and "²", and Decimal() parses the former.
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]{1,30})(?:\.([0-9]{1,30}))?", re.ASCII)
# What a ledger column (signed BIGINT) can hold; every stored amount, balance and sum stays inside it.
MAX_MINOR_UNITS = 2**63 - 1
# ISO 4217 codes that are not money: precious metals, SDRs and bond units, testing, "no currency".
NOT_MONEY = frozenset({"XAG", "XAU", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA", "XTS", "XXX"})


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies()) - NOT_MONEY


def minor_digits(currency: str) -> int:
    """Digits after the decimal point for a currency (EUR 2, JPY 0, ...), from CLDR via babel."""
    return int(get_currency_precision(normalize_currency(currency)))


@cache
def _normalized_codes() -> frozenset[str]:
    return frozenset(code for code in _known_currencies() if _CURRENCY_CODE.fullmatch(code))


def normalize_currency(currency: str) -> str:
    if currency in _normalized_codes():  # already a valid code as stored: every Money built from a row
        return currency
    code = currency.strip().upper()
    if not _CURRENCY_CODE.fullmatch(code) or code not in _known_currencies():
        shown = currency.encode("ascii", "backslashreplace").decode()[:20]
        raise InvalidAmount(f"'{shown}' is not an ISO 4217 currency")
    return code


def round_to_minor(major: Decimal, currency: str) -> int:
    """Round an exact decimal amount in major units to minor units, half up (away from zero)."""
    scale = Decimal(10) ** minor_digits(currency)
    return int((major * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, order=False, slots=True)
class Money:
    cents: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.cents, bool) or not isinstance(self.cents, int):
            raise InvalidAmount(f"money needs integer minor units, got {type(self.cents).__name__}")
        if not -MAX_MINOR_UNITS <= self.cents <= MAX_MINOR_UNITS:
            raise InvalidAmount("amount out of range")
        if not isinstance(self.currency, str):
            raise InvalidAmount(f"currency must be an ISO 4217 code, got {type(self.currency).__name__}")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse a decimal string in major units ("50.00", "-3.5", "12") without rounding."""
        if not isinstance(text, str):
            raise InvalidAmount(f"amounts are parsed from decimal strings like '50.00', not {type(text).__name__}")
        match = _DECIMAL_TEXT.fullmatch(text.strip())
        if not match:
            shown = text.encode("ascii", "backslashreplace").decode()[:40]
            raise InvalidAmount(f"'{shown}' is not a decimal amount like 50.00 (ASCII digits)")
        digits = minor_digits(currency)
        fraction = match.group(2) or ""
        if len(fraction.rstrip("0")) > digits:
            raise InvalidAmount(f"{text.strip()!r} has more than {digits} decimal places for {currency.upper()}")
        try:
            value = Decimal(text.strip())
        except InvalidOperation as exc:  # pragma: no cover - the regex already rejects these
            raise InvalidAmount(f"{text!r} is not a decimal amount") from exc
        return cls(int(value.scaleb(digits)), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.cents + other.cents, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.cents - other.cents, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.cents, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.cents < other.cents

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.cents <= other.cents

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.cents > other.cents

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.cents >= other.cents

    def is_positive(self) -> bool:
        return self.cents > 0

    def to_decimal(self) -> Decimal:
        """The exact amount in major units (for display and external APIs, never for arithmetic)."""
        return Decimal(self.cents).scaleb(-minor_digits(self.currency))

    def format(self, locale: str = "en") -> str:
        """Localized display, e.g. ``42,00 €`` for de_DE."""
        return str(format_currency(self.to_decimal(), self.currency, locale=locale))

    def as_json(self) -> dict[str, int | str]:
        """The wire shape for scripts and tool output: integer minor units plus currency."""
        return {"cents": self.cents, "currency": self.currency}

    def __str__(self) -> str:
        return f"{self.to_decimal():f} {self.currency}"
