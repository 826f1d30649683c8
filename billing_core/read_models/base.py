"""What every read model shares: money as minor units plus formatted text, timestamps, and cursor pages."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from billing_core.errors import InvalidInput
from billing_core.money import Money
from billing_core.read_models.limits import DEFAULT_LIMIT as DEFAULT_LIMIT  # the queries import them from here
from billing_core.read_models.limits import MAX_LIMIT as MAX_LIMIT

# ISO 8601 with "+00:00", as the CLI's JSON has always printed timestamps (pydantic alone would print "Z").
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")]


# Filter bounds must say their time zone: stored instants are UTC and a naive time would be ambiguous.
AwareTimestamp = Annotated[
    AwareDatetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")
]

M = TypeVar("M", bound=BaseModel)


def build(model: type[M], **values: Any) -> M:
    """Build filters from loose values; what does not fit is :class:`InvalidInput` naming the field."""
    try:
        return model(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()[:5]
        )
        raise InvalidInput(problems) from None


class ReadModel(BaseModel):
    """A frozen answer of the read side."""

    # Validators are built on first use: a process builds only those of the models it uses (a start of
    # `billing mcp` needs the JSON schemas of the tools' answers, not every filter and view).
    model_config = ConfigDict(frozen=True, defer_build=True)


@lru_cache(maxsize=8192)
def _formatted(cents: int, currency: str, locale: str) -> str:
    from babel.numbers import format_currency  # Babel's locale data: loaded when an amount is first shown

    return str(format_currency(Money(cents, currency).to_decimal(), currency, locale=locale))


class MoneyView(ReadModel):
    """An amount: integer minor units and currency (what scripts compute with) plus text for people."""

    cents: int = Field(description="Integer minor units, e.g. 4200 for 42.00 EUR.")
    currency: str = Field(description="ISO 4217 currency code.")
    formatted: str = Field(description="The amount as shown to people in the company's locale, e.g. '42,00 €'.")

    @classmethod
    def of(cls, cents: int, currency: str, locale: str) -> MoneyView:
        cents = int(cents)
        # values straight from the database (BIGINT, CHAR(3)) need no validation: skip it on this hot path
        return cls.model_construct(cents=cents, currency=currency, formatted=_formatted(cents, currency, locale))

    @classmethod
    def from_money(cls, money: Money, locale: str) -> MoneyView:
        return cls.of(money.cents, money.currency, locale)

    def to_money(self) -> Money:
        return Money(self.cents, self.currency)


T = TypeVar("T")


class Page(ReadModel, Generic[T]):
    """One page of a list, newest first. Nothing is cut off silently: ``has_more`` says whether more exist."""

    items: tuple[T, ...] = Field(description="The entries of this page, newest first.")
    has_more: bool = Field(description="True when more entries match; pass next_cursor to get them.")
    next_cursor: str | None = Field(description="Opaque cursor for the next page; null on the last page.")
