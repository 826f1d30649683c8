"""The audit log, the webhook inbox and the mail outbox as the read side shows them, and their filters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from billing_core.read_models.base import AwareTimestamp, MoneyView, ReadModel, Timestamp


class AuditEntry(ReadModel):
    """Who changed what: a setting change or money movement by a person or a tool."""

    id: int
    actor: str
    action: str
    entity_type: str
    entity_id: str | None
    company_id: int | None
    details: dict[str, Any] = Field(description="What changed (old and new values, amounts, reasons).")
    outcome: str | None = Field(
        None,
        description="MCP tool calls: executed, ok, replayed, confirmation_required, approval_requested, declined, "
        "approved, rejected, refused, error, failed, rate_limited, input_required.",
    )
    amount: MoneyView | None = Field(None, description="MCP tool calls: the money the call moved.")
    created_at: Timestamp


class AuditFilters(ReadModel):
    actor: str | None = Field(None, max_length=200, description="Exactly this actor, e.g. cli:anna or mcp:support.")
    action: str | None = Field(None, max_length=64, description="Exactly this action, e.g. balance.adjust.")
    entity_id: str | None = Field(
        None, max_length=128, description="Exactly this entity, e.g. a tool name with action mcp.tool_call."
    )
    company_id: int | None = Field(None, ge=1)
    since: AwareTimestamp | None = None
    until: AwareTimestamp | None = None


WebhookStatus = Literal["pending", "processed", "ignored", "failed", "dead"]


class WebhookEventView(ReadModel):
    """A received webhook in the inbox (its payload is not shown; it is customer- and provider-controlled)."""

    id: int
    provider: str = Field(description="stripe or retell.")
    event_id: str
    event_type: str
    status: WebhookStatus
    attempts: int
    last_error: str | None
    received_at: Timestamp
    processed_at: Timestamp | None
    next_attempt_at: Timestamp


class WebhookFilters(ReadModel):
    provider: Literal["stripe", "retell"] | None = None
    statuses: tuple[WebhookStatus, ...] | None = Field(None, description="e.g. ['dead', 'failed'].")
    event_type: str | None = Field(None, max_length=64, description="Exactly this type, e.g. call_ended.")
    since: AwareTimestamp | None = Field(None, description="Received at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Received before this instant.")


class OutboxMail(ReadModel):
    """A mail in the outbox: queued with the billing change, sent later by the worker."""

    id: int
    company_id: int | None
    kind: str = Field(description="e.g. invoice, low_balance, topup_failed.")
    recipient: str = Field(description="company or admin.")
    status: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    next_attempt_at: Timestamp
    created_at: Timestamp
    sent_at: Timestamp | None


class OutboxFilters(ReadModel):
    company_id: int | None = Field(None, ge=1)
    kind: str | None = Field(None, max_length=48)
    statuses: tuple[Literal["pending", "sent", "failed"], ...] | None = None
    since: AwareTimestamp | None = Field(None, description="Queued at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Queued before this instant.")
