"""Periods in the seller's calendar (BILLING_TIMEZONE), and the SQL that puts stored UTC timestamps on days.

Timestamps are stored as naive UTC. A local day is the range between two local midnights (a day in which
daylight saving starts or ends has 23 or 25 hours). Two ways to count by day, with identical results:
range aggregates between the local midnights as bound UTC instants (:meth:`Period.day_bounds`), or a
``GROUP BY`` of :func:`local_day`, the date of ``timestamp + offset`` between the offset changes of the
period (:func:`offset_segments`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, case, cast, func, literal, literal_column
from sqlalchemy.sql.elements import ColumnElement

from billing_core.db.types import UtcDateTime
from billing_core.read_models.periods import MAX_PERIOD_DAYS, Period

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = ["MAX_PERIOD_DAYS", "Period"]


def _offset(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def offset_segments(start: datetime, end: datetime, timezone: str) -> list[tuple[datetime, int]]:
    """[(from_utc, offset_seconds), ...] covering [start, end): where each UTC offset of the zone begins."""
    zone = ZoneInfo(timezone)
    segments = [(start, _offset(start, zone))]
    probe = start
    while probe < end:
        following = min(probe + timedelta(hours=12), end)
        if _offset(following, zone) != segments[-1][1]:
            low, high = probe, following  # the change lies in (low, high]: halve to the second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if _offset(middle, zone) == segments[-1][1]:
                    low = middle
                else:
                    high = middle
            changed = high.replace(microsecond=0)
            segments.append((changed, _offset(changed, zone)))
        probe = following
    return segments


def local_day(column: Any, segments: Sequence[tuple[datetime | None, int]], dialect: str) -> ColumnElement[Any]:
    """SQL for the local date of a UTC ``column`` (a 'YYYY-MM-DD' string on SQLite, a DATE on MariaDB): between
    two changes of the UTC offset it is the date of ``column + offset``, so this is a ``CASE`` over the
    offset changes in the period (usually none or one). The first segment's start is not used."""

    def shifted(offset: int) -> ColumnElement[Any]:
        if dialect == "sqlite":
            return func.date(column, literal_column(f"'{offset:+d} seconds'"))
        return func.date(func.timestampadd(literal_column("SECOND"), literal_column(str(offset)), column))

    if len(segments) == 1:
        return shifted(segments[0][1])
    whens = [
        (column < literal(segments[index + 1][0], UtcDateTime()), shifted(offset))
        for index, (_, offset) in enumerate(segments[:-1])
    ]
    return case(*whens, else_=shifted(segments[-1][1]))


def as_date(value: Any) -> date:
    """A local day as the database returned it (text on SQLite, a date on MariaDB)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def duration_microseconds(start: Any, end: Any, dialect: str) -> ColumnElement[int]:
    """Exact microseconds from ``start`` to ``end`` (both UTC timestamp columns), as an integer in SQL."""
    if dialect == "sqlite":

        def micros(column: Any) -> ColumnElement[int]:
            # stored as 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds from strftime, the fraction from the text
            seconds = cast(func.strftime("%s", column), Integer)
            return seconds * 1_000_000 + cast(func.substr(column, 21, 6), Integer)

        return micros(end) - micros(start)
    return func.timestampdiff(literal_column("MICROSECOND"), start, end)
