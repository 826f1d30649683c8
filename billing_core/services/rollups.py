"""The statistics roll-ups job: folds ``statistics_journal`` into daily ``statistics_rollups`` (the worker runs it).

Triggers append a signed journal row for every statistics fact a base row gains or loses, in the writer's
own transaction (:mod:`billing_core.db.statistics_triggers`); nothing on the write path updates a shared row.
This job, in one transaction per batch:

1. locks the one ``statistics_rollup_state`` row (a second worker waits here; on Galera the second commit
   fails certification on that row and is retried on the next run), and reads a batch of journal rows;
2. adds their sums to the roll-ups of their local days in BILLING_TIMEZONE;
3. deletes exactly those journal rows (by id, checking that it deleted them all).

A journal row is therefore either still in the journal or folded into a roll-up, never both and never
neither: a query reading roll-ups plus journal in one statement is exact at any moment, whatever the commit
order of concurrent writers (an uncommitted row is simply not there yet for either). No watermark, no
safety lag. When the roll-ups are missing or kept in another time zone, the job rebuilds them from the base
tables in one consistent snapshot and deletes the journal rows that snapshot already contains.

On MariaDB the job's transaction runs REPEATABLE READ, so the rebuild's reads share one snapshot. On a Galera
cluster there are no triggers (migration 0011) and the job keeps nothing: statistics read the base tables.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, insert, literal, select, update

from billing_core.db.errors import typed_database_errors
from billing_core.db.statistics_triggers import triggers_allowed
from billing_core.db.tables import (
    call_charges,
    ledger,
    statistics_journal,
    statistics_rollup_state,
    statistics_rollups,
    topup_refunds,
    topups,
    webhook_events,
)
from billing_core.errors import BillingError
from billing_core.queries.periods import duration_microseconds
from billing_core.queries.rollups import FACTS, RETRACTED, STATE_ID, pack_companies, unpack_companies
from billing_core.queries.statistics import CREDITED
from billing_core.services.context import ServiceContext

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 20_000
MAX_BATCHES = 50  # per run: a backlog is worked off over a few runs, never in one endless transaction


class RollupConflict(BillingError):
    code = "rollup_conflict"
    retryable = True


@dataclass(frozen=True, slots=True)
class RollupRun:
    rebuilt: bool
    folded: int  # journal rows folded (or, after a rebuild, found already contained in it)


Key = tuple[str, date, str, str, str]  # fact, local day, currency, k1, k2


@dataclass
class Sums:
    n: int = 0
    a: int = 0
    b: int = 0
    companies: set[int] = field(default_factory=set)


class DailySums:
    """Facts summed per local day of ``zone``."""

    def __init__(self, zone: str) -> None:
        self._zone = ZoneInfo(zone)
        self.sums: dict[Key, Sums] = defaultdict(Sums)

    def add(
        self, fact: str, at: datetime, currency: str, k1: str, k2: str, n: int, a: int, b: int, company: int | None
    ) -> None:
        day = at.astimezone(self._zone).date()
        total = self.sums[(fact, day, currency, k1, k2)]
        total.n += n
        total.a += a
        if fact == "webhooks":  # b is the maximum of the elapsed times, which a retraction cannot lower
            total.b = max(total.b, b) if n > 0 else total.b
            if n < 0:
                self.sums[(RETRACTED, day, "", "", "")].n += 1
        else:
            total.b += b
        if fact == "calls" and company is not None and n > 0:
            total.companies.add(int(company))


def _base_rows(conn: Connection) -> Iterator[tuple[Any, ...]]:
    """Every fact of the base tables, in the journal's shape (fact, at, currency, k1, k2, n, a, b, company)."""
    c, t, r, w = call_charges.c, topups.c, topup_refunds.c, webhook_events.c
    elapsed = duration_microseconds(w.received_at, w.processed_at, conn.dialect.name)
    queries = (
        select(
            literal("webhooks"),
            w.received_at,
            literal(""),
            w.provider,
            w.event_type,
            literal(1),
            elapsed,
            elapsed,
            literal(None),
        ).where(w.processed_at.is_not(None)),
        select(
            literal("calls"),
            c.charged_at,
            c.currency,
            literal(""),
            literal(""),
            literal(1),
            c.billed_seconds,
            c.amount_charged,
            c.company_id,
        ),
        select(
            literal("call_refunds"),
            ledger.c.created_at,
            ledger.c.currency,
            literal(""),
            literal(""),
            literal(1),
            ledger.c.amount,
            literal(0),
            literal(None),
        ).where(ledger.c.type == "refund"),
        select(
            literal("topups_created"),
            t.created_at,
            t.currency,
            t.status,
            t.source,
            literal(1),
            t.amount,
            literal(0),
            literal(None),
        ),
        select(
            literal("topups_credited"),
            t.succeeded_at,
            t.currency,
            literal(""),
            literal(""),
            literal(1),
            t.amount,
            t.bonus_amount,
            literal(None),
        ).where(t.status.in_(CREDITED), t.succeeded_at.is_not(None)),
        select(
            literal("topup_refunds"),
            r.created_at,
            r.currency,
            literal(""),
            literal(""),
            literal(1),
            r.amount,
            r.bonus_reversed,
            literal(None),
        ).where(r.status == "succeeded"),
    )
    for query in queries:
        result = conn.execution_options(stream_results=True).execute(query)
        for rows in result.partitions(BATCH):
            yield from rows


