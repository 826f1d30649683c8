"""Call charges per second: the service path beside the same transaction as raw SQL, in one run.

    python -m bench.charges [--charges 4000] [--writers 16] [--backends sqlite,mariadb]

Scenarios: 16 concurrent writers over 1,000 companies, and over one hot company. The service paths are
what the webhook and MCP processes run, ``ChargingService.charge_call`` through ``services.call``: on
MariaDB "service" runs it in the event loop on aiomysql (``BILLING_ASYNC_DB_DRIVER=aiomysql``, the default)
and "service threads" in a worker thread on PyMySQL (``=pymysql``); on SQLite it runs in a worker thread
(group commit). Baselines do the same transaction with the raw
drivers (lock the balance row with the rate, read the call's hold, insert the charge and the ledger entry,
update the balance, commit): aiomysql and pymysql on MariaDB; aiosqlite (one thread hop per statement) and
plain sqlite3 on SQLite. The ratio compares the service with the best raw baseline of the same database.
"CPU ms" is the benchmark process's CPU time per charge while the writers run (the database server's is not
in it): on this shared machine it is steadier than charges per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import anyio
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from billing_core.bootstrap import build_services
from billing_core.config import Settings
from billing_core.db import migrate
from billing_core.db.tables import balances, billing_rates, companies

COMPANIES = 1000
Timed = tuple[float, list[float], float]  # wall seconds, latencies, CPU seconds (see drive)
STARTED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

RATE_SQL = (
    "(SELECT rate_per_minute FROM billing_rates WHERE company_id = {p} AND effective_from <= {p} "
    "ORDER BY effective_from DESC LIMIT 1)"
)


@dataclass
class Result:
    database: str
    scenario: str
    path: str
    charges: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.charges / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.charges

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def seed(url: str) -> None:
    """1,000 funded companies at 0.42/min, written in bulk."""
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    now = datetime.now(UTC)
    with services.db.engine.begin() as conn:
        conn.execute(
            insert(companies),
            [
                {
                    "id": i,
                    "name": f"Company {i}",
                    "email": f"c{i}@example.com",
                    "currency": "EUR",
                    "locale": "de_DE",
                    "prepaid_billing_enabled": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, COMPANIES + 1)
            ],
        )
        conn.execute(
            insert(balances),
            [
                {
                    "company_id": i,
                    "currency": "EUR",
                    "balance": 10**12,
                    "reserved_balance": 0,
                    "low_balance_threshold": 0,
                    "auto_topup_threshold": 0,
                    "auto_topup_amount": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, COMPANIES + 1)
            ],
        )
        conn.execute(
            insert(billing_rates),
            [
                {
                    "company_id": i,
                    "rate_per_minute": Decimal("0.42"),
                    "billing_increment_seconds": 1,
                    "effective_from": datetime(1970, 1, 1, tzinfo=UTC),
                    "created_at": now,
                }
                for i in range(1, COMPANIES + 1)
            ],
        )
    # the seeded balances are a fixture, not ledger history: start the ledger at that balance
    services.close()


def plan(n: int, hot: bool, tag: str) -> list[tuple[str, int, int]]:
    rng = random.Random(42)
    return [(f"{tag}-{i}", 1 if hot else rng.randint(1, COMPANIES), rng.randint(5, 900)) for i in range(n)]


async def drive(
    jobs: list[tuple[str, int, int]], writers: int, one: Callable[[str, int, int], Awaitable[None]]
) -> Timed:
    """Wall seconds, per-charge latencies and the process's CPU seconds while ``writers`` work off ``jobs``."""
    latencies: list[float] = []
    queue = list(reversed(jobs))

    async def writer() -> None:
        while queue:
            call_id, company, seconds = queue.pop()
            t0 = time.perf_counter()
            await one(call_id, company, seconds)
            latencies.append(time.perf_counter() - t0)

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(writer)
    return time.perf_counter() - start, latencies, time.process_time() - cpu


