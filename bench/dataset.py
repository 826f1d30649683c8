"""The MCP issue's benchmark dataset: 10,000 companies, 1,000,000 ledger entries, 500,000 calls.

    python -m bench.dataset --url sqlite:///var/bench.db [--companies 10000] [--calls 500000]
                            [--ledger 1000000] [--days 365] [--end 2026-12-01T00:00:00+00:00]

A year of activity ending at ``--end``: call charges, credited top-ups (some with a bonus entry), failed and
pending top-ups, call refunds, adjustments and webhook events with processing times. Every ledger entry is
chained per company (``balance_before``/``balance_after``) and each balance equals the sum of its ledger, so
``billing ledger check`` passes on the result. Rows go in with the drivers' ``executemany`` in large chunks
(multi-row INSERTs on MariaDB), in id order, after the migrations have built the schema with its indexes.
"""

from __future__ import annotations

import argparse
import heapq
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, create_engine, text

from billing_core.db import migrate
from billing_core.db.database import normalize_url

END = datetime(2026, 12, 1, tzinfo=UTC)
CHUNK = 20_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RATE_CENTS_PER_MINUTE = 42
TOPUP_AMOUNTS = (2_000, 5_000, 10_000, 20_000, 50_000)
CREDITED_SOURCES = ("checkout",) * 5 + ("auto_topup",) * 2 + ("bank_transfer",) * 2 + ("payment_intent",)
WEBHOOK_TYPES = (
    ("retell", "call_ended"),
    ("retell", "call_analyzed"),
    ("stripe", "payment_intent.succeeded"),
    ("stripe", "checkout.session.completed"),
    ("stripe", "payment_intent.payment_failed"),
)

# ledger event kinds, in the order they sort at the same instant
TOPUP, BONUS, CHARGE, REFUND, ADJUSTMENT = range(5)
KIND_NAMES = ("topup", "bonus", "charge", "refund", "adjustment")


