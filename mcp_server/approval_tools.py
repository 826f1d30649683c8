"""Four-eyes tools: list the requests waiting for a decision, and decide one (never one's own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from billing_core.money import Money
from billing_core.read_models.base import Page
from billing_core.read_models.operations import AuditEntry, AuditFilters
from mcp_server.app import BillingApp, record, tool_errors
from mcp_server.caller import APPROVE, READ
from mcp_server.models import Amount, ApprovalList, ApprovalView
from mcp_server.operations import OPERATIONS
from mcp_server.read_tools import as_data
from mcp_server.tool_specs import ToolSpecs

if TYPE_CHECKING:
    from billing_core.services.approvals import Approval


def approval_view(approval: Approval) -> ApprovalView:
    amount = None
    if approval.amount is not None and approval.currency:
        amount = Amount.of(Money(approval.amount, approval.currency))
    return ApprovalView(
        id=approval.id,
        tool=approval.tool,
        arguments=approval.arguments,
        requested_by=approval.requested_by,
        company_id=approval.company_id,
        amount=amount,
        preview=approval.preview,
        status=approval.status,
        decided_by=approval.decided_by,
        decision_reason=approval.decision_reason,
        result=approval.result,
        created_at=approval.created_at,
        expires_at=approval.expires_at,
        decided_at=approval.decided_at,
    )


def execute_approved(app: BillingApp, approval: Approval) -> Approval:
    """Run an approved request's write exactly as it was requested (synchronous; for tools and the CLI)."""
    op = OPERATIONS[approval.tool]
    args = op.args.model_validate(approval.arguments)
    actor = f"{approval.requested_by} (approved by {approval.decided_by})"[:200]
    try:
        result = op.execute(app.services, actor, args, f"mcp-approval-{approval.id}")
    except Exception as error:
        message = getattr(error, "message", None) or "the write failed; see the server log"
        return app.approvals.record_result(approval.id, {"error": message}, failed=True)
    return app.approvals.record_result(approval.id, result)


def register_approval_tools(tools: ToolSpecs, app: BillingApp) -> None:
    @tools.tool(
        name="list_pending_approvals",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        structured_output=True,
    )
    async def list_pending_approvals(
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many requests, oldest first.")] = 20,
    ) -> ApprovalList:
        """Requests above the four-eyes limits that wait for a decision by someone other than their requester."""
        with tool_errors():
            caller = app.caller()
            caller.require(APPROVE)
            items = await app.services.call(
                lambda: app.approvals.pending(company_id=caller.company_id, limit=limit + 1)
            )
            return ApprovalList(items=[approval_view(a) for a in items[:limit]], has_more=len(items) > limit)

    @tools.tool(
        name="decide_approval",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
        structured_output=True,
    )
    async def decide_approval(
        approval_id: Annotated[int, Field(ge=1, description="The id of a pending request.")],
        decision: Annotated[
            Literal["approve", "reject"], Field(description="approve runs the write; reject drops it.")
        ],
        reason: Annotated[
            str | None, Field(None, max_length=500, description="Why; recorded with the decision.")
        ] = None,
    ) -> ApprovalView:
        """Approve or reject a four-eyes request; approving runs the write as requested, at once. Never one's own."""
        with tool_errors():
            caller = app.caller()
            caller.require(APPROVE)
            pending = await app.services.call(app.approvals.get, approval_id)
            if pending.company_id is not None:
                caller.owns(pending.company_id, f"approval request {approval_id} does not exist")
            elif caller.company_id is not None:
                raise ToolError(f"approval request {approval_id} does not exist")
            rec = record()
            rec.company_id = pending.company_id
            decided = await app.services.call(
                lambda: app.approvals.decide(
                    approval_id, approve=decision == "approve", decided_by=caller.name, reason=reason
                )
            )
            if decided.status == "approved":
                decided = await app.services.call.blocking(execute_approved, app, decided)
                rec.outcome = "approved" if decided.status == "approved" else "approval_failed"
            else:
                rec.outcome = "rejected"
            return approval_view(decided)

    @tools.tool(
        name="get_audit_log",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        structured_output=True,
    )
    async def get_audit_log(
        limit: Annotated[int, Field(ge=1, le=200, description="Entries per page, newest first.")] = 50,
        cursor: Annotated[
            str | None, Field(None, max_length=200, description="next_cursor of the previous page.")
        ] = None,
        actor: Annotated[str | None, Field(None, max_length=200, description="Only this caller's entries.")] = None,
        tool: Annotated[str | None, Field(None, max_length=64, description="Only calls of this MCP tool.")] = None,
        company_id: Annotated[int | None, Field(None, ge=1, description="Only entries about this company.")] = None,
    ) -> Page[AuditEntry]:
        """Who did what and when: every MCP tool call (arguments, outcome) and every other change, newest first."""
        from billing_core.services.tool_calls import TOOL_CALL_ACTION

        with tool_errors():
            caller = app.caller()
            caller.require(READ)
            filters = AuditFilters(
                actor=actor,
                action=TOOL_CALL_ACTION if tool else None,
                entity_id=tool,
                company_id=caller.company(company_id),
            )
            page = await app.services.call(lambda: app.services.queries.audit_log(filters, limit=limit, cursor=cursor))
            return as_data(page)
