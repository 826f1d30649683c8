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
of its own, and its row says how the read ended.

Waiting for the row is shielded from cancellation: a client that hangs up does not take its audit row, or
the rows queued behind it, with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from billing_core.errors import BillingError, DatabaseError, DatabaseRejected

T = TypeVar("T")

if TYPE_CHECKING:
    from billing_core.bootstrap import Services
    from billing_core.services.tool_calls import ToolCallStore

log = logging.getLogger("mcp_server")

MAX_BATCH = 256


class _Pending:
    __slots__ = ("row", "read", "result", "error", "committed", "row_outcome", "wake", "written")

    def __init__(self, row: dict[str, Any], read: Callable[[Connection], Any] | None = None) -> None:
        self.row = row
        self.read = read  # a read that runs in the batch's transaction, before the row is written
        self.result: Any = None
        self.error: BaseException | None = None
        self.committed = False
        self.row_outcome = str(row.get("outcome"))
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
        self, read: Callable[[Connection], T], row: dict[str, Any], *, written: Callable[[str], None]
    ) -> T:
        """Run ``read`` and commit the call's audit row in one transaction (on SQLite shared with concurrent calls).

        The row says ``ok``, or ``error`` with the message of the billing error ``read`` raised (raised here
        too); ``written`` hears the outcome once the row is committed. A failed transaction writes no row and
        raises its error.
        """
        pending = _Pending(row, read)
        await self._join(pending)
        if pending.committed:
            written(pending.row_outcome)
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
            log.error("could not write the audit rows of %d tool calls: %s: %s", len(batch), error.code, error.message)
        except Exception:
            for pending in batch:
                pending.error = DatabaseError("the audit write failed")
            log.exception("could not write the audit rows of %d tool calls", len(batch))


def _run_batch(conn: Connection, calls: ToolCallStore, batch: list[_Pending]) -> None:
    rows = []
    for pending in batch:
        row = pending.row
        if pending.read is not None:
            pending.error, pending.row_outcome = None, "ok"
            try:
                pending.result = pending.read(conn)
            except DBAPIError:
                raise  # the transaction's: retried or failed as a whole
            except BillingError as error:
                pending.error, pending.row_outcome = error, "error"
                row = {
                    **row,
                    "outcome": "error",
                    "details": _with_message(row["details"], f"{error.code}: {error.message}"),
                }
            except Exception as error:
                pending.error, pending.row_outcome = error, "failed"
                row = {**row, "outcome": "failed", "details": _with_message(row["details"], "internal error")}
        rows.append(row)
    calls.insert_rows(conn, rows)


def _with_message(details: str, message: str) -> str:
    data = json.loads(details)
    data["message"] = message[:500]
    return json.dumps(data, default=str, sort_keys=True)
