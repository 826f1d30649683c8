"""What the MCP server remembers about tool calls: their audit rows, their first outcomes per idempotency key,
single-use confirmation tokens, and the money each caller moved today (for the daily limit).

Every record lives in the database, so several server replicas share it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from billing_core.db.database import inserted_id
from billing_core.db.tables import audit_log, tool_confirmations, tool_idempotency
from billing_core.errors import IdempotencyKeyReused, InvalidInput
from billing_core.services.context import ServiceContext

TOOL_CALL_ACTION = "mcp.tool_call"
CONFIRMATION_PREFIX = "ct_"
EXECUTED = "executed"


def arguments_hash(tool: str, arguments: dict[str, Any]) -> str:
    """The fingerprint a confirmation token and an idempotency key are bound to."""
    canonical = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _key_hash(caller: str, key: str) -> str:
    return hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()


def service_key(caller: str, key: str) -> str:
    """An idempotency key for the service call behind a tool call (so a crash between the two cannot double-pay)."""
    return "mcp-" + _key_hash(caller, key)[:40]


class ConfirmationRefused(InvalidInput):
    code = "confirmation_refused"


@dataclass(frozen=True, slots=True)
class Confirmation:
    id: int
    preview: dict[str, Any]
    result: dict[str, Any] | None


class ToolCallStore:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    # -- audit ------------------------------------------------------------------------------------

    def audit_row(
        self,
        *,
        actor: str,
        tool: str,
        outcome: str,
        arguments: dict[str, Any],
        company_id: int | None = None,
        amount: int | None = None,
        currency: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """The audit row of one tool call, stamped now (for :meth:`record_rows`)."""
        details: dict[str, Any] = {"arguments": arguments}
        if message:
            details["message"] = message[:500]
        return {
            "actor": actor[:200],
            "action": TOOL_CALL_ACTION,
            "entity_type": "mcp_tool",
            "entity_id": tool[:128],
            "company_id": company_id,
            "details": json.dumps(details, default=str, sort_keys=True),
            "outcome": outcome[:24],
            "amount": amount,
            "currency": currency,
            "created_at": self._ctx.clock(),
        }

    def record_rows(self, rows: list[dict[str, Any]]) -> None:
        """Write the audit rows of several tool calls in one transaction (one multi-row INSERT)."""
        if rows:
            self._ctx.db.write(lambda conn: self.insert_rows(conn, rows))

    @staticmethod
    def insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Insert audit rows inside the caller's transaction."""
        if rows:
            conn.execute(insert(audit_log), rows)

    def moved_today(self, actor: str, currency: str, *, since: datetime) -> int:
        """Minor units the caller's executed tool calls moved since ``since`` (absolute values)."""
        query = select(func.coalesce(func.sum(func.abs(audit_log.c.amount)), 0)).where(
            and_(
                audit_log.c.actor == actor,
                audit_log.c.created_at >= since,
                audit_log.c.action == TOOL_CALL_ACTION,
                audit_log.c.outcome == EXECUTED,
                audit_log.c.currency == currency,
            )
        )
        return int(self._ctx.db.read(lambda conn: conn.execute(query).scalar_one()))

    # -- idempotency keys -------------------------------------------------------------------------

    def first_outcome(self, caller: str, key: str, tool: str, args_hash: str) -> dict[str, Any] | None:
        """The stored outcome of an earlier call with this key; refused when the key was used for something else."""
        digest = _key_hash(caller, key)
        row = self._ctx.db.read(
            lambda conn: conn.execute(select(tool_idempotency).where(tool_idempotency.c.key_hash == digest)).first()
        )
        if row is None:
            return None
        if row.tool != tool or row.arguments_hash != args_hash:
            raise IdempotencyKeyReused(key)
        return dict(json.loads(row.result))

    def remember_outcome(
        self, caller: str, key: str, tool: str, args_hash: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Store the first outcome; if a concurrent call stored one first, that one wins and is returned."""
        digest = _key_hash(caller, key)
        values = {
            "key_hash": digest,
            "caller": caller[:200],
            "tool": tool,
            "arguments_hash": args_hash,
            "result": json.dumps(result, default=str, sort_keys=True),
            "created_at": self._ctx.clock(),
        }
        try:
            self._ctx.db.write(lambda conn: conn.execute(insert(tool_idempotency).values(**values)))
        except IntegrityError:
            earlier = self.first_outcome(caller, key, tool, args_hash)
            if earlier is not None:
                return earlier
            raise
        return result

    # -- confirmation tokens ----------------------------------------------------------------------

    def issue_confirmation(
        self, *, caller: str, tool: str, args_hash: str, preview: dict[str, Any], ttl: timedelta
    ) -> tuple[str, datetime]:
        token = CONFIRMATION_PREFIX + secrets.token_urlsafe(24)
        now = self._ctx.clock()
        expires = now + ttl
        values = {
            "token_hash": hashlib.sha256(token.encode()).hexdigest(),
            "caller": caller[:200],
            "tool": tool,
            "arguments_hash": args_hash,
            "preview": json.dumps(preview, default=str, sort_keys=True),
            "created_at": now,
            "expires_at": expires,
        }
        self._ctx.db.write(lambda conn: inserted_id(conn.execute(insert(tool_confirmations).values(**values))))
        return token, expires

    def check_confirmation(self, token: str, *, caller: str, tool: str, args_hash: str) -> Confirmation:
        """The confirmation this token stands for, if it was issued to this caller for exactly these arguments."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        row = self._ctx.db.read(
            lambda conn: conn.execute(
                select(tool_confirmations).where(tool_confirmations.c.token_hash == digest)
            ).first()
        )
        if row is None or row.caller != caller or row.tool != tool:
            raise ConfirmationRefused("the confirmation token is not valid for this caller and tool")
        if row.arguments_hash != args_hash:
            raise ConfirmationRefused(
                "the confirmation token was issued for other arguments; nothing was changed. "
                "Call the tool again without a token to get a new preview."
            )
        result = json.loads(row.result) if row.result else None
        if result is None and row.used_at is None and row.expires_at <= self._ctx.clock():
            raise ConfirmationRefused("the confirmation token has expired; call the tool again for a new preview")
        return Confirmation(row.id, json.loads(row.preview), result)

    def claim_confirmation(self, confirmation_id: int) -> None:
        """Mark the token used, at its first use.

        A later use with no stored result is an execution whose answer was lost (a timeout, a dropped
        connection, a database error after the money moved) or one still running: it may run again, because
        the service call behind it carries the same idempotency key and replays instead of moving money twice.
        """
        self._ctx.db.write(
            lambda conn: conn.execute(
                update(tool_confirmations)
                .where(and_(tool_confirmations.c.id == confirmation_id, tool_confirmations.c.used_at.is_(None)))
                .values(used_at=self._ctx.clock())
            )
        )

    def store_confirmation_result(self, confirmation_id: int, result: dict[str, Any]) -> dict[str, Any]:
        """Keep the outcome of the token's execution; the first one stored wins and is returned."""
        text = json.dumps(result, default=str, sort_keys=True)

        def work(conn: Connection) -> str:
            conn.execute(
                update(tool_confirmations)
                .where(and_(tool_confirmations.c.id == confirmation_id, tool_confirmations.c.result.is_(None)))
                .values(result=text)
            )
            stored = conn.execute(
                select(tool_confirmations.c.result).where(tool_confirmations.c.id == confirmation_id)
            ).scalar_one()
            return str(stored)

        return dict(json.loads(self._ctx.db.write(work)))
