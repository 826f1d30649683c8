"""The one boundary where database driver errors become the core's typed errors.

Like httpx's ``map_exceptions``: :func:`typed_database_errors` wraps :class:`~billing_core.db.database.Database`'s
``write`` and ``read`` (and the migrations), so no caller above it sees a driver error:

- the server cannot be reached, the pool is exhausted, or a conflict outlived its retries
  → :class:`~billing_core.errors.DatabaseUnavailable` (``retryable``);
- the database refused a value: too long, out of range, not a number (MariaDB 1406, 1264, 1366, 1265, 1292;
  SQLite's integer overflow) → :class:`~billing_core.errors.DatabaseRejected` (never retry);
- a table or column is missing, or the SQLite file cannot be opened → :class:`~billing_core.errors.DatabaseNotMigrated`
  ("run ``billing db upgrade``");
- anything else the driver raises → :class:`~billing_core.errors.DatabaseError`.

Unique-key conflicts are the exception: an :class:`~sqlalchemy.exc.IntegrityError` passes through unchanged,
because services catch it to answer a repeated request from what is stored (idempotency), inside a unit of
work (savepoints) and around ``Database.write``. Messages name the error class and code, never the SQL or
its parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from billing_core.backoff import backoff
from billing_core.errors import DatabaseError, DatabaseNotMigrated, DatabaseRejected, DatabaseUnavailable

# MariaDB error codes worth another attempt: deadlock / Galera certification failure, lock wait
# timeout, WSREP not ready, and the ones that mean the connection went away.
RETRYABLE_MYSQL_CODES = frozenset({1205, 1213, 1047, 2003, 2006, 2013, 1927, 1053})
DISCONNECT_MYSQL_CODES = frozenset({2003, 2006, 2013, 1927, 1053})
# deadlock, and Galera's certification failure at commit (reported as a deadlock)
CONFLICT_MYSQL_CODES = frozenset({1213})
# data too long, out of range, incorrect integer/decimal value, data truncated, incorrect date/time value,
# a required field without a value
REJECTED_MYSQL_CODES = frozenset({1406, 1264, 1366, 1265, 1292, 1364})
# too many connections, access denied (database / user), unknown database, host blocked / not allowed
CONNECT_MYSQL_CODES = frozenset({1040, 1044, 1045, 1049, 1129, 1130})
# no such table, unknown column
MISSING_SCHEMA_MYSQL_CODES = frozenset({1146, 1054})
SQLITE_BUSY_MARKERS = ("database is locked", "database is busy", "database table is locked")
SQLITE_MISSING_SCHEMA_MARKERS = ("no such table", "no such column", "has no column named")
SQLITE_REJECTED_MARKERS = ("integer overflow", "too big", "string or blob too big")

# A conflict between transactions clears in milliseconds: 10 ms doubling to at most 0.5 s, with jitter.
RETRY_BASE = timedelta(milliseconds=10)
RETRY_CAP = timedelta(milliseconds=500)

UNAVAILABLE_MESSAGE = "the database is unavailable; try again later"
NOT_MIGRATED_MESSAGE = "the database has no billing schema yet, or an old one; run `billing db upgrade`"


def retry_wait(attempt: int) -> float:
    """Seconds to sleep before running a transaction again after its ``attempt``-th retryable failure."""
    return backoff(attempt, base=RETRY_BASE, cap=RETRY_CAP, jitter=0.5).total_seconds()


def mysql_code(error: BaseException) -> int | None:
    args: tuple[Any, ...] = tuple(getattr(getattr(error, "orig", None), "args", ()))
    return args[0] if args and isinstance(args[0], int) else None


def is_retryable(error: BaseException) -> bool:
    """A conflict between transactions or a dropped connection: running the unit again may succeed."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = mysql_code(error)
    if code is not None:
        return code in RETRYABLE_MYSQL_CODES or is_aborted_trigger_load(error)
    return isinstance(error, OperationalError) and any(m in str(error.orig) for m in SQLITE_BUSY_MARKERS)


