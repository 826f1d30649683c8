"""What operators audit: the audit log, the webhook inbox and the mail outbox, paged newest first."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Connection, func, select

from billing_core.db.tables import audit_log, notifications, webhook_events
from billing_core.queries.base import (
    DEFAULT_LIMIT,
    AwareTimestamp,
    MoneyView,
    Page,
    ReadModel,
    Timestamp,
    keyset_page,
    narrowed,
)


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


def _audit(row: Any, locale: str) -> AuditEntry:
    amount = row["amount"]
    try:
        details = json.loads(row["details"])
    except ValueError:
        details = {"text": row["details"]}
    return AuditEntry(
        id=row["id"],
        actor=row["actor"],
        action=row["action"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        company_id=row["company_id"],
        details=details if isinstance(details, dict) else {"value": details},
        outcome=row["outcome"],
        amount=None if amount is None or not row["currency"] else MoneyView.of(amount, row["currency"], locale),
        created_at=row["created_at"],
    )


def list_audit_log(
    conn: Connection,
    filters: AuditFilters | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    locale: str = "de_DE",
) -> Page[AuditEntry]:
    filters = filters or AuditFilters()
    query = select(audit_log)
    query = narrowed(
        query,
        equal=[
            (audit_log.c.actor, filters.actor),
            (audit_log.c.action, filters.action),
            (audit_log.c.entity_id, filters.entity_id),
            (audit_log.c.company_id, filters.company_id),
        ],
        period=(audit_log.c.created_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        audit_log.c.id,
        lambda row: _audit(row, locale),
        kind="audit",
        noun="audit log",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


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


_EVENT_COLUMNS = [c for c in webhook_events.c if c.name != "payload"]


def _event(row: Any) -> WebhookEventView:
    return WebhookEventView(**{c.name: row[c.name] for c in _EVENT_COLUMNS})


def list_webhook_events(
    conn: Connection,
    filters: WebhookFilters | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    oldest_first: bool = False,
) -> Page[WebhookEventView]:
    """Inbox events, newest first (oldest first for an operator working through dead letters in order)."""
    filters = filters or WebhookFilters()
    query = select(*_EVENT_COLUMNS)
    query = narrowed(
        query,
        equal=[(webhook_events.c.provider, filters.provider), (webhook_events.c.event_type, filters.event_type)],
        among=[(webhook_events.c.status, filters.statuses)],
        period=(webhook_events.c.received_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        webhook_events.c.id,
        _event,
        kind="webhook_events",
        noun="webhook event",
        filters=filters,
        limit=limit,
        cursor=cursor,
        oldest_first=oldest_first,
    )


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


_MAIL_COLUMNS = [c for c in notifications.c if c.name not in ("payload", "dedupe_key")]


def list_outbox(
    conn: Connection, filters: OutboxFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[OutboxMail]:
    filters = filters or OutboxFilters()
    query = select(*_MAIL_COLUMNS)
    query = narrowed(
        query,
        equal=[(notifications.c.company_id, filters.company_id), (notifications.c.kind, filters.kind)],
        among=[(notifications.c.status, filters.statuses)],
        period=(notifications.c.created_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        notifications.c.id,
        lambda row: OutboxMail(**{c.name: row[c.name] for c in _MAIL_COLUMNS}),
        kind="outbox",
        noun="outbox",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


def webhook_backlog(conn: Connection) -> dict[str, int]:
    """How many events wait (pending), wait for a retry (failed) or gave up (dead), by status."""
    query = (
        select(webhook_events.c.status, func.count())
        .where(webhook_events.c.status.in_(("pending", "failed", "dead")))
        .group_by(webhook_events.c.status)
    )
    return {status: int(count) for status, count in conn.execute(query)}
