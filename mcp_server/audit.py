"""Group commit for the audit rows of tool calls: concurrent calls share one thread hop and one transaction.

Every tool call waits until its audit row is committed before it answers, as it did when each call wrote its
own row. Rows that arrive while a batch is being written queue up; when that batch is committed, the first
waiting call writes all of them at once (one multi-row INSERT, one COMMIT, on SQLite one fsync). Under load a
call costs a share of one transaction instead of a transaction of its own; alone, it costs what it did.

Waiting for the row is shielded from cancellation: a client that hangs up does not take its audit row, or
the rows queued behind it, with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from billing_core.errors import DatabaseRejected

if TYPE_CHECKING:
    from billing_core.bootstrap import Services
    from billing_core.services.tool_calls import ToolCallStore

log = logging.getLogger("mcp_server")

MAX_BATCH = 256


class _Pending:
    __slots__ = ("row", "wake", "written")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.wake = anyio.Event()
        self.written = False


class AuditWriter:
    def __init__(self, services: Services, calls: ToolCallStore) -> None:
        self._services = services
        self._calls = calls
        self._queue: list[_Pending] = []
        self._leading = False

    async def write(self, row: dict[str, Any]) -> None:
        """Commit ``row`` (see :meth:`ToolCallStore.audit_row`); a failure is logged, never raised."""
        pending = _Pending(row)
        self._queue.append(pending)
        with anyio.CancelScope(shield=True):
            if self._leading:
                await pending.wake.wait()  # set when our row is written, or when we are to write the next batch
                if pending.written:
                    return
            self._leading = True
            await self._write_one_batch()

    async def _write_one_batch(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            await self._commit([p.row for p in batch])
        finally:
            for pending in batch:
                pending.written = True
                pending.wake.set()
            if self._queue:
                self._queue[0].wake.set()  # its caller writes the next batch
            else:
                self._leading = False

    async def _commit(self, rows: list[dict[str, Any]]) -> None:
        # The call's own answer must not be lost to a failed audit write: failures are logged.
        try:
            await self._services.call(self._calls.record_rows, rows)
        except DatabaseRejected:
            if len(rows) == 1:
                log.exception("the database refused the audit row of a tool call")
                return
            for row in rows:  # one row the database refuses must not cost the others theirs
                await self._commit([row])
        except Exception:
            log.exception("could not write the audit rows of %d tool calls", len(rows))
