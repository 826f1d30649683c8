"""Where async entry points run service calls, and that both MariaDB paths retry alike.

``services.call`` runs a database-only call in the event loop on MariaDB (aiomysql, ``greenlet_spawn``) and
in a worker thread on SQLite or with ``BILLING_ASYNC_DB_DRIVER=pymysql``; ``services.call.blocking``
always uses a worker thread. The retry tests raise real errors on the session's MariaDB: a killed
connection, a lock wait timeout and a deadlock between two transactions of the same process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, LargeBinary, func, literal, select, update
from sqlalchemy.util.concurrency import await_, in_greenlet

from billing_core.bootstrap import Services, build_services
from billing_core.concurrency import refuse_in_event_loop
from billing_core.db.ledger import lock_balance, post_entry
from billing_core.db.tables import balances, companies
from billing_core.errors import DatabaseUnavailable
from tests.conftest import Clock, make_settings
from tests.integration.helpers import assert_ledger_ok, balance_cents, new_company

PATHS = ("aiomysql", "pymysql")


@pytest.fixture(params=PATHS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def path_services(database_url: str, driver: str, clock: Clock) -> Iterator[Services]:
    built = build_services(make_settings(database_url, async_db_driver=driver), clock=clock)
    try:
        yield built
    finally:
        built.close()


def where_it_ran(services: Services) -> tuple[bool, str]:
    """(ran on the event loop's thread, the driver of the engine the transaction used)."""
    return threading.current_thread() is threading.main_thread(), services.db.current_engine().dialect.driver


def test_database_calls_run_in_the_event_loop_with_aiomysql_on_mariadb(path_services: Services, backend, driver):
    async def main() -> tuple[tuple[bool, str], tuple[bool, str]]:
        return (
            await path_services.call(where_it_ran, path_services),
            await path_services.call.blocking(where_it_ran, path_services),
        )

    in_call, in_blocking = anyio.run(main)
    if backend == "mariadb" and driver == "aiomysql":
        assert in_call == (True, "aiomysql")
    else:
        assert in_call[0] is False  # a worker thread, with the synchronous driver
        assert in_call[1] in ("pymysql", "pysqlite")
    assert in_blocking[0] is False and in_blocking[1] in ("pymysql", "pysqlite")


def test_a_charge_through_either_path_commits_once_with_the_ledger_intact(path_services: Services, clock: Clock):
    firm = new_company(path_services, funded="20.00")

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(
                    lambda i=i: path_services.call(
                        lambda: path_services.charging.charge_call(
                            call_id=f"call-{i}", company_id=firm.id, duration_seconds=60, started_at=clock.now
                        )
                    )
                )

    anyio.run(main)
    assert balance_cents(path_services, firm.id) == 2000 - 20 * 42
    assert_ledger_ok(path_services)


def test_stripe_or_pdf_work_in_the_event_loop_is_refused_loudly():
    def stripe_request() -> None:
        refuse_in_event_loop("a Stripe request")

    async def main() -> None:
        from sqlalchemy.util.concurrency import greenlet_spawn

        await greenlet_spawn(stripe_request)

    stripe_request()  # outside the loop (CLI, worker threads) it is allowed
    with pytest.raises(RuntimeError, match="would block the event loop"):
        anyio.run(main)


# -- retries: the same rules on both paths, with real MariaDB errors ---------------------------------


def run_on(services: Services, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` the way the async entry points do (``services.call``) and return its result."""

    async def main() -> Any:
        return await services.call(fn)

    return anyio.run(main)


def pause(seconds: float) -> None:
    """Wait inside a transaction without blocking the other one: in the loop when running in it."""
    if in_greenlet():
        await_(asyncio.sleep(seconds))
    else:
        threading.Event().wait(seconds)


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_a_transaction_whose_connection_was_killed_runs_again_and_commits_once(path_services: Services, driver):
    firm = new_company(path_services, funded="10.00")
    attempts: list[int] = []

    def work(conn: Connection) -> int:
        attempts.append(int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()))
        conn.execute(update(companies).where(companies.c.id == firm.id).values(name=f"renamed {len(attempts)}"))
        if len(attempts) == 1:  # another session kills this connection mid-transaction
            with path_services.db.engine.connect() as killer:
                killer.exec_driver_sql(f"KILL {attempts[0]}")
        conn.execute(update(companies).where(companies.c.id == firm.id).values(email="after@example.com"))
        return len(attempts)

    assert run_on(path_services, lambda: path_services.db.write(work)) == 2
    assert attempts[0] != attempts[1]
    row = path_services.db.read(lambda c: c.execute(select(companies).where(companies.c.id == firm.id)).one())
    assert (row.name, row.email) == ("renamed 2", "after@example.com")


def _lock_through_core(conn: Connection, company_id: int) -> None:
    conn.execute(select(balances).where(balances.c.company_id == company_id).with_for_update()).one()


def _lock_directly(conn: Connection, company_id: int) -> None:
    lock_balance(conn, company_id)  # a DirectStatement on the driver's cursor


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
@pytest.mark.parametrize("lock", [_lock_through_core, _lock_directly], ids=["core", "direct"])
def test_a_lock_wait_timeout_is_retried_and_gives_up_with_503_on_both_paths(path_services: Services, driver, lock):
    firm = new_company(path_services, funded="10.00")
    path_services.db.attempts = 2
    tries: list[int] = []

    def blocked(conn: Connection) -> None:
        tries.append(1)
        conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        lock(conn, firm.id)

    with path_services.db.engine.connect() as holder:  # holds the row lock for the whole test
        holder.begin()
        _lock_through_core(holder, firm.id)
        with pytest.raises(DatabaseUnavailable):
            run_on(path_services, lambda: path_services.db.write(blocked))
        holder.rollback()
    assert len(tries) == 2


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_two_transactions_that_deadlock_both_commit_after_a_retry(path_services: Services, driver):
    first, second = new_company(path_services, funded="10.00"), new_company(path_services, name="Zwei", funded="10.00")
    runs: list[str] = []

    def lock_in_order(name: str, a: int, b: int) -> Callable[[Connection], None]:
        def work(conn: Connection) -> None:
            runs.append(name)
            conn.execute(update(balances).where(balances.c.company_id == a).values(low_balance_threshold=1))
            if runs.count(name) == 1:
                pause(0.3)  # both hold their first row now
            conn.execute(update(balances).where(balances.c.company_id == b).values(low_balance_threshold=2))

        return work

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(path_services.call, path_services.db.write, lock_in_order("ab", first.id, second.id))
            group.start_soon(path_services.call, path_services.db.write, lock_in_order("ba", second.id, first.id))

    anyio.run(main)
    assert sorted(set(runs)) == ["ab", "ba"] and len(runs) == 3  # exactly one lost the deadlock and ran again
    thresholds = path_services.db.read(
        lambda c: c.execute(select(balances.c.low_balance_threshold).order_by(balances.c.company_id)).scalars().all()
    )
    assert sorted(thresholds) == [1, 2]  # whichever committed last wrote both rows


# The hot paths' statements (db.direct: the balance lock, the ledger entry, the balance update) run on the
# driver's cursor without Connection.execute; their errors must be retried exactly like the ones above.


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_a_ledger_entry_whose_connection_was_killed_runs_again_and_is_posted_once(
    path_services: Services, driver, clock: Clock
):
    firm = new_company(path_services, funded="10.00")
    attempts: list[int] = []

    def work(conn: Connection) -> int:
        attempts.append(int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()))
        locked = lock_balance(conn, firm.id)
        if len(attempts) == 1:  # another session kills this connection mid-transaction
            with path_services.db.engine.connect() as killer:
                killer.exec_driver_sql(f"KILL {attempts[0]}")
        post_entry(
            conn, locked, type="adjustment", amount=150, description="killed once", idempotency_key="k", now=clock.now
        )
        return len(attempts)

    assert run_on(path_services, lambda: path_services.db.write(work)) == 2
    assert attempts[0] != attempts[1]
    assert balance_cents(path_services, firm.id) == 1150
    assert_ledger_ok(path_services)
    # the pool's connections work after the kill (a dead one was invalidated, not handed out again)
    assert run_on(path_services, lambda: path_services.db.write(lambda c: lock_balance(c, firm.id).balance)) == 1150


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_two_balance_locks_taken_in_opposite_orders_deadlock_and_both_post_after_a_retry(
    path_services: Services, driver, clock: Clock
):
    first, second = new_company(path_services, funded="10.00"), new_company(path_services, name="Zwei", funded="10.00")
    runs: list[str] = []

    def lock_in_order(name: str, a: int, b: int) -> Callable[[Connection], None]:
        def work(conn: Connection) -> None:
            runs.append(name)
            locked = lock_balance(conn, a)
            if runs.count(name) == 1:
                pause(0.3)  # both hold their first row now
            lock_balance(conn, b)
            post_entry(
                conn, locked, type="adjustment", amount=100, description=name, idempotency_key=name, now=clock.now
            )

        return work

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(path_services.call, path_services.db.write, lock_in_order("ab", first.id, second.id))
            group.start_soon(path_services.call, path_services.db.write, lock_in_order("ba", second.id, first.id))

    anyio.run(main)
    assert sorted(set(runs)) == ["ab", "ba"] and len(runs) == 3  # exactly one lost the deadlock and ran again
    assert (balance_cents(path_services, first.id), balance_cents(path_services, second.id)) == (1100, 1100)
    assert_ledger_ok(path_services)


def test_a_repeated_call_id_through_either_path_answers_from_what_was_stored(path_services: Services, clock: Clock):
    firm = new_company(path_services, funded="10.00")

    def charge() -> Any:
        return path_services.charging.charge_call(
            call_id="again", company_id=firm.id, duration_seconds=90, started_at=clock.now
        )

    first, second = run_on(path_services, charge), run_on(path_services, charge)
    assert (first.replayed, second.replayed) == (False, True)
    assert (second.charge_id, second.amount, second.balance_after) == (
        first.charge_id,
        first.amount,
        first.balance_after,
    )
    assert balance_cents(path_services, firm.id) == 1000 - 63


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_the_event_loops_connections_are_closed_when_its_loop_ends(path_services: Services, driver):
    def open_connections() -> int:
        path_services.db.engine.dispose()  # the synchronous pool's own connections do not count
        with path_services.db.engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM information_schema.processlist"
                    " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                ).scalar_one()
            )

    async def busy() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(path_services.call, path_services.db.ping)
        # the loop's pool keeps its connections for the next call while the loop runs
        assert (open_connections() > 0) is (driver == "aiomysql")

    anyio.run(busy)
    deadline = time.monotonic() + 5  # the server drops a closed session's thread a moment later
    while open_connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections() == 0


def test_binary_parameters_reach_the_database_on_both_paths(path_services: Services):
    """aiomysql escapes bytes with a PyMySQL helper that PyMySQL 1.2 removed (hence the pin below 1.2): the
    roll-ups' company lists are binary, so a broken pair would fail every fold in the event loop."""
    payload = bytes(range(256))

    def hex_of(services: Services) -> str:
        return services.db.read(lambda c: c.execute(select(func.hex(literal(payload, LargeBinary)))).scalar_one())

    async def main() -> str:
        return await path_services.call(hex_of, path_services)

    assert anyio.run(main).lower() == payload.hex()