def charge_values(call_id: str, company: int, seconds: int, balance: int, rate: Decimal) -> tuple:
    amount = int((Decimal(seconds) * rate / 60 * 100).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    return amount, balance - amount


# -- service path ---------------------------------------------------------------------------------


async def service_path(
    url: str, jobs: list[tuple[str, int, int]], writers: int, *, driver: str = "aiomysql"
) -> Timed:
    settings = Settings(_env_file=None, database_url=url, async_db_driver=driver)  # type: ignore[call-arg]
    services = build_services(settings)
    charging = services.charging

    async def one(call_id: str, company: int, seconds: int) -> None:
        await services.call(
            lambda: charging.charge_call(
                call_id=call_id, company_id=company, duration_seconds=seconds, started_at=STARTED
            )
        )

    try:
        return await drive(jobs, writers, one)
    finally:
        services.close()


async def service_threads(url: str, jobs: list[tuple[str, int, int]], writers: int) -> Timed:
    return await service_path(url, jobs, writers, driver="pymysql")


# -- raw MariaDB ----------------------------------------------------------------------------------

MYSQL_STEPS = (
    "SELECT currency, balance, reserved_balance, "
    + RATE_SQL.format(p="%s")
    + " AS rate FROM prepaid_balances WHERE company_id = %s FOR UPDATE",
    "INSERT INTO call_charges (call_id, company_id, duration_seconds, billed_seconds, rate_per_minute, "
    "billing_increment_seconds, amount_charged, currency, refund_status, refunded_amount, call_started_at, "
    "charged_at) VALUES (%s, %s, %s, %s, %s, 1, %s, 'EUR', 'none', 0, %s, %s)",
    "INSERT INTO balance_transactions (company_id, type, amount, currency, balance_before, balance_after, "
    "description, reference_type, reference_id, idempotency_key, created_at) "
    "VALUES (%s, 'charge', %s, 'EUR', %s, %s, %s, 'call_charge', %s, %s, %s)",
    "UPDATE prepaid_balances SET balance = %s, updated_at = %s WHERE company_id = %s",
    # read after the row lock, like the service: the call's hold, released with the charge when there is one
    "SELECT amount, company_id FROM call_reservations WHERE call_id = %s AND status = 'active'",
)


def mysql_params(call_id: str, company: int, seconds: int, row: tuple) -> tuple[tuple, tuple, tuple]:
    now = datetime.now(UTC).replace(tzinfo=None)
    rate = Decimal(row[3])
    amount, after = charge_values(call_id, company, seconds, row[1], rate)
    return (
        (call_id, company, seconds, seconds, rate, amount, STARTED.replace(tzinfo=None), now),
        (company, -amount, row[1], after, f"Call {call_id}", call_id, f"charge:{call_id}", now),
        (after, now, company),
    )


def mysql_connect_args(url: str) -> dict:
    u = make_url(url)
    return {
        "host": u.host,
        "port": u.port or 3306,
        "user": u.username,
        "password": u.password or "",
        "db": u.database,
        "autocommit": False,
        "charset": "utf8mb4",
    }


async def raw_aiomysql(url: str, jobs: list[tuple[str, int, int]], writers: int) -> Timed:
    import aiomysql

    pool = await aiomysql.create_pool(minsize=writers, maxsize=writers, **mysql_connect_args(url))
    async with pool.acquire() as c:
        await c.query("SELECT 1")

    async def one(call_id: str, company: int, seconds: int) -> None:
        async with pool.acquire() as conn:
            await conn.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            async with conn.cursor() as cur:
                await cur.execute(MYSQL_STEPS[0], (company, STARTED.replace(tzinfo=None), company))
                row = await cur.fetchone()
                await cur.execute(MYSQL_STEPS[4], (call_id,))
                await cur.fetchone()
                charge_p, ledger_p, update_p = mysql_params(call_id, company, seconds, row)
                await cur.execute(MYSQL_STEPS[1], charge_p)
                await cur.execute(MYSQL_STEPS[2], ledger_p)
                await cur.execute(MYSQL_STEPS[3], update_p)
            await conn.commit()

    try:
        return await drive(jobs, writers, one)
    finally:
        pool.close()
        await pool.wait_closed()


async def raw_pymysql(url: str, jobs: list[tuple[str, int, int]], writers: int) -> Timed:
    import pymysql

    local = threading.local()
    opened: list = []

    def connection() -> pymysql.Connection:
        if not hasattr(local, "conn"):
            local.conn = pymysql.connect(
                **mysql_connect_args(url), init_command=("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            )
            opened.append(local.conn)
        return local.conn

    def transaction(call_id: str, company: int, seconds: int) -> None:
        conn = connection()
        with conn.cursor() as cur:
            cur.execute(MYSQL_STEPS[0], (company, STARTED.replace(tzinfo=None), company))
            row = cur.fetchone()
            cur.execute(MYSQL_STEPS[4], (call_id,))
            cur.fetchone()
            charge_p, ledger_p, update_p = mysql_params(call_id, company, seconds, row)
            cur.execute(MYSQL_STEPS[1], charge_p)
            cur.execute(MYSQL_STEPS[2], ledger_p)
            cur.execute(MYSQL_STEPS[3], update_p)
        conn.commit()

    async def one(call_id: str, company: int, seconds: int) -> None:
        await anyio.to_thread.run_sync(transaction, call_id, company, seconds)

    try:
        return await drive(jobs, writers, one)
    finally:
        for conn in opened:
            conn.close()


# -- raw SQLite -----------------------------------------------------------------------------------

SQLITE_STEPS = tuple(s.replace("%s", "?").replace(" FOR UPDATE", "") for s in MYSQL_STEPS)
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=30000")


def sqlite_params(call_id: str, company: int, seconds: int, row: tuple) -> tuple[tuple, tuple, tuple]:
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    rate = Decimal(row[3])
    amount, after = charge_values(call_id, company, seconds, row[1], rate)
    started = STARTED.replace(tzinfo=None).isoformat(sep=" ")
    return (
        (call_id, company, seconds, seconds, str(rate), amount, started, now),
        (company, -amount, row[1], after, f"Call {call_id}", call_id, f"charge:{call_id}", now),
        (after, now, company),
    )


def sqlite_path(url: str) -> str:
    return str(make_url(url).database)


async def raw_aiosqlite(url: str, jobs: list[tuple[str, int, int]], writers: int) -> Timed:
    import aiosqlite

    conn = await aiosqlite.connect(sqlite_path(url), isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        await conn.execute(pragma)
    lock = asyncio.Lock()  # one connection, one transaction at a time: the best this path can do
    started = STARTED.replace(tzinfo=None).isoformat(sep=" ")

    async def one(call_id: str, company: int, seconds: int) -> None:
        async with lock:
            await conn.execute("BEGIN IMMEDIATE")
            cur = await conn.execute(SQLITE_STEPS[0], (company, started, company))
            row = await cur.fetchone()
            await (await conn.execute(SQLITE_STEPS[4], (call_id,))).fetchone()
            charge_p, ledger_p, update_p = sqlite_params(call_id, company, seconds, row)
            await conn.execute(SQLITE_STEPS[1], charge_p)
            await conn.execute(SQLITE_STEPS[2], ledger_p)
            await conn.execute(SQLITE_STEPS[3], update_p)
            await conn.execute("COMMIT")

    try:
        return await drive(jobs, writers, one)
    finally:
        await conn.close()


async def raw_sqlite3(url: str, jobs: list[tuple[str, int, int]], writers: int) -> Timed:
    import sqlite3

    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, check_same_thread=False)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    lock = threading.Lock()
    started = STARTED.replace(tzinfo=None).isoformat(sep=" ")

    def transaction(call_id: str, company: int, seconds: int) -> None:
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(SQLITE_STEPS[0], (company, started, company)).fetchone()
            conn.execute(SQLITE_STEPS[4], (call_id,)).fetchone()
            charge_p, ledger_p, update_p = sqlite_params(call_id, company, seconds, row)
            conn.execute(SQLITE_STEPS[1], charge_p)
            conn.execute(SQLITE_STEPS[2], ledger_p)
            conn.execute(SQLITE_STEPS[3], update_p)
            conn.execute("COMMIT")

    async def one(call_id: str, company: int, seconds: int) -> None:
        await anyio.to_thread.run_sync(transaction, call_id, company, seconds)

    try:
        return await drive(jobs, writers, one)
    finally:
        conn.close()


PATHS = {
    "sqlite": (("service", service_path), ("raw aiosqlite", raw_aiosqlite), ("raw sqlite3", raw_sqlite3)),
    "mariadb": (
        ("service", service_path),
        ("raw aiomysql", raw_aiomysql),
        ("service threads", service_threads),
        ("raw pymysql", raw_pymysql),
    ),
}


def fresh_database(backend: str, workdir: Path, server: object, index: int) -> str:
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{index}.db'}"
    else:
        url = server.create_database(f"bench_{index}")  # type: ignore[attr-defined]
    migrate.upgrade(url)
    seed(url)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charges", type=int, default=4000)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,mariadb")
    args = parser.parse_args()
    backends = args.backends.split(",")

    server = None
    if "mariadb" in backends:
        from tests.support.mariadb import MariaDBServer, build_dir

        server = MariaDBServer(build_dir() / f"mariadb-bench-{os.getpid()}").start()
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            index = 0
            for backend in backends:
                for scenario, hot in (("1,000 companies", False), ("one hot company", True)):
                    for name, path in PATHS[backend]:
                        index += 1
                        url = fresh_database(backend, Path(tmp), server, index)
                        jobs = plan(args.charges, hot, f"b{index}")
                        seconds, latencies, cpu = asyncio.run(path(url, jobs, args.writers))
                        result = Result(backend, scenario, name, len(jobs), seconds, latencies, cpu)
                        results.append(result)
                        print(
                            f"  {backend:<8} {scenario:<16} {name:<15} {result.per_second:8.0f}/s "
                            f"{result.cpu_ms:6.3f} CPU ms",
                            file=sys.stderr,
                        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.base_dir, ignore_errors=True)
    print_table(results, args.writers)


def print_table(results: list[Result], writers: int) -> None:
    print(
        f"\nCall charges, {writers} concurrent writers, {results[0].charges} charges per run ({os.cpu_count()} cores)\n"
    )
    header = (
        f"| {'database':<8} | {'scenario':<16} | {'path':<15} | {'charges/s':>9} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'CPU ms':>6} | {'vs best raw':>11} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    for r in results:
        raws = [
            o for o in results if o.database == r.database and o.scenario == r.scenario and o.path.startswith("raw")
        ]
        best = max(raws, key=lambda o: o.per_second) if raws else None
        ratio = f"{r.per_second / best.per_second:.2f}x" if best else "-"
        print(
            f"| {r.database:<8} | {r.scenario:<16} | {r.path:<15} | {r.per_second:>9.0f} | {r.pct(0.5):>7.2f} | "
            f"{r.pct(0.99):>7.2f} | {r.cpu_ms:>6.3f} | {ratio:>11} |"
        )
    print()
    for database in sorted({r.database for r in results}):
        for scenario in sorted({r.scenario for r in results}):
            rows = [r for r in results if r.database == database and r.scenario == scenario]
            raws = [r for r in rows if r.path.startswith("raw")]
            for service in (r for r in rows if r.path.startswith("service")):
                per = [f"{raw.path}: {service.per_second / raw.per_second:.2f}x" for raw in raws]
                print(f"{database}, {scenario}: {service.path} vs " + ", ".join(per))


if __name__ == "__main__":
    main()
