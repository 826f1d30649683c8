"""The notification outbox: a row per mail, written in the same transaction as the event it reports.

Sending is the worker's job; a mail that cannot be sent never blocks or rolls back billing. A
``dedupe_key`` makes "at most once per day" and "at most once an hour" alerts a unique key, not a hope.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from billing_core.db.tables import notifications

KINDS = (
    "invoice",
    "credit_note",
    "low_balance",
    "payment_failed",
    "auto_topup_succeeded",
    "auto_topup_failed",
    "auto_topup_disabled",
    "high_failure_rate",
    "dispute_opened",
    "dispute_closed",
    "payment_method_detached",
    "invoice_blocked",
    "webhook_dead_letter",
)


def enqueue(
    conn: Connection,
    *,
    kind: str,
    recipient: str,
    company_id: int | None,
    payload: dict[str, Any],
    now: datetime,
    dedupe_key: str | None = None,
) -> bool:
    """Queue a mail; returns False when ``dedupe_key`` was queued before (nothing new is written)."""
    assert kind in KINDS, kind
    assert recipient in ("company", "admin"), recipient
    if dedupe_key is not None:
        exists = conn.execute(select(notifications.c.id).where(notifications.c.dedupe_key == dedupe_key)).first()
        if exists is not None:
            return False
    values = {
        "kind": kind,
        "recipient": recipient,
        "company_id": company_id,
        "payload": json.dumps(payload, default=str, sort_keys=True),
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    if dedupe_key is None:
        conn.execute(insert(notifications).values(**values))
        return True
    # A concurrent writer may have queued the same key since the check: keep the transaction alive.
    nested = conn.begin_nested()
    try:
        conn.execute(insert(notifications).values(**values))
    except IntegrityError:
        nested.rollback()
        return False
    nested.commit()
    return True
