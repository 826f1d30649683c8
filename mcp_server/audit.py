"""The audit rows of tool calls, each committed before its call answers, group-committed.

Every tool call waits until its audit row is committed before it answers. The rows of concurrent calls share
a transaction: rows that arrive while a batch is being written queue up, and when that batch is committed,
the first waiting call writes all of them at once (one service call, one multi-row INSERT, one COMMIT and
fsync). On SQLite, which commits one writer at a time, calls would queue up anyway. On MariaDB each row used
to have a transaction of its own, run concurrently (the server shares their fsyncs); sharing them costs a
call at most the wait for the batch ahead of it, and spares all but one call of a batch its INSERT, its
COMMIT (their round trips through the driver, a transaction on the server) and its service call: with 16
HTTP clients calling ``get_balance``, the two ways served side by side took 16-30 % less CPU per call in the
server and 40 % less in mariadbd this way (two runs of a variant of ``bench/mcp_http.py``).

A light read tool (``get_balance``, through ``BillingApp.read_audited``) sends its read along: it runs in the
transaction that writes the call's row, just before it, so the call needs no service call and no transaction
of its own, and its row says how the read ended. The reads of one kind in a batch are one statement for all
their keys (:class:`~mcp_server.shared_read.SharedRead`): with 16 HTTP clients calling ``get_balance`` on
MariaDB, a statement a call cost the server a fifth more CPU per call than one a batch.

The HTTP server's bearer token lookups ride along too (:meth:`AuditWriter.look_up`, a read without a row):
a request's lookup waits at most for the batch ahead of it, and spares a transaction of its own.

Waiting for the row is shielded from cancellation: a client that hangs up does not take its audit row, or
the rows queued behind it, with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from billing_core.errors import BillingError, DatabaseError, DatabaseRejected

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

if TYPE_CHECKING:
    from billing_core.bootstrap import Services
    from billing_core.services.tool_calls import ToolCallStore
    from mcp_server.shared_read import SharedRead

log = logging.getLogger("mcp_server")

MAX_BATCH = 256


class _Pending:
    __slots__ = ("row", "read", "key", "result", "error", "committed", "row_outcome", "wake", "written")

    def __init__(self, row: dict[str, Any] | None, read: SharedRead[Any, Any] | None = None, key: Any = None) -> None:
        self.row = row  # None: a lookup that writes nothing (a bearer token's)
        self.read, self.key = read, key  # a read that runs in the batch's transaction, before the rows are written
        self.result: Any = None
        self.error: BaseException | None = None
        self.committed = False
        self.row_outcome = str(row.get("outcome")) if row is not None else ""
        self.wake = anyio.Event()
        self.written = False


class AuditWriter:
    def __init__(self, services: Services, calls: ToolCallStore) -> None:
        self._services = services
        self._db = services.ctx.db
        self._calls = calls
        self._queue: list[_Pending] = []
        self._leading = False

    async def write(self, row: dict[str, Any]) -> None:
        """Commit ``row`` (see :meth:`ToolCallStore.audit_row`); a failure is logged, never raised."""
        await self._join(_Pending(row))

    async def read_and_write(
        self, read: SharedRead[K, T], key: K, row: dict[str, Any], *, written: Callable[[str], None]
    ) -> T:
        """Read ``key`` and commit the call's audit row in one transaction, shared with concurrent calls.

        The row says ``ok``, or ``error`` with the message of the billing error the read raised or the key's
        ``missing`` error (raised here too); ``written`` hears the outcome once the row is committed. A failed
        transaction writes no row and raises its error.
        """
        pending = _Pending(row, read, key)
        await self._join(pending)
        if pending.committed:
            written(pending.row_outcome)
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[no-any-return]

    async def look_up(self, read: SharedRead[K, T], key: K) -> T | None:
        """Read ``key`` in the next batch's transaction, writing nothing: what the batch's reads of this kind
        found, or None. A failed transaction raises its error."""
        pending = _Pending(None, read, key)
        await self._join(pending)
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[no-any-return]

    async def _join(self, pending: _Pending) -> None:
        with anyio.CancelScope(shield=True):
            self._queue.append(pending)
            if self._leading:
                await pending.wake.wait()  # set when our row is written, or when we are to write the next batch
                if pending.written:
                    return
            self._leading = True
            await self._write_one_batch()

    async def _write_one_batch(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            await self._commit(batch)
        finally:
            for pending in batch:
                pending.written = True
                pending.wake.set()
            if self._queue:
                self._queue[0].wake.set()  # its caller writes the next batch
            else:
                self._leading = False

    async def _commit(self, batch: list[_Pending]) -> None:
        # The call's own answer must not be lost to a failed audit write: failures are logged (a read whose
        # transaction failed gets the error instead, and its tool answers with it).
        try:
            await self._services.call(self._db.write, lambda conn: _run_batch(conn, self._calls, batch))
            for pending in batch:
                pending.committed = True
        except DatabaseRejected:
            if len(batch) == 1:
                log.exception("the database refused the audit row of a tool call")
                return
            for pending in batch:  # one row the database refuses must not cost the others theirs
                await self._commit([pending])
        except BillingError as error:  # the database is down or has no schema: one line, no traceback
            for pending in batch:
                pending.error = error
            log.error(
                "could not write the audit rows of %d tool calls: %s: %s", _rows(batch), error.code, error.message
            )
        except Exception:
            for pending in batch:
                pending.error = DatabaseError("the audit write failed")
            log.exception("could not write the audit rows of %d tool calls", _rows(batch))


def _rows(batch: list[_Pending]) -> int:
    return sum(pending.row is not None for pending in batch)


def _run_batch(conn: Connection, calls: ToolCallStore, batch: list[_Pending]) -> None:
    readers: dict[SharedRead[Any, Any], list[_Pending]] = {}
    for pending in batch:
        if pending.read is not None:
            readers.setdefault(pending.read, []).append(pending)
    for read, pendings in readers.items():
        _run_read(conn, read, pendings)
    calls.insert_rows(conn, [_row_of(pending) for pending in batch if pending.row is not None])


def _run_read(conn: Connection, read: SharedRead[Any, Any], pendings: list[_Pending]) -> None:
    """One statement for the keys of all ``pendings``; each gets its result or its error (set afresh on every
    attempt: a transaction that is retried runs again)."""
    try:
        found = read.fetch(conn, list(dict.fromkeys(pending.key for pending in pendings)))
    except DBAPIError:
        raise  # the transaction's: retried or failed as a whole
    except BillingError as error:
        for pending in pendings:
            pending.error, pending.row_outcome = error, "error"
        return
    except Exception as error:
        for pending in pendings:
            pending.error, pending.row_outcome = error, "failed"
        return
    for pending in pendings:
        if pending.key in found or read.missing is None:
            pending.result, pending.error, pending.row_outcome = found.get(pending.key), None, "ok"
        else:
            pending.result, pending.error, pending.row_outcome = None, read.missing(pending.key), "error"


def _row_of(pending: _Pending) -> dict[str, Any]:
    row, error = pending.row, pending.error
    assert row is not None
    if pending.read is None or error is None:
        return row
    if isinstance(error, BillingError):
        message = f"{error.code}: {error.message}"
    else:
        message = "internal error"
    return {**row, "outcome": pending.row_outcome, "details": _with_message(row["details"], message)}


def _with_message(details: str, message: str) -> str:
    data = json.loads(details)
    data["message"] = message[:500]
    return json.dumps(data, default=str, sort_keys=True)
