"""Four-eyes approvals: a write above the configured limits waits here until a second person decides it.

The requester can never decide its own request. A request expires when nobody decides it in time.
Deciding claims the row under a conditional UPDATE, so two approvers racing cannot both execute it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from billing_core.db.database import inserted_id
from billing_core.db.tables import tool_approvals
from billing_core.errors import Conflict, InvalidInput, NotFound
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext


class SelfApprovalRefused(InvalidInput):
    code = "self_approval_refused"


@dataclass(frozen=True, slots=True)
class Approval:
    id: int
    tool: str
    arguments: dict[str, Any]
    requested_by: str
    company_id: int | None
    amount: int | None
    currency: str | None
    preview: dict[str, Any]
    status: str
    decided_by: str | None
    decision_reason: str | None
    result: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "arguments": self.arguments,
            "requested_by": self.requested_by,
            "company_id": self.company_id,
            "amount": None if self.amount is None else {"cents": self.amount, "currency": self.currency},
            "preview": self.preview,
            "status": self.status,
            "decided_by": self.decided_by,
            "decision_reason": self.decision_reason,
            "result": self.result,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


def _approval(row: Any) -> Approval:
    return Approval(
        id=row.id,
        tool=row.tool,
        arguments=json.loads(row.arguments),
        requested_by=row.requested_by,
        company_id=row.company_id,
        amount=row.amount,
        currency=row.currency,
        preview=json.loads(row.preview),
        status=row.status,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        result=json.loads(row.result) if row.result else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
    )


class ApprovalService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def request(
        self,
        *,
        tool: str,
        arguments: dict[str, Any],
        arguments_hash: str,
        requested_by: str,
        company_id: int | None,
        amount: int | None,
        currency: str | None,
        preview: dict[str, Any],
        ttl: timedelta,
    ) -> Approval:
        now = self._ctx.clock()

        def work(conn: Connection) -> Approval:
            approval_id = inserted_id(
                conn.execute(
                    insert(tool_approvals).values(
                        tool=tool,
                        arguments=json.dumps(arguments, default=str, sort_keys=True),
                        arguments_hash=arguments_hash,
                        requested_by=requested_by[:200],
                        company_id=company_id,
                        amount=amount,
                        currency=currency,
                        preview=json.dumps(preview, default=str, sort_keys=True),
                        status="pending",
                        created_at=now,
                        expires_at=now + ttl,
                    )
                )
            )
            audit.record(
                conn,
                actor=requested_by,
                action="approval.requested",
                entity_type="tool_approval",
                entity_id=approval_id,
                company_id=company_id,
                details={"tool": tool, "amount": amount, "currency": currency},
                now=now,
            )
            return _approval(conn.execute(select(tool_approvals).where(tool_approvals.c.id == approval_id)).one())

        return self._ctx.db.write(work)

    def get(self, approval_id: int) -> Approval:
        row = self._ctx.db.read(
            lambda conn: conn.execute(select(tool_approvals).where(tool_approvals.c.id == approval_id)).first()
        )
        if row is None:
            raise NotFound(f"approval request {approval_id} does not exist")
        return _approval(row)

    def pending(self, *, company_id: int | None = None, limit: int = 50) -> list[Approval]:
        """Requests still waiting for a decision (expired ones are marked so first)."""
        self.expire_overdue()
        query = select(tool_approvals).where(tool_approvals.c.status == "pending")
        if company_id is not None:
            query = query.where(tool_approvals.c.company_id == company_id)
        query = query.order_by(tool_approvals.c.id).limit(limit)
        return self._ctx.db.read(lambda conn: [_approval(r) for r in conn.execute(query)])

    def expire_overdue(self) -> int:
        now = self._ctx.clock()
        return self._ctx.db.write(
            lambda conn: (
                conn.execute(
                    update(tool_approvals)
                    .where(and_(tool_approvals.c.status == "pending", tool_approvals.c.expires_at <= now))
                    .values(status="expired", decided_at=now)
                ).rowcount
            )
        )

    def decide(self, approval_id: int, *, approve: bool, decided_by: str, reason: str | None = None) -> Approval:
        """Claim the request for a decision. Approving returns it with status ``approved``; the caller executes
        it and records the outcome with :meth:`record_result`."""
        decided_by = validation.text(decided_by, "decided by", max_length=200)
        if reason is not None:
            reason = validation.text(reason, "reason")

        def work(conn: Connection) -> Approval:
            row = conn.execute(select(tool_approvals).where(tool_approvals.c.id == approval_id)).first()
            if row is None:
                raise NotFound(f"approval request {approval_id} does not exist")
            if row.requested_by == decided_by:
                raise SelfApprovalRefused("a request cannot be decided by the caller who made it; ask another person")
            now = self._ctx.clock()
            if row.status == "pending" and row.expires_at <= now:
                conn.execute(update(tool_approvals).where(tool_approvals.c.id == approval_id).values(status="expired"))
                raise Conflict(f"approval request {approval_id} has expired; nothing was changed")
            status = "approved" if approve else "rejected"
            claimed = conn.execute(
                update(tool_approvals)
                .where(and_(tool_approvals.c.id == approval_id, tool_approvals.c.status == "pending"))
                .values(status=status, decided_by=decided_by, decision_reason=reason, decided_at=now)
            ).rowcount
            if claimed != 1:
                raise Conflict(f"approval request {approval_id} is already {row.status}")
            audit.record(
                conn,
                actor=decided_by,
                action=f"approval.{status}",
                entity_type="tool_approval",
                entity_id=approval_id,
                company_id=row.company_id,
                details={"tool": row.tool, "requested_by": row.requested_by, "reason": reason},
                now=now,
            )
            return _approval(conn.execute(select(tool_approvals).where(tool_approvals.c.id == approval_id)).one())

        return self._ctx.db.write(work)

    def record_result(self, approval_id: int, result: dict[str, Any], *, failed: bool = False) -> Approval:
        text = json.dumps(result, default=str, sort_keys=True)
        values: dict[str, Any] = {"result": text}
        if failed:
            values["status"] = "failed"

        def work(conn: Connection) -> Approval:
            conn.execute(update(tool_approvals).where(tool_approvals.c.id == approval_id).values(**values))
            return _approval(conn.execute(select(tool_approvals).where(tool_approvals.c.id == approval_id)).one())

        return self._ctx.db.write(work)
