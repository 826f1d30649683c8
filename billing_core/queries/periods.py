"""Periods in the seller's calendar (BILLING_TIMEZONE), and exact durations between stored timestamps in SQL.

Timestamps are stored as naive UTC. A local day is the range between two local midnights, computed here as
UTC instants (a day in which daylight saving starts or ends has 23 or 25 hours), so the SQL only compares
stored values with bound instants and both backends count the same rows in the same day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from sqlalchemy import Integer, cast, func, literal_column
from sqlalchemy.sql.elements import ColumnElement

from billing_core.errors import InvalidInput
from billing_core.queries.base import ReadModel

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


def duration_microseconds(start: Any, end: Any, dialect: str) -> ColumnElement[int]:
    """Exact microseconds from ``start`` to ``end`` (both UTC timestamp columns), as an integer in SQL."""
    if dialect == "sqlite":

        def micros(column: Any) -> ColumnElement[int]:
            # stored as 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds from strftime, the fraction from the text
            seconds = cast(func.strftime("%s", column), Integer)
            return seconds * 1_000_000 + cast(func.substr(column, 21, 6), Integer)

        return micros(end) - micros(start)
    return func.timestampdiff(literal_column("MICROSECOND"), start, end)