def stamp(micros: int) -> str:
    """A UTC instant as stored (naive, microseconds): the text form both SQLite and MariaDB accept."""
    return (EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%d %H:%M:%S.%f")


def call_cents(seconds: int) -> int:
    return (seconds * RATE_CENTS_PER_MINUTE * 2 + 60) // 120  # seconds * 0.42 / 60 EUR, half up, in cents


class Generator:
    def __init__(self, conn: Connection, *, companies: int, calls: int, ledger: int, days: int, end: datetime):
        self.conn = conn
        self.mysql = conn.dialect.name != "sqlite"
        self.companies = companies
        self.calls = calls
        self.ledger = ledger
        self.end_us = int((end - EPOCH).total_seconds() * 1_000_000)
        self.start_us = self.end_us - days * 86_400 * 1_000_000
        self.random = random.Random(20261201)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        marker = "%s" if self.mysql else "?"
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"
        for start in range(0, len(rows), CHUNK):
            self.conn.exec_driver_sql(sql, list(rows[start : start + CHUNK]))

    def when(self) -> int:
        return self.random.randrange(self.start_us, self.end_us)

    def run(self) -> dict[str, int]:
        created = stamp(self.start_us - 86_400_000_000)
        self.insert(
            "companies",
            (
                "id",
                "name",
                "email",
                "currency",
                "locale",
                "stripe_customer_id",
                "prepaid_billing_enabled",
                "created_at",
                "updated_at",
            ),
            [
                (
                    c,
                    f"Praxis {c:05d}",
                    f"billing{c}@example.com",
                    "EUR",
                    "de_DE",
                    f"cus_bench{c:05d}",
                    1,
                    created,
                    created,
                )
                for c in range(1, self.companies + 1)
            ],
        )
        self.insert(
            "billing_rates",
            (
                "id",
                "company_id",
                "rate_per_minute",
                "billing_increment_seconds",
                "effective_from",
                "created_by",
                "created_at",
            ),
            [(c, c, "0.420000", 1, stamp(0), "bench", created) for c in range(1, self.companies + 1)],
        )
        balances = self.ledger_and_calls()
        self.insert(
            "prepaid_balances",
            (
                "id",
                "company_id",
                "currency",
                "balance",
                "reserved_balance",
                "low_balance_threshold",
                "auto_topup_enabled",
                "auto_topup_threshold",
                "auto_topup_amount",
                "auto_topup_daily_limit",
                "auto_topup_consecutive_failures",
                "created_at",
                "updated_at",
            ),
            [
                (c, c, "EUR", balances.get(c, 0), 0, 2_000, int(c % 5 == 0), 1_000, 5_000, 2, 0, created, created)
                for c in range(1, self.companies + 1)
            ],
        )
        failed = self.failed_topups()
        hooks = self.webhooks()
        return {
            "companies": self.companies,
            "ledger": self.ledger,
            "calls": self.calls,
            "failed_topups": failed,
            "webhooks": hooks,
        }

    def ledger_and_calls(self) -> dict[int, int]:
        """Every money movement of the year in time order: ids follow time, balances chain per company."""
        rnd = self.random
        refunds = self.ledger // 40
        adjustments = self.ledger // 40
        remaining = self.ledger - self.calls - refunds - adjustments
        bonuses = remaining // 4
        topups = remaining - bonuses
        events: list[tuple[int, int, int, int, int]] = []  # (time, kind, company, amount, detail)
        for _ in range(self.calls):
            seconds = rnd.randint(10, 600)
            events.append((self.when(), CHARGE, rnd.randint(1, self.companies), -call_cents(seconds), seconds))
        for n in range(topups):
            events.append(
                (self.when(), TOPUP, rnd.randint(1, self.companies), rnd.choice(TOPUP_AMOUNTS), int(n < bonuses))
            )
        for _ in range(adjustments):
            events.append((self.when(), ADJUSTMENT, rnd.randint(1, self.companies), rnd.randint(-500, 2_000) or 1, 0))
        events.sort()
        # refunds: a whole call, an hour after it (kept inside the year)
        refunded = set(rnd.sample(range(self.calls), refunds))
        extra: list[tuple[int, int, int, int, int]] = []
        call_number = 0
        for event in events:
            if event[1] == CHARGE:
                if call_number in refunded:
                    extra.append(
                        (min(event[0] + 3_600_000_000, self.end_us - 1), REFUND, event[2], -event[3], call_number)
                    )
                call_number += 1
        extra.sort()
        balance: dict[int, int] = {}
        ledger_rows: list[tuple[Any, ...]] = []
        call_rows: list[tuple[Any, ...]] = []
        topup_rows: list[tuple[Any, ...]] = []
        call_ids: list[int] = []  # call number -> call_charges id, for refunds
        refunded_calls: set[int] = set()
        entry_id = topup_id = 0
        number = 0
        for when, kind, company, amount, detail in heapq.merge(events, extra):
            at = stamp(when)
            entries: list[tuple[str, int, str, str | None, str]] = []
            if kind == CHARGE:
                call_id = len(call_ids) + 1
                call_ids.append(call_id)
                started = stamp(when - detail * 1_000_000)
                if number in refunded:
                    refunded_calls.add(call_id)
                call_rows.append(
                    (
                        call_id,
                        f"call_{call_id:07d}",
                        company,
                        detail,
                        detail,
                        "0.420000",
                        1,
                        -amount,
                        "EUR",
                        "none",
                        0,
                        started,
                        at,
                        at,
                    )
                )
                entries.append(("charge", amount, "call_charge", f"call_{call_id:07d}", f"call {call_id}"))
                number += 1
            elif kind == REFUND:
                call_id = call_ids[detail]
                entries.append(("refund", amount, "call_charge", f"call_{call_id:07d}", f"refund of call {call_id}"))
            elif kind == ADJUSTMENT:
                entries.append(("adjustment", amount, "adjustment", None, "correction"))
            else:
                topup_id += 1
                bonus = amount // 10 if detail else 0
                source = rnd.choice(CREDITED_SOURCES)
                topup_rows.append(
                    (
                        topup_id,
                        company,
                        amount,
                        bonus,
                        "EUR",
                        "succeeded",
                        source,
                        "card" if source != "bank_transfer" else None,
                        f"bench:{topup_id}",
                        0,
                        at,
                        at,
                        at,
                    )
                )
                entries.append(("topup", amount, "topup", str(topup_id), f"top-up {topup_id}"))
                if bonus:
                    entries.append(("bonus", bonus, "topup", str(topup_id), f"bonus on top-up {topup_id}"))
            for type_, cents, ref_type, ref_id, description in entries:
                entry_id += 1
                before = balance.get(company, 0)
                balance[company] = before + cents
                ledger_rows.append(
                    (
                        entry_id,
                        company,
                        type_,
                        cents,
                        "EUR",
                        before,
                        before + cents,
                        description,
                        ref_type,
                        ref_id,
                        f"bench:{entry_id}",
                        "bench",
                        at,
                    )
                )
            if len(ledger_rows) >= CHUNK:
                self.flush(ledger_rows, call_rows, topup_rows)
        self.flush(ledger_rows, call_rows, topup_rows)
        self.mark_refunded(sorted(refunded_calls))
        self.topup_count = topup_id
        return balance

    def flush(self, ledger_rows: list[Any], call_rows: list[Any], topup_rows: list[Any]) -> None:
        self.insert(
            "balance_topups",
            (
                "id",
                "company_id",
                "amount",
                "bonus_amount",
                "currency",
                "status",
                "source",
                "payment_method_type",
                "idempotency_key",
                "refunded_amount",
                "created_at",
                "updated_at",
                "succeeded_at",
            ),
            topup_rows,
        )
        self.insert(
            "call_charges",
            (
                "id",
                "call_id",
                "company_id",
                "duration_seconds",
                "billed_seconds",
                "rate_per_minute",
                "billing_increment_seconds",
                "amount_charged",
                "currency",
                "refund_status",
                "refunded_amount",
                "call_started_at",
                "call_ended_at",
                "charged_at",
            ),
            call_rows,
        )
        self.insert(
            "balance_transactions",
            (
                "id",
                "company_id",
                "type",
                "amount",
                "currency",
                "balance_before",
                "balance_after",
                "description",
                "reference_type",
                "reference_id",
                "idempotency_key",
                "actor",
                "created_at",
            ),
            ledger_rows,
        )
        for rows in (ledger_rows, call_rows, topup_rows):
            rows.clear()

    def mark_refunded(self, call_ids: list[int]) -> None:
        for start in range(0, len(call_ids), 1000):
            chunk = ",".join(str(i) for i in call_ids[start : start + 1000])
            self.conn.execute(
                text(
                    f"UPDATE call_charges SET refund_status = 'full', refunded_amount = amount_charged "
                    f"WHERE id IN ({chunk})"
                )
            )

    def failed_topups(self) -> int:
        """Failed and pending payments (no ledger entries): a tenth of the credited ones."""
        count = max(1, self.topup_count // 10)
        rows = []
        for n in range(count):
            at = stamp(self.when())
            status = "failed" if n % 8 else "pending"
            source = self.random.choice(CREDITED_SOURCES[:-3] + ("auto_topup",) * 2)
            rows.append(
                (
                    self.topup_count + n + 1,
                    self.random.randint(1, self.companies),
                    self.random.choice(TOPUP_AMOUNTS),
                    0,
                    "EUR",
                    status,
                    source,
                    "card",
                    f"bench:failed:{n}",
                    0,
                    "card_declined" if status == "failed" else None,
                    "Your card was declined." if status == "failed" else None,
                    at,
                    at,
                )
            )
        self.insert(
            "balance_topups",
            (
                "id",
                "company_id",
                "amount",
                "bonus_amount",
                "currency",
                "status",
                "source",
                "payment_method_type",
                "idempotency_key",
                "refunded_amount",
                "failure_code",
                "failure_reason",
                "created_at",
                "updated_at",
            ),
            rows,
        )
        return count

    def webhooks(self) -> int:
        """One webhook event per five calls, processed within 5-400 ms (a few dead ones)."""
        count = self.calls // 5
        rows = []
        for n in range(count):
            received = self.when()
            provider, kind = WEBHOOK_TYPES[n % len(WEBHOOK_TYPES)]
            dead = n % 500 == 0
            processed = None if dead else stamp(received + self.random.randint(5_000, 400_000))
            rows.append(
                (
                    n + 1,
                    provider,
                    f"evt_bench_{n:07d}",
                    kind,
                    "{}",
                    "dead" if dead else "processed",
                    1,
                    stamp(received),
                    stamp(received),
                    processed,
                )
            )
        rows.sort(key=lambda row: row[7])
        rows = [(i + 1, *row[1:]) for i, row in enumerate(rows)]
        self.insert(
            "webhook_events",
            (
                "id",
                "provider",
                "event_id",
                "event_type",
                "payload",
                "status",
                "attempts",
                "next_attempt_at",
                "received_at",
                "processed_at",
            ),
            rows,
        )
        return count


def generate(
    url: str,
    *,
    companies: int = 10_000,
    calls: int = 500_000,
    ledger: int = 1_000_000,
    days: int = 365,
    end: datetime = END,
) -> dict[str, int]:
    """Build the schema at ``url`` (which must be empty) and fill it; returns what was written."""
    if calls > ledger * 0.9:
        raise ValueError("the ledger must hold the calls' charges and some top-ups")
    migrate.upgrade(url)
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA synchronous=OFF")
            else:
                conn.exec_driver_sql("SET unique_checks=0, foreign_key_checks=0")
            counts = Generator(conn, companies=companies, calls=calls, ledger=ledger, days=days, end=end).run()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("ANALYZE")
            else:
                for table in ("balance_transactions", "call_charges", "balance_topups", "webhook_events"):
                    conn.exec_driver_sql(f"ANALYZE TABLE {table}")
        return counts
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="an empty database (SQLite file or MariaDB schema)")
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--end", type=datetime.fromisoformat, default=END)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = generate(
        args.url, companies=args.companies, calls=args.calls, ledger=args.ledger, days=args.days, end=args.end
    )
    print(f"{counts} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
