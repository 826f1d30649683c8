"""How async entry points run the synchronous services: in the event loop or in a worker thread.

Every async caller (the webhook sidecar, its worker, the MCP server) runs service calls through the
``ServiceCaller`` that ``build_services`` makes; one limit (``BILLING_DB_THREADS``) bounds how many of
them run at once in the process.

- ``await services.call(fn, *args)``: a call that only talks to the database. On MariaDB (with
  ``BILLING_ASYNC_DB_DRIVER=aiomysql``, the default) it runs in the event loop: the synchronous code runs in
  a greenlet (SQLAlchemy's ``greenlet_spawn``, what ``AsyncConnection.run_sync`` does) and every statement
  awaits aiomysql, so a transaction costs no thread hop and no GIL hand-over. On SQLite, or with
  ``BILLING_ASYNC_DB_DRIVER=pymysql``, it runs in a worker thread (SQLite's group commit queues threads).
- ``await services.call.blocking(fn, *args)``: a call that also waits on something else (Stripe, SMTP, a
  process pool, heavy CPU work) always runs in a worker thread, so it never stalls the loop; its database
  work then uses the synchronous driver.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import anyio

if TYPE_CHECKING:
    from billing_core.config import Settings

# SQLAlchemy's greenlet helpers are imported where they are used: `billing mcp` makes its caller before it
# loads SQLAlchemy (the services are built on the first tool call).

P = ParamSpec("P")
T = TypeVar("T")


class ServiceCaller:
    def __init__(self, limit: int, *, in_loop: bool = False) -> None:
        self.limit = limit
        self.in_loop = in_loop
        self._limiter: anyio.CapacityLimiter | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> ServiceCaller:
        """The caller of a process on ``settings``: database-only calls in the event loop on MariaDB with
        aiomysql, in worker threads on SQLite or with ``BILLING_ASYNC_DB_DRIVER=pymysql``."""
        sqlite = settings.database_url.split(":", 1)[0].split("+", 1)[0] == "sqlite"
        return cls(settings.db_threads, in_loop=not sqlite and settings.async_db_driver == "aiomysql")

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # made on first use, inside the running event loop
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limit)
        return self._limiter

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a database-only ``fn(*args, **kwargs)``: in the event loop when it can, else in a thread."""
        if not self.in_loop:
            return await self.blocking(fn, *args, **kwargs)
        from sqlalchemy.util.concurrency import greenlet_spawn

        async with self.limiter:
            # Shielded like a worker thread, which runs to its end whatever happens to the caller: a
            # transaction that started commits or rolls back on its own terms, never half-way through COMMIT.
            with anyio.CancelScope(shield=True):
                result = await greenlet_spawn(functools.partial(fn, *args, **kwargs))
        return result

    async def blocking(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread: for calls that wait on more than the database."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)


def refuse_in_event_loop(what: str) -> None:
    """Fail loudly when ``what`` (a Stripe request, a PDF rendering) would stall the event loop.

    That happens only when an async entry point runs such a call with ``services.call`` instead of
    ``services.call.blocking``: a programming error the MariaDB tests of that entry point then catch.
    """
    from sqlalchemy.util.concurrency import in_greenlet

    if in_greenlet():
        raise RuntimeError(f"{what} would block the event loop; run this service call with `services.call.blocking`")


def exit_with_parent(parent: int) -> None:
    """Process-pool initializer: the pool's process ends when ``parent`` (the process that made the pool) is
    gone, even after a SIGKILL, which no one else would tell it about: an orphaned pool would live on."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
