"""The transaction runner's budgets on MariaDB: conflicts are retried longer than outages.

A deadlock or a Galera certification failure (both error 1213) means another transaction committed, so
trying again makes progress; a lock wait timeout or a lost connection may mean the server is in trouble,
so those give up sooner and the caller answers 503. The errors are the driver's own, raised inside a real
transaction on the session's MariaDB (a real certification failure is in tests/integration/test_galera.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pymysql
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from billing_core.db.database import CONFLICT_ATTEMPTS, Database
from billing_core.errors import DatabaseUnavailable

pytestmark = pytest.mark.mariadb_only


@pytest.fixture
def db(mariadb_template_url: str) -> Iterator[Database]:
    database = Database(mariadb_template_url, pool_size=2)
    try:
        yield database
    finally:
        database.dispose()


def failing(code: int, times: int) -> tuple[list[int], Callable[[Connection], int]]:
    calls: list[int] = []

    def work(conn: Connection) -> int:
        conn.execute(text("SELECT 1"))
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("COMMIT", {}, pymysql.err.OperationalError(code, "simulated by the test"))
        return len(calls)

    return calls, work


def test_a_transaction_that_loses_certification_many_times_in_a_row_still_commits(db):
    calls, work = failing(1213, times=12)  # more than the outage budget of 8
    assert db.write(work) == 13
    assert len(calls) == 13


def test_conflicts_give_up_with_503_after_their_budget(db):
    calls, work = failing(1213, times=10**6)
    with pytest.raises(DatabaseUnavailable):
        db.write(work)
    assert len(calls) == CONFLICT_ATTEMPTS


def test_lock_wait_timeouts_give_up_after_the_ordinary_budget(db):
    calls, work = failing(1205, times=10**6)
    with pytest.raises(DatabaseUnavailable):
        db.write(work)
    assert len(calls) == db.attempts < CONFLICT_ATTEMPTS


def test_a_table_served_without_its_triggers_is_retried_and_the_log_names_the_remedy(db, caplog):
    calls: list[int] = []

    def work(conn: Connection) -> int:
        conn.execute(text("SELECT 1"))
        calls.append(1)
        if len(calls) <= 2:
            message = "Unknown trigger has an error in its body: 'Query was empty'"
            raise ProgrammingError("INSERT", {}, pymysql.err.ProgrammingError(1064, message))
        return len(calls)

    with caplog.at_level("ERROR", logger="billing_core.db"):
        assert db.write(work) == 3
    remedies = [r.getMessage() for r in caplog.records if "FLUSH LOCAL TABLES" in r.getMessage()]
    assert len(remedies) == 2 and "Query was empty" in remedies[0]
