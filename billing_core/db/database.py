"""Engines and the transaction runner: one short transaction per use case, retried when the database says so.

SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for writes (SQLAlchemy's documented recipe: the
driver's own transaction handling is switched off and we emit BEGIN ourselves), because SQLite ignores
``FOR UPDATE``. Writers inside one process are group-committed (:mod:`billing_core.db.group_commit`),
so they queue without polling the file lock and share one fsync; other processes (the MCP server beside
the webhook sidecar) wait on the busy timeout.

MariaDB: READ COMMITTED with ``SELECT ... FOR UPDATE`` on the company's balance row. Deadlocks,
lock-wait timeouts, Galera certification failures and lost connections roll back and run the whole
function again; every write is idempotent through unique keys, so a retry after an ambiguous commit is safe.

In the event loop (a service call the async entry points run through
``greenlet_spawn``, see :mod:`billing_core.concurrency`), the same code runs on the ``sync_engine`` of an
async engine (aiomysql): every statement awaits the driver in the loop, and retry waits sleep in the loop
too. Outside a greenlet (the CLI, worker threads) it runs on PyMySQL. Both paths share the retry rules below.

``write`` and ``read`` are the boundary where driver errors become the core's typed errors
(:mod:`billing_core.db.errors`): callers see ``DatabaseUnavailable``, ``DatabaseRejected`` or
``DatabaseNotMigrated``, never a driver exception (unique-key ``IntegrityError`` aside).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.util.concurrency import await_, in_greenlet

from billing_core.db.errors import (
    UNAVAILABLE_MESSAGE,
    is_aborted_trigger_load,
    is_conflict,
    is_refused,
    is_retryable,
    retry_wait,
    typed_database_errors,
)
from billing_core.db.group_commit import GroupCommitter
from billing_core.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

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


def _mysql_engine_options(pool_size: int) -> dict[str, Any]:
    return {
        "isolation_level": "READ COMMITTED",
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_recycle": 3600,
        "pool_timeout": 10,
        # Every transaction ends in an explicit COMMIT or ROLLBACK (Database._transaction), so the pool's
        # extra ROLLBACK on check-in would only cost a round trip.
        "pool_reset_on_return": None,
    }


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
    engine = create_engine(url, connect_args=connect_args, **_mysql_engine_options(pool_size))
    event.listen(engine, "connect", _causal_reads_on_galera)
    return engine


def make_loop_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """The engine for service calls that run in the event loop: aiomysql behind a synchronous facade.

    ``create_async_engine(...).sync_engine`` is an ordinary ``Engine`` whose connections await aiomysql;
    code run under ``greenlet_spawn`` uses it unchanged. Same options and session set-up as :func:`make_engine`.
    """
    from sqlalchemy.ext.asyncio import create_async_engine  # only processes that run an event loop need it

    parsed, connect_args = loop_connection_options(url)
    engine = create_async_engine(parsed, connect_args=connect_args, **_mysql_engine_options(pool_size))
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "connect", _causal_reads_on_galera)
    # Pooled connections are closed by terminating them: inside the loop that still says goodbye to the
    # server, and outside it (Database.dispose from synchronous code) it closes the socket at once, where a
    # graceful close would have to wait for the loop.
    sync_engine.dialect.do_close = sync_engine.dialect.do_terminate  # type: ignore[method-assign]
    return engine


def loop_connection_options(url: str) -> tuple[URL, dict[str, Any]]:
    """The aiomysql URL and connect arguments for a ``DATABASE_URL``.

    aiomysql takes TLS as an ``ssl.SSLContext``, not as PyMySQL's ``ssl_*`` URL options, so those become a
    context that verifies the server against ``ssl_ca`` (and presents ``ssl_cert``/``ssl_key`` when given).
    """
    parsed = make_url(normalize_url(url)).set(drivername="mysql+aiomysql")
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    tls = {key: value for key, value in parsed.query.items() if key.startswith("ssl")}
    if tls:
        context = ssl.create_default_context(cafile=_one(tls.get("ssl_ca")))
        if cert := _one(tls.get("ssl_cert")):
            context.load_cert_chain(cert, _one(tls.get("ssl_key")))
        if str(_one(tls.get("ssl_check_hostname")) or "true").lower() in ("false", "0", "no"):
            context.check_hostname = False
        connect_args["ssl"] = context
        parsed = parsed.difference_update_query(tls)
    return parsed, connect_args


def _one(value: str | tuple[str, ...] | None) -> str | None:
    return value[-1] if isinstance(value, tuple) else value


async def _dispose_when_the_loop_ends(engine: AsyncEngine) -> AsyncIterator[None]:
    """Parked at its ``yield`` for the life of the loop: ``asyncio.run`` (uvicorn, anyio, pytest's runner)
    closes every unfinished async generator before it closes the loop, and this one then closes the
    loop's connections while the loop can still do it."""
    try:
        yield
    finally:
        await engine.dispose()


GALERA_CHECK = "SELECT @@global.wsrep_on"


def on_galera(conn: Connection) -> bool:
    """Whether ``conn`` is to a Galera node (wsrep on); SQLite and a plain MariaDB server are not."""
    return conn.dialect.name != "sqlite" and int(conn.exec_driver_sql(GALERA_CHECK).scalar() or 0) == 1


def _causal_reads_on_galera(dbapi_connection: Any, _record: Any) -> None:
    """On a Galera node, reads wait until this node has applied what the cluster committed before them.

    Galera replicates synchronously but applies asynchronously: without ``wsrep_sync_wait`` a read on one
    node may miss a write another node has already acknowledged (the webhook a sidecar accepted there, the
    top-up a retry after a certification failure lost to). ``1`` covers SELECT, including the locking
    reads every write transaction starts with. Plain MariaDB (``wsrep_on`` off) is left alone.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(GALERA_CHECK)
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


def pause(seconds: float) -> None:
    """Wait without blocking the event loop when running in it (a service call under ``greenlet_spawn``)."""
    if in_greenlet():
        await_(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


class Database:
    """Runs functions inside write or read transactions; the only place that commits."""

    def __init__(self, url: str, *, attempts: int = 8, pool_size: int = 20) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size)
        self._pool_size = pool_size
        # one aiomysql engine per event loop: its connections belong to the loop that opened them
        self._loop_engines: dict[asyncio.AbstractEventLoop, Engine] = {}
        # kept referenced until their loop ends (see _dispose_when_the_loop_ends)
        self._loop_closers: list[tuple[asyncio.AbstractEventLoop, AsyncIterator[None]]] = []
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
                if is_aborted_trigger_load(error):
                    # MariaDB may keep serving the table with its triggers unloaded: tell the operator the remedy
                    log.error(
                        "MariaDB could not load a table's triggers (%s); if this repeats, run FLUSH LOCAL TABLES "
                        "on that table on this node, or restart the node (README: Scaling out)",
                        getattr(error, "orig", error),
                        extra={"attempt": attempt},
                    )
                else:
                    log.warning("transient database error, retrying", extra={"attempt": attempt})
                pause(retry_wait(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def current_engine(self) -> Engine:
        """aiomysql in the event loop (MariaDB, inside ``greenlet_spawn``); the synchronous engine elsewhere."""
        if self.is_sqlite or not in_greenlet():
            return self.engine
        loop = asyncio.get_running_loop()
        engine = self._loop_engines.get(loop)
        if engine is None:  # made on first use, inside the running event loop
            self._loop_closers = [(other, closer) for other, closer in self._loop_closers if not other.is_closed()]
            async_engine = make_loop_engine(self.url, pool_size=self._pool_size)
            closer = _dispose_when_the_loop_ends(async_engine)
            await_(anext(closer))
            self._loop_closers.append((loop, closer))
            engine = self._loop_engines[loop] = async_engine.sync_engine
        return engine

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        with self.current_engine().connect() as conn:
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
            with self.current_engine().connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except DBAPIError:
            return False

    def dispose(self) -> None:
        """Close the pooled connections, the event loops' ones included."""
        self.engine.dispose()
        while self._loop_engines:
            loop, engine = self._loop_engines.popitem()
            if not loop.is_closed():  # a closed loop's connections were closed as it ended
                engine.dispose()