class StatisticsRollups:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    @property
    def zone(self) -> str:
        return self._ctx.settings.timezone

    def run(self) -> RollupRun:
        """Fold the journal (rebuilding first when needed); returns what was done."""
        rebuilt, folded = False, 0
        for _ in range(MAX_BATCHES):
            outcome = self._transaction(self._step)
            rebuilt = rebuilt or outcome.rebuilt
            folded += outcome.folded
            if not outcome.rebuilt and outcome.folded < BATCH:
                break
        return RollupRun(rebuilt, folded)

    # -- one transaction ---------------------------------------------------------------------------

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        db = self._ctx.db
        if db.is_sqlite:
            return db.write(work)  # BEGIN IMMEDIATE: one writer, one snapshot
        with typed_database_errors(sqlite=False), self._repeatable_read() as conn:
            return work(conn)

    @contextmanager
    def _repeatable_read(self) -> Iterator[Connection]:
        with self._ctx.db.current_engine().connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _step(self, conn: Connection) -> RollupRun:
        if not triggers_allowed(conn):
            return RollupRun(False, 0)  # a Galera cluster: no journal, statistics read the base tables
        state = conn.execute(
            select(statistics_rollup_state).where(statistics_rollup_state.c.id == STATE_ID).with_for_update()
        ).first()
        if state is None or state.zone != self.zone:
            return RollupRun(True, self._rebuild(conn, exists=state is not None))
        return RollupRun(False, self._fold(conn))

    def _fold(self, conn: Connection) -> int:
        j = statistics_journal.c
        rows = conn.execute(
            select(j.id, j.fact, j.at, j.currency, j.k1, j.k2, j.n, j.a, j.b, j.company_id).order_by(j.id).limit(BATCH)
        ).all()
        if not rows:
            return 0
        sums = DailySums(self.zone)
        for row in rows:
            sums.add(row.fact, row.at, row.currency, row.k1, row.k2, row.n, row.a, row.b, row.company_id)
        self._merge(conn, sums)
        self._delete_journal(conn, [row.id for row in rows])
        now = self._ctx.clock()
        conn.execute(
            update(statistics_rollup_state)
            .where(statistics_rollup_state.c.id == STATE_ID)
            .values(folded_at=now, folded_rows=statistics_rollup_state.c.folded_rows + len(rows))
        )
        return len(rows)

    def _merge(self, conn: Connection, sums: DailySums) -> None:
        r = statistics_rollups.c
        days = sorted({key[1] for key in sums.sums})
        existing = {
            (row.fact, row.day, row.currency, row.k1, row.k2): row
            for row in conn.execute(
                select(r.id, r.fact, r.day, r.currency, r.k1, r.k2, r.n, r.a, r.b, r.companies).where(
                    r.zone == self.zone, r.fact.in_(FACTS), r.day.in_(days)
                )
            )
        }
        for key, total in sums.sums.items():
            found = existing.get(key)
            if found is None:
                conn.execute(insert(statistics_rollups).values(**self._values(key, total)))
                continue
            companies = None
            if key[0] == "calls":
                companies = pack_companies({*unpack_companies(found.companies), *total.companies})
            b = max(found.b, total.b) if key[0] == "webhooks" else found.b + total.b
            conn.execute(
                update(statistics_rollups)
                .where(r.id == found.id)
                .values(n=found.n + total.n, a=found.a + total.a, b=b, companies=companies)
            )

    def _values(self, key: Key, total: Sums) -> dict[str, Any]:
        fact, day, currency, k1, k2 = key
        return {
            "zone": self.zone,
            "fact": fact,
            "day": day,
            "currency": currency,
            "k1": k1,
            "k2": k2,
            "n": total.n,
            "a": total.a,
            "b": total.b,
            "companies": pack_companies(total.companies) if fact == "calls" else None,
        }

    def _delete_journal(self, conn: Connection, ids: list[int]) -> None:
        deleted = 0
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            deleted += conn.execute(delete(statistics_journal).where(statistics_journal.c.id.in_(chunk))).rowcount
        if deleted != len(ids):
            # another worker folded some of these rows in the meantime: undo this batch, fold again next run
            raise RollupConflict("the statistics journal changed under the roll-up job; retried on the next run")

    def _rebuild(self, conn: Connection, *, exists: bool) -> int:
        """Roll-ups for this time zone from the base tables; the journal rows of this snapshot are in them."""
        started = self._ctx.clock()
        contained = list(conn.execute(select(statistics_journal.c.id)).scalars())  # fixes the snapshot first
        sums = DailySums(self.zone)
        for row in _base_rows(conn):
            if row[1] is not None:
                sums.add(*row)
        conn.execute(delete(statistics_rollups))
        values = [self._values(key, total) for key, total in sums.sums.items()]
        for start in range(0, len(values), 1000):
            conn.execute(insert(statistics_rollups), values[start : start + 1000])
        self._delete_journal(conn, contained)
        now = self._ctx.clock()
        state = {"zone": self.zone, "rebuilt_at": now, "folded_at": now, "folded_rows": 0}
        if exists:
            conn.execute(
                update(statistics_rollup_state).where(statistics_rollup_state.c.id == STATE_ID).values(**state)
            )
        else:
            conn.execute(insert(statistics_rollup_state).values(id=STATE_ID, **state))
        log.info(
            "statistics roll-ups rebuilt",
            extra={"zone": self.zone, "days": len({key[1] for key in sums.sums}), "started": started.isoformat()},
        )
        return len(contained)
