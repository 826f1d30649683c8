"""Payment statistics from the daily roll-ups plus the journal rows not folded yet (whole business only).

The worker keeps ``statistics_rollups``: per local day of one time zone, fact, currency and key, the sums of
the journal rows it folded (see :mod:`billing_core.services.rollups`). Everything the triggers have written
and the worker has not folded is still in ``statistics_journal``. So roll-ups + journal = the live
aggregation over the base tables, exactly, at any moment: a fold moves rows from one to the other in one
transaction. This module reads both, and the state row naming the roll-ups' time zone, in *one* statement,
so even under READ COMMITTED the three parts come from one snapshot. When there are no roll-ups for the
asked time zone (the worker has not run yet, or BILLING_TIMEZONE changed), the answer is None and the caller
aggregates the base tables instead.

The answer has the shapes of the live statements (one row per day and key), so one piece of code turns
either into :class:`~billing_core.queries.statistics.PaymentStatistics`.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, LargeBinary, bindparam, cast, literal, null, select, union_all

from billing_core.db.tables import statistics_journal, statistics_rollup_state, statistics_rollups
from billing_core.db.types import UtcDateTime

RETRACTED = "webhooks_lost"  # a day on which a processed webhook lost its timing: its maximum is unknown here
FACTS = ("calls", "call_refunds", "topups_created", "topups_credited", "topup_refunds", "webhooks", RETRACTED)
STATE_ID = 1


def pack_companies(ids: Iterable[int]) -> bytes:
    """A set of company ids as sorted 64-bit little-endian integers."""
    packed = array("q", sorted(set(ids)))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_companies(blob: bytes | None) -> array[int]:
    packed = array("q")
    if blob:
        packed.frombytes(bytes(blob))
        if sys.byteorder != "little":
            packed.byteswap()
    return packed


@lru_cache(maxsize=2)
def _statement(dialect: str) -> Any:
    """State marker, roll-ups of the period's days, and journal rows of its UTC range: one UNION ALL."""
    # only column values for text: a string literal would carry the connection's collation into the UNION
    zone = statistics_rollup_state.c.zone
    marker = select(
        literal(0).label("part"),
        zone.label("fact"),
        zone.label("k1"),
        zone.label("k2"),
        cast(null(), statistics_rollups.c.day.type).label("day"),
        cast(null(), UtcDateTime()).label("at"),
        literal(0).label("n"),
        literal(0).label("a"),
        literal(0).label("b"),
        cast(null(), LargeBinary()).label("companies"),
        cast(null(), statistics_journal.c.company_id.type).label("company_id"),
    ).where(statistics_rollup_state.c.id == STATE_ID)
    r = statistics_rollups.c
    rolled = select(
        literal(1),
        r.fact,
        r.k1,
        r.k2,
        r.day,
        cast(null(), UtcDateTime()),
        r.n,
        r.a,
        r.b,
        r.companies,
        cast(null(), statistics_journal.c.company_id.type),
    ).where(
        r.zone == bindparam("zone"),
        r.fact.in_(FACTS),
        r.day >= bindparam("first_day"),
        r.day <= bindparam("last_day"),
        r.currency.in_([bindparam("currency"), ""]),  # webhooks have no currency
    )
    j = statistics_journal.c
    pending = select(
        literal(2),
        j.fact,
        j.k1,
        j.k2,
        cast(null(), statistics_rollups.c.day.type),
        j.at,
        j.n,
        j.a,
        j.b,
        cast(null(), LargeBinary()),
        j.company_id,
    ).where(
        j.fact.in_(FACTS),
        j.currency.in_([bindparam("currency"), ""]),
        j.at >= bindparam("start"),
        j.at < bindparam("end"),
    )
    return union_all(marker, rolled, pending)


def _distinct(arrays: list[array[int]], pending: set[int]) -> int:
    """How many companies: one day's roll-up array alone is already distinct."""
    if len(arrays) == 1 and not pending:
        return len(arrays[0])
    return len(set().union(*arrays, pending))


def rolled_up_rows(
    conn: Connection, *, first_day: date, bounds: list[datetime], timezone: str, currency: str
) -> dict[str, list[tuple[Any, ...]]] | None:
    """The statistics' per-day rows from roll-ups + journal, or None without roll-ups in ``timezone``.

    ``bounds`` are the UTC instants of the local midnights (one more than days). Keys whose rows sum to no
    row at all (a status every top-up has left) are dropped, as the live ``GROUP BY`` never shows them."""
    days = len(bounds) - 1
    params = {
        "zone": timezone,
        "first_day": first_day,
        "last_day": date.fromordinal(first_day.toordinal() + days - 1),
        "currency": currency,
        "start": bounds[0],
        "end": bounds[-1],
    }
    # plain tuples: a statistics period has hundreds of rows, read field by field below
    rows = [tuple(row) for row in conn.execute(_statement(conn.dialect.name), params)]
    if not any(row[0] == 0 and row[2] == timezone for row in rows):
        return None
    # (fact, day index, k1, k2) -> [n, a, b]; calls also collect their companies per day: the roll-ups' sorted
    # arrays, and the ids of the journal's calls
    sums: dict[tuple[str, int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    rolled_companies: dict[int, list[array[int]]] = defaultdict(list)
    pending_companies: dict[int, set[int]] = defaultdict(set)
    ordinal = first_day.toordinal()
    webhooks_exact = True
    for part, fact, k1, k2, day, at, n, a, b, companies, company_id in rows:
        if part == 0:
            continue
        n, a, b = int(n), int(a), int(b)
        if part == 1:
            day = day if isinstance(day, date) else date.fromisoformat(str(day))
            index = day.toordinal() - ordinal
            if companies:
                rolled_companies[index].append(unpack_companies(companies))
        else:
            index = bisect_right(bounds, at) - 1
            if fact == "calls" and company_id is not None and n > 0:
                pending_companies[index].add(int(company_id))
        total = sums[(fact, index, k1, k2)]
        total[0] += n
        total[1] += a
        if fact != "webhooks":
            total[2] += b
        elif n > 0:
            total[2] = max(total[2], b)
        if fact == RETRACTED or (fact == "webhooks" and n < 0):
            webhooks_exact = False
    shaped: dict[str, list[tuple[Any, ...]]] = {
        "topups_created": [],
        "topups_credited": [],
        "topup_refunds": [],
        "call_refunds": [],
        "calls": [],
        "webhooks": [],
    }
    for (fact, index, k1, k2), (n, a, b) in sorted(sums.items()):
        if n == 0:
            continue
        if fact == "topups_created":
            shaped[fact].append((index, k1, k2, n, a))
        elif fact == "call_refunds":
            shaped[fact].append((index, n, a))
        elif fact == "calls":
            shaped[fact].append((index, n, a, b, _distinct(rolled_companies[index], pending_companies[index])))
        elif fact == "webhooks":
            shaped[fact].append((index, k1, k2, n, a, b))
        elif fact == RETRACTED:
            continue
        else:
            shaped[fact].append((index, n, a, b))
    everyone = set().union(*(a for arrays in rolled_companies.values() for a in arrays), *pending_companies.values())
    shaped["active_companies"] = [(len(everyone),)]
    if not webhooks_exact:
        del shaped["webhooks"]  # the caller times the webhooks from the base table
    return shaped
