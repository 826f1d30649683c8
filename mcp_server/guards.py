"""Protocol middleware: the per-caller rate limit, tools/list filtered by scope, and an audit row for every call.

It wraps every inbound message, so a call refused before the tool runs (bad arguments, no scope, the rate
limit) is audited as well as one that ran.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from mcp_server.app import BillingApp, CallRecord, current_record
from mcp_server.caller import current_caller
from mcp_server.text import capped

RATE_LIMITED = -32029  # an implementation-defined JSON-RPC server error
LIMITED_METHODS = ("tools/call", "resources/read", "prompts/get")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: ``per_minute`` calls a minute on average, bursts of that size.

    Kept in the process: each replica limits its own share, which is what protects the database behind it.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str, now: float | None = None) -> float:
        """0 when the call may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(float(self.per_minute), now)
        rate = self.per_minute / 60.0
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate


def _dump(result: HandlerResult) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(by_alias=True, exclude_none=True)
    return dict(result or {})


class Guards:
    def __init__(self, app: BillingApp, tool_scopes: dict[str, str]) -> None:
        self.app = app
        self.tool_scopes = tool_scopes
        self.limiter = RateLimiter(app.settings.rate_limit)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            return self._filtered(await call_next(ctx))
        if ctx.method not in LIMITED_METHODS:
            return await call_next(ctx)
        caller = current_caller(self.app.local_caller)
        wait = self.limiter.take(caller.name)
        if ctx.method != "tools/call":
            if wait:
                raise MCPError(code=RATE_LIMITED, message=self._limited_text(wait))
            return await call_next(ctx)
        params = dict(ctx.params or {})
        tool = str(params.get("name", ""))[:64]
        arguments = params.get("arguments") or {}
        rec = CallRecord(caller=caller.name, tool=tool or "(none)", arguments=_capped_arguments(arguments))
        if wait:
            await self._audit(caller.name, tool, arguments, rec, "rate_limited", self._limited_text(wait))
            raise MCPError(code=RATE_LIMITED, message=self._limited_text(wait))
        token = current_record.set(rec)
        try:
            result = await call_next(ctx)
        except MCPError as error:
            await self._audit(caller.name, tool, arguments, rec, "refused", error.error.message)
            raise
        except BaseException:
            await self._audit(caller.name, tool, arguments, rec, "failed", "internal error")
            raise
        finally:
            current_record.reset(token)
        data = _dump(result)
        if rec.audited and (not data.get("isError") or rec.outcome == "error"):
            return result  # the tool's read wrote the row in its own transaction (BillingApp.read_audited)
        if data.get("isError"):
            texts = [c.get("text", "") for c in data.get("content", []) if isinstance(c, dict)]
            message = " ".join(texts)
            outcome = "refused" if message.startswith("insufficient_scope") else "error"
            await self._audit(caller.name, tool, arguments, rec, outcome, message)
        elif "inputRequests" in data or data.get("resultType") == "input_required":
            await self._audit(caller.name, tool, arguments, rec, "input_required", None)
        else:
            await self._audit(caller.name, tool, arguments, rec, rec.outcome or "ok", None)
        return result

    def _limited_text(self, wait: float) -> str:
        return (
            f"rate limit: at most {self.app.settings.rate_limit} calls a minute per caller; "
            f"try again in {math.ceil(wait)} s"
        )

    def _filtered(self, result: HandlerResult) -> HandlerResult:
        caller = current_caller(self.app.local_caller)
        data = _dump(result)
        data["tools"] = [
            t for t in data.get("tools", []) if caller.allows(self.tool_scopes.get(str(t.get("name")), "billing:admin"))
        ]
        return data

    async def _audit(
        self, caller: str, tool: str, arguments: Any, rec: CallRecord, outcome: str, message: str | None
    ) -> None:
        row = self.app.calls.audit_row(
            actor=caller,
            tool=tool or "(none)",
            outcome=outcome,
            arguments=rec.arguments if rec.arguments is not None else _capped_arguments(arguments),
            company_id=rec.company_id,
            amount=rec.amount,
            currency=rec.currency,
            message=message,
        )
        await self.app.audit.write(row)  # committed before the call answers; a failure is logged, not raised


def _capped_arguments(arguments: Any) -> dict[str, Any]:
    if not isinstance(arguments, dict):
        return {"_raw": capped(json.dumps(arguments, default=str), 500)}
    out: dict[str, Any] = {}
    for key, value in list(arguments.items())[:30]:
        name = capped(str(key), 64)
        if name == "confirmation_token":
            out[name] = "(given)" if value else None  # a live credential: never stored in the clear
        elif isinstance(value, str):
            out[name] = capped(value, 500)
        elif isinstance(value, int | float | bool) or value is None:
            out[name] = value
        else:
            out[name] = capped(json.dumps(value, default=str), 500)
    return out
