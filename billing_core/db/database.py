"""Engines and the transaction runner: one short transaction per use case, retried when the database says so.

SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for writes (SQLAlchemy's documented recipe: the
driver's own transaction handling is switched off and we emit BEGIN ourselves), because SQLite ignores
``FOR UPDATE``. Writers inside one process are group-committed (:mod:`billing_core.db.group_commit`),
so they queue without polling the file lock and share one fsync; other processes (the MCP server beside
the webhook sidecar) wait on the busy timeout.

MariaDB: READ COMMITTED with ``SELECT ... FOR UPDATE`` on the company's balance row. Deadlocks,
lock-wait timeouts, Galera certification failures and lost connections roll back and run the whole
function again; every write is idempotent through unique keys, so a retry after an ambiguous commit is safe.

``write`` and ``read`` are the boundary where driver errors become the core's typed errors
(:mod:`billing_core.db.errors`): callers see ``DatabaseUnavailable``, ``DatabaseRejected`` or
``DatabaseNotMigrated``, never a driver exception (unique-key ``IntegrityError`` aside).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool, StaticPool

from billing_core.db.errors import (
    UNAVAILABLE_MESSAGE,
    is_conflict,
    is_refused,
    is_retryable,
    retry_wait,
    typed_database_errors,
)
from billing_core.db.group_commit import GroupCommitter
from billing_core.errors import DatabaseUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

# A deadlock or a Galera certification failure means another transaction got there first and committed:
# trying again makes progress, so these get a larger budget than an outage (on a cluster, a hot row such
# as the invoice counter, written from several nodes at once, can lose certification many times in a row).
CONFLICT_ATTEMPTS = 25

_ASYNC_TO_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "mysql+aiomysql": "mysql+pymysql",
    "mysql+asyncmy": "mysql+pymysql",
    "mariadb+aiomysql": "mysql+pymysql",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
}


def normalize_url(url: str) -> str:
    """Accept the URL spellings operators use and map them to the synchronous drivers we run on."""
    parsed = make_url(url)
    driver = _ASYNC_TO_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    parsed = parsed.set(drivername=driver)
    if driver.startswith("mysql") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pool_size)
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if not any(key.startswith("ssl") for key in make_url(url).query):
        # PyMySQL tries TLS by default and builds an SSL context for every connection attempt (~25 ms
        # of CPU with the GIL held), which makes reconnect storms slow. TLS is opt-in through the URL
        # (?ssl_ca=...), as it is for a database on the same host or private network.
        connect_args["ssl_disabled"] = True
    engine = create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=3600,
        pool_timeout=10,
        # Every transaction ends in an explicit COMMIT or ROLLBACK (Database._transaction), so the pool's
        # extra ROLLBACK on check-in would only cost a round trip.
        pool_reset_on_return=None,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _causal_reads_on_galera)
    return engine


def _causal_reads_on_galera(dbapi_connection: Any, _record: Any) -> None:
    """On a Galera node, reads wait until this node has applied what the cluster committed before them.

    Galera replicates synchronously but applies asynchronously: without ``wsrep_sync_wait`` a read on one
    node may miss a write another node has already acknowledged (the webhook a sidecar accepted there, the
    top-up a retry after a certification failure lost to). ``1`` covers SELECT, including the locking
    reads every write transaction starts with. Plain MariaDB (``wsrep_on`` off) is left alone.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT @@global.wsrep_on")
        row = cursor.fetchone()
        if row is not None and int(row[0] or 0) == 1:
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
    finally:
        cursor.close()


def _sqlite_engine(url: str, pool_size: int) -> Engine:
    memory = make_url(url).database in (None, "", ":memory:")
    # One shared connection for an in-memory database, a pool of file connections otherwise, as large as
    # the MySQL one: with QueuePool's default of 5, the database threads beyond five opened and closed a
    # connection (and its PRAGMAs) for every transaction.
    pool: dict[str, Any] = {"poolclass": StaticPool}
    if not memory:
        pool = {"poolclass": QueuePool, "pool_size": pool_size, "max_overflow": pool_size}
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **pool)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just wrote."""
    key = result.inserted_primary_key
    assert key is not None and key[0] is not None
    return int(key[0])


def _unavailable(_error: DBAPIError) -> DatabaseUnavailable:
    return DatabaseUnavailable(UNAVAILABLE_MESSAGE)


class Database:
    """Runs functions inside write or read transactions; the only place that commits."""

    def __init__(self, url: str, *, attempts: int = 8, pool_size: int = 20) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        self.is_sqlite = self.dialect == "sqlite"
        self.attempts = attempts
        self._group: GroupCommitter | None = None
        if self.is_sqlite:
            self._group = GroupCommitter(
                self.engine, attempts=attempts, is_retryable=is_retryable, on_exhausted=_unavailable
            )

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, committed when it returns, retried on transient errors.

        Driver errors leave as the core's typed errors (:mod:`billing_core.db.errors`); a unique-key
        conflict stays an ``IntegrityError`` for the services' idempotency checks."""
        with typed_database_errors(sqlite=self.is_sqlite):
            if self._group is not None:
                return self._group.run(work)  # type: ignore[no-any-return]
            return self._retrying(work, write=True)

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one consistent read-only transaction (rolled back at the end); errors as :meth:`write`."""
        with typed_database_errors(sqlite=self.is_sqlite):
            return self._retrying(work, write=False)

    def _retrying(self, work: Callable[[Connection], T], *, write: bool) -> T:
        for attempt in range(1, max(self.attempts, CONFLICT_ATTEMPTS) + 1):
            try:
                with self._transaction(write=write) as conn:
                    return work(conn)
            except DBAPIError as error:
                # a server that refuses connections is down, not busy: answer quickly so callers can 503
                gave_up = is_refused(error) and attempt >= 2
                limit = CONFLICT_ATTEMPTS if is_conflict(error) else self.attempts
                if not is_retryable(error) or attempt >= limit or gave_up:
                    raise  # typed at the boundary (write/read)
                log.warning("transient database error, retrying", extra={"attempt": attempt})
                time.sleep(retry_wait(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE" if write else "DEFERRED")
            conn.begin()
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            if write:
                conn.commit()
            else:
                conn.rollback()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except DBAPIError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
