"""What operators audit: the audit log, the webhook inbox and the mail outbox, paged newest first."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select

from billing_core.db.tables import audit_log, notifications, webhook_events
from billing_core.queries.base import keyset_page, narrowed
from billing_core.read_models.base import DEFAULT_LIMIT, MoneyView, Page
from billing_core.read_models.operations import (
    AuditEntry,
    AuditFilters,
    OutboxFilters,
    OutboxMail,
    WebhookEventView,
    WebhookFilters,
    WebhookStatus,
)

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = [
    "AuditEntry",
    "AuditFilters",
    "OutboxFilters",
    "OutboxMail",
    "WebhookEventView",
    "WebhookFilters",
    "WebhookStatus",
]


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
