"""The notification outbox: a row per mail, written in the same transaction as the event it reports.

Sending is the worker's job; a mail that cannot be sent never blocks or rolls back billing. A
``dedupe_key`` makes "at most once per day" and "at most once an hour" alerts a unique key, not a hope.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from billing_core.db.tables import notifications

# The one list of notification kinds: queueing checks against it, every kind has mail templates for the
# recipients below (billing_core/templates/mail/<language>/<kind>.<recipient>.{txt,html}), tests use it.
NotificationKind = Literal[
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
]
Recipient = Literal["company", "admin"]
KINDS: tuple[NotificationKind, ...] = get_args(NotificationKind)
RECIPIENTS: tuple[Recipient, ...] = get_args(Recipient)

# Who receives each kind.
SENT_TO: Mapping[NotificationKind, tuple[Recipient, ...]] = {
    "invoice": ("company",),
    "credit_note": ("company",),
    "low_balance": ("company",),
    "payment_failed": ("company", "admin"),
    "auto_topup_succeeded": ("company",),
    "auto_topup_failed": ("company",),
    "auto_topup_disabled": ("company",),
    "high_failure_rate": ("admin",),
    "dispute_opened": ("admin",),
    "dispute_closed": ("admin",),
    "payment_method_detached": ("company",),
    "invoice_blocked": ("admin",),
}
# Every (kind, recipient) pair that has templates; a notification queued for another pair fails at once.
TEMPLATES: tuple[tuple[NotificationKind, Recipient], ...] = tuple(
    (kind, recipient) for kind in KINDS for recipient in SENT_TO[kind]
)
# Kinds whose mail carries the document's PDF.
ATTACHMENT_KINDS: frozenset[NotificationKind] = frozenset({"invoice", "credit_note"})


def enqueue(
    conn: Connection,
    *,
    kind: NotificationKind,
    recipient: Recipient,
    company_id: int | None,
    payload: dict[str, Any],
    now: datetime,
    dedupe_key: str | None = None,
) -> bool:
    """Queue a mail; returns False when ``dedupe_key`` was queued before (nothing new is written)."""
    assert kind in KINDS, kind
    assert recipient in RECIPIENTS, recipient
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