def is_conflict(error: BaseException) -> bool:
    """A deadlock, or on Galera a certification failure at commit (both surface as 1213)."""
    return mysql_code(error) in CONFLICT_MYSQL_CODES or is_aborted_trigger_load(error)


def is_aborted_trigger_load(error: BaseException) -> bool:
    """A table whose triggers MariaDB (10.11) failed to load because the statement opening it was killed.

    The lexer stops at once in a killed statement, and the trigger loader keeps the resulting parse error on
    the new TABLE object instead of failing the open ("Unknown trigger has an error in its body: 'Query was
    empty'", or a syntax error at the point the kill came); that object then serves later statements from the
    table cache. Galera kills routinely (a local transaction aborted for a replicated one), which is why a
    cluster has no statistics triggers (migration 0011); a trigger kept anyway, or a KILL on a single server,
    can still meet this. The killed statement's transaction is retried as a conflict; a retry that gets the
    broken TABLE object again fails again, since it stays cached until the table is flushed on that node
    (README, Scaling out; tests/integration/test_mariadb_killed_trigger_load.py)."""
    if mysql_code(error) != 1064:
        return False
    message = str(getattr(error, "orig", error))
    return "has an error in its body" in message  # "Trigger 'name' ..." or "Unknown trigger ...: 'Query was empty'"


def is_refused(error: BaseException) -> bool:
    """The server is not there at all (connection refused / cannot connect)."""
    return mysql_code(error) == 2003


def is_unavailable(error: BaseException) -> bool:
    """The database cannot be reached at all (as opposed to a conflict between transactions)."""
    if not isinstance(error, DBAPIError):
        return False
    return error.connection_invalidated or mysql_code(error) in DISCONNECT_MYSQL_CODES


def typed_error(error: BaseException, *, sqlite: bool) -> BaseException:
    """The core's error for a driver error (``error`` itself when it is not one to translate)."""
    if isinstance(error, PoolTimeout):
        return DatabaseUnavailable(f"{UNAVAILABLE_MESSAGE} (no free connection)")
    if sqlite and isinstance(error, OverflowError):  # the sqlite3 module refuses integers beyond 64 bits
        return DatabaseRejected("a number is out of the range the database can store")
    if not isinstance(error, DBAPIError) or isinstance(error, IntegrityError):
        return error
    code = mysql_code(error)
    text = str(error.orig).lower()
    if is_retryable(error) or is_unavailable(error):
        return DatabaseUnavailable(UNAVAILABLE_MESSAGE)
    if code in MISSING_SCHEMA_MYSQL_CODES or (code is None and any(m in text for m in SQLITE_MISSING_SCHEMA_MARKERS)):
        return DatabaseNotMigrated(NOT_MIGRATED_MESSAGE)
    if (
        isinstance(error, DataError)
        or code in REJECTED_MYSQL_CODES
        or (code is None and any(m in text for m in SQLITE_REJECTED_MARKERS))
    ):
        return DatabaseRejected(
            f"the database refused a value ({_describe(error, code)}): too long, out of range or missing"
        )
    if sqlite and "unable to open database file" in text:
        return DatabaseNotMigrated(
            "the SQLite database file cannot be opened; run `billing db upgrade` to create it, or check DATABASE_URL"
        )
    if isinstance(error, OperationalError) and (code is None or code in CONNECT_MYSQL_CODES):
        # cannot connect, access denied, unknown database, an unreadable file
        return DatabaseUnavailable(f"the database cannot be used ({_describe(error, code)}); check DATABASE_URL")
    return DatabaseError(f"the database failed ({_describe(error, code)})")


def _describe(error: DBAPIError, code: int | None) -> str:
    name = type(error.orig).__name__
    return f"{name} {code}" if code is not None else name


@contextmanager
def typed_database_errors(*, sqlite: bool) -> Iterator[None]:
    """Re-raise driver errors leaving the block as the core's typed errors (the original as ``__cause__``)."""
    try:
        yield
    except (DBAPIError, PoolTimeout, OverflowError) as error:
        typed = typed_error(error, sqlite=sqlite)
        if typed is error:
            raise
        raise typed from error
