"""The services of ``billing mcp`` over stdio, built on the first call that needs them.

A client starts the stdio server and lists its tools before anyone asks anything; answering that needs the
tools' schemas, not the database. So the server starts without SQLAlchemy, the tables, the services, Stripe
or WeasyPrint, and :class:`ServicesOnDemand` builds them when a tool call or a resource read first needs
them, in a worker thread so the event loop keeps serving. A DATABASE_URL or another setting that cannot work
then fails that call with a clear tool error (and one line on stderr), not the server's start: the client
still shows the server and its tools, and the error says what to fix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, CallToolResult, TextContent

from billing_core.errors import BillingError

if TYPE_CHECKING:
    from billing_core.bootstrap import Services

log = logging.getLogger("mcp_server")

# What reads or writes billing data; everything else (initialize, the lists, prompts) is answered without it.
NEEDS_SERVICES = ("tools/call", "resources/read")


class ServicesOnDemand:
    """The services, built once by ``build`` on first use (or given already built)."""

    def __init__(self, build: Callable[[], Services]) -> None:
        self._build = build
        self._built: Services | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> ServicesOnDemand:
        """The services on the settings of the environment and ``.env``, both read on first use: listing the
        tools needs neither (nor the currency data the settings' amounts are checked against), and a setting
        that cannot work then fails that call with a clear error, as a DATABASE_URL that cannot work does."""

        def build() -> Services:
            from billing_core.bootstrap import build_services  # SQLAlchemy and every service: imported here
            from billing_core.config import read_settings

            return build_services(read_settings())

        return cls(build)

    @classmethod
    def built(cls, services: Services) -> ServicesOnDemand:
        on_demand = cls(lambda: services)
        on_demand._built = services
        return on_demand

    @property
    def is_built(self) -> bool:
        return self._built is not None

    def get(self) -> Services:
        """The services, building them now if no call has yet (the first caller builds, others wait)."""
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
        return self._built

    async def ready(self) -> Services:
        """The services, built in a worker thread if they are not yet."""
        if self._built is not None:
            return self._built
        return await anyio.to_thread.run_sync(self.get)  # imports and builds: never in the loop

    def close(self) -> None:
        if self._built is not None:
            self._built.close()


class BuildServicesFirst:
    """Middleware: before a call that needs the services, build them off the event loop; if that fails, the
    call gets the reason as its error (a tool error for tools/call) and stderr gets one line."""

    def __init__(self, services: ServicesOnDemand) -> None:
        self.services = services

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method in NEEDS_SERVICES and not self.services.is_built:
            try:
                await self.services.ready()
            except BillingError as error:
                log.error("cannot serve %s: %s: %s", ctx.method, error.code, error.message)
                return _failure(ctx, f"{error.code}: {error.message}")
            except Exception:
                log.exception("cannot serve %s: building the services failed", ctx.method)
                return _failure(ctx, "internal_error: the server could not start its billing services")
        return await call_next(ctx)


def _failure(ctx: ServerRequestContext[Any, Any], message: str) -> HandlerResult:
    if ctx.method == "tools/call":  # worded like every other tool error (the SDK's prefix)
        tool = str(dict(ctx.params or {}).get("name", ""))[:64]
        text = f"Error executing tool {tool}: {message}"
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    raise MCPError(code=INTERNAL_ERROR, message=message)
