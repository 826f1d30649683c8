"""A period of whole days in the seller's calendar (BILLING_TIMEZONE); the SQL that puts stored timestamps on
those days is in :mod:`billing_core.queries.periods`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from billing_core.errors import InvalidInput
from billing_core.read_models.base import ReadModel

MAX_PERIOD_DAYS = 366


class Period(ReadModel):
    """Whole days ``start`` to ``end`` (both included) in the seller's time zone."""

    start: date = Field(description="First day, inclusive (seller's time zone).")
    end: date = Field(description="Last day, inclusive (seller's time zone).")

    @model_validator(mode="after")
    def _bounded(self) -> Period:
        if self.end < self.start:
            raise ValueError("the period ends before it starts")
        if (self.end - self.start).days + 1 > MAX_PERIOD_DAYS:
            raise ValueError(f"a period spans at most {MAX_PERIOD_DAYS} days")
        return self

    @classmethod
    def of(cls, start: date, end: date) -> Period:
        """A period, with bad bounds reported as :class:`InvalidInput`."""
        if end < start:
            raise InvalidInput("the period ends before it starts")
        if (end - start).days + 1 > MAX_PERIOD_DAYS:
            raise InvalidInput(f"a period spans at most {MAX_PERIOD_DAYS} days")
        return cls(start=start, end=end)

    @classmethod
    def last_days(cls, days: int, *, now: datetime, timezone: str) -> Period:
        """The ``days`` local days ending today (today included)."""
        if not 1 <= days <= MAX_PERIOD_DAYS:
            raise InvalidInput(f"days must be between 1 and {MAX_PERIOD_DAYS}")
        today = now.astimezone(ZoneInfo(timezone)).date()
        return cls.of(today - timedelta(days=days - 1), today)

    def days(self) -> Iterator[date]:
        day = self.start
        while day <= self.end:
            yield day
            day += timedelta(days=1)

    def day_bounds(self, timezone: str) -> list[datetime]:
        """The UTC instants of the local midnights starting each day, and the one after the last day."""
        zone = ZoneInfo(timezone)
        return [_midnight(self.start + timedelta(days=n), zone) for n in range((self.end - self.start).days + 2)]

    def utc_bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """[first local midnight, the midnight after the last day) as UTC instants."""
        zone = ZoneInfo(timezone)
        return _midnight(self.start, zone), _midnight(self.end + timedelta(days=1), zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
