"""The one hop from async entry points to the synchronous services (after starlette's ``run_in_threadpool``).

Every async caller (the webhook sidecar, its worker, the MCP server) runs service calls through the
``ServiceCaller`` that ``build_services`` makes, so one limit (``BILLING_DB_THREADS``) bounds the database
threads of the whole process: transactions mostly wait on the database, but each thread competes for the
GIL with the event loop, so an unbounded number would starve the HTTP side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio

P = ParamSpec("P")
T = TypeVar("T")


class ServiceCaller:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # made on first use, inside the running event loop
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limit)
        return self._limiter

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread, at most ``limit`` at a time in this process."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)
