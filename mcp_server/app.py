"""What every tool, resource and prompt of one server shares: the services, the settings and the stores."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from mcp.server.mcpserver.exceptions import ToolError

from billing_core.errors import BillingError, DatabaseError
from mcp_server.caller import Caller, current_caller
from mcp_server.services_on_demand import ServicesOnDemand
from mcp_server.settings import McpSettings

if TYPE_CHECKING:
    from billing_core.bootstrap import Services
    from billing_core.services.api_tokens import ApiTokenService
    from billing_core.services.approvals import ApprovalService
    from billing_core.services.tool_calls import ToolCallStore
    from mcp_server.audit import AuditWriter
    from mcp_server.shared_read import SharedRead

log = logging.getLogger("mcp_server")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass
class CallRecord:
    """What a tool call leaves for its audit row (filled by the tool, written by the audit middleware)."""

    outcome: str | None = None
    company_id: int | None = None
    amount: int | None = None
    currency: str | None = None
    caller: str | None = None
    tool: str | None = None  # set by the audit middleware, with the capped arguments
    arguments: dict[str, Any] | None = None
    audited: bool = False  # the row is written already (read_audited)


current_record: ContextVar[CallRecord | None] = ContextVar("billing_mcp_call_record", default=None)


def record() -> CallRecord:
    found = current_record.get()
    return found if found is not None else CallRecord()


@dataclass
class BillingApp:
    """``services`` may be given built, or :class:`ServicesOnDemand` that builds them on the first call that
    needs them (``billing mcp`` over stdio); tools reach them through :attr:`services` at call time."""

    source: Services | ServicesOnDemand
    settings: McpSettings
    local_caller: Caller
    shared_audit: AuditWriter | None = None  # one the HTTP server's token lookups use too

    @cached_property
    def on_demand(self) -> ServicesOnDemand:
        source = self.source
        return source if isinstance(source, ServicesOnDemand) else ServicesOnDemand.built(source)

    @property
    def services(self) -> Services:
        return self.on_demand.get()

    @cached_property
    def tokens(self) -> ApiTokenService:
        from billing_core.services.api_tokens import ApiTokenService

        return ApiTokenService(self.services.ctx)

    @cached_property
    def approvals(self) -> ApprovalService:
        from billing_core.services.approvals import ApprovalService

        return ApprovalService(self.services.ctx)

    @cached_property
    def calls(self) -> ToolCallStore:
        from billing_core.services.tool_calls import ToolCallStore

        return ToolCallStore(self.services.ctx)

    @cached_property
    def audit(self) -> AuditWriter:
        if self.shared_audit is not None:
            return self.shared_audit
        from mcp_server.audit import AuditWriter

        return AuditWriter(self.services, self.calls)

    async def read_audited(self, read: SharedRead[K, T], key: K) -> T:
        """Read ``key`` and write the call's audit row in the same transaction.

        One service call and one transaction for both, shared with concurrent calls, whose reads of the same
        kind share one statement (see :mod:`mcp_server.audit`). Outside the audit middleware (no call record)
        it is a plain read.
        """
        rec = record()
        if rec.tool is None or rec.caller is None:
            return await self.services.call(self.services.ctx.db.read, lambda conn: read.one(conn, key))
        row = self.calls.audit_row(
            actor=rec.caller, tool=rec.tool, outcome="ok", arguments=rec.arguments or {}, company_id=rec.company_id
        )

        def written(outcome: str) -> None:
            rec.audited, rec.outcome = True, outcome

        return await self.audit.read_and_write(read, key, row, written=written)

    def caller(self) -> Caller:
        caller = current_caller(self.local_caller)
        record().caller = caller.name
        return caller

    def day_start(self) -> datetime:
        """Midnight of today in the seller's time zone (BILLING_TIMEZONE), where the daily limit restarts."""
        zone = ZoneInfo(self.services.ctx.settings.timezone)
        today = self.services.ctx.clock().astimezone(zone).date()
        return datetime.combine(today, time(0), tzinfo=zone)

    @property
    def confirmation_ttl(self) -> timedelta:
        return timedelta(minutes=self.settings.confirmation_minutes)

    @property
    def approval_ttl(self) -> timedelta:
        return timedelta(hours=self.settings.approval_hours)


@contextmanager
def tool_errors() -> Iterator[None]:
    """Billing errors reach the model as their message; anything else as a line without a trace or a secret."""
    try:
        yield
    except ToolError:
        raise
    except BillingError as error:
        if isinstance(error, DatabaseError):  # the operator's to fix (an outage, no schema): say so on stderr too
            log.error("tool call failed: %s: %s", error.code, error.message)
        raise ToolError(f"{error.code}: {error.message}") from None
    except Exception:
        log.exception("tool failed unexpectedly")
        raise ToolError("internal_error: the server could not complete this call; nothing was reported") from None
