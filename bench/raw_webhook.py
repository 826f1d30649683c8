"""The raw baseline for bench.webhooks: a bare Starlette endpoint that verifies the same Retell signature and
writes the same rows with the raw async driver (aiomysql or aiosqlite), nothing else.

    BENCH_DATABASE_URL=... RETELL_API_KEY=... uvicorn bench.raw_webhook:app
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from webhook_app.signatures import SignatureError, verify_retell

URL = make_url(os.environ.get("BENCH_DATABASE_URL", "sqlite:///bench.db"))
KEY = os.environ.get("RETELL_API_KEY", "")
MYSQL = URL.drivername.startswith("mysql")

LOCK = (
    "SELECT balance, (SELECT rate_per_minute FROM billing_rates WHERE company_id = {p} ORDER BY effective_from DESC "
    "LIMIT 1) FROM prepaid_balances WHERE company_id = {p}" + (" FOR UPDATE" if MYSQL else "")
)
INSERT_CHARGE = (
    "INSERT INTO call_charges (call_id, company_id, duration_seconds, billed_seconds, rate_per_minute, "
    "billing_increment_seconds, amount_charged, currency, refund_status, refunded_amount, call_started_at, "
    "call_ended_at, charged_at) VALUES ({p}, {p}, {p}, {p}, {p}, 1, {p}, 'EUR', 'none', 0, {p}, {p}, {p})"
)
INSERT_ENTRY = (
    "INSERT INTO balance_transactions (company_id, type, amount, currency, balance_before, balance_after, "
    "description, reference_type, reference_id, idempotency_key, created_at) "
    "VALUES ({p}, 'charge', {p}, 'EUR', {p}, {p}, {p}, 'call_charge', {p}, {p}, {p})"
)
UPDATE_BALANCE = "UPDATE prepaid_balances SET balance = {p}, updated_at = {p} WHERE company_id = {p}"
INSERT_EVENT = (
    "INSERT INTO webhook_events (provider, event_id, event_type, payload, status, attempts, next_attempt_at, "
    "received_at, processed_at) VALUES ('retell', {p}, 'call_ended', {p}, 'processed', 1, {p}, {p}, {p})"
)
P = "%s" if MYSQL else "?"
SQL = [s.format(p=P) for s in (LOCK, INSERT_CHARGE, INSERT_ENTRY, UPDATE_BALANCE, INSERT_EVENT)]


def stamp(value: datetime) -> Any:
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive if MYSQL else naive.isoformat(sep=" ")


def statements(body: bytes, data: dict[str, Any], balance: int, rate: Any, received: datetime) -> list[tuple[Any, ...]]:
    call = data["call"]
    seconds = math.ceil(call["duration_ms"] / 1000)
    amount = int((Decimal(seconds) * Decimal(str(rate)) * 100 / 60).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    now = stamp(datetime.now(UTC))
    started = stamp(datetime.fromtimestamp(call["start_timestamp"] / 1000, UTC))
    ended = stamp(datetime.fromtimestamp(call["end_timestamp"] / 1000, UTC))
    company = int(call["metadata"]["company_id"])
    call_id = call["call_id"]
    return [
        (call_id, company, seconds, seconds, str(rate), amount, started, ended, now),
        (company, -amount, balance, balance - amount, f"Call {call_id}", call_id, f"charge:{call_id}", now),
        (balance - amount, now, company),
        (f"call_ended:{call_id}", body.decode(), now, stamp(received), now),
    ]


class Store:
    async def open(self) -> None:
        if MYSQL:
            import aiomysql

            self.pool = await aiomysql.create_pool(
                host=URL.host,
                port=URL.port or 3306,
                user=URL.username,
                password=URL.password or "",
                db=URL.database,
                minsize=32,
                maxsize=32,
                autocommit=False,
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )
        else:
            import aiosqlite

            self.conn = await aiosqlite.connect(str(URL.database), isolation_level=None)
            for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=30000"):
                await self.conn.execute(pragma)
            self.lock = asyncio.Lock()

    async def close(self) -> None:
        if MYSQL:
            self.pool.close()
            await self.pool.wait_closed()
        else:
            await self.conn.close()

    async def charge(self, body: bytes, data: dict[str, Any], received: datetime) -> None:
        company = int(data["call"]["metadata"]["company_id"])
        if MYSQL:
            async with self.pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(SQL[0], (company, company))
                balance, rate = await cur.fetchone()
                for sql, params in zip(SQL[1:], statements(body, data, balance, rate, received), strict=True):
                    await cur.execute(sql, params)
                await conn.commit()
            return
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            cursor = await self.conn.execute(SQL[0], (company, company))
            balance, rate = await cursor.fetchone()  # type: ignore[misc]
            for sql, params in zip(SQL[1:], statements(body, data, balance, rate, received), strict=True):
                await self.conn.execute(sql, params)
            await self.conn.execute("COMMIT")


store = Store()


async def webhook(request: Request) -> JSONResponse:
    received = datetime.now(UTC)
    body = await request.body()
    try:
        verify_retell(body, request.headers.get("x-retell-signature"), KEY)
    except SignatureError as error:
        return JSONResponse({"error": error.reason}, status_code=400)
    await store.charge(body, json.loads(body), received)
    return JSONResponse({"received": True})


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    await store.open()
    yield
    await store.close()


app = Starlette(routes=[Route("/api/retell/webhook", webhook, methods=["POST"])], lifespan=lifespan)
