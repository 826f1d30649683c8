"""The audit log: who changed what, written in the same transaction as the change."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from billing_core.db.tables import audit_log


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | int | None,
    company_id: int | None,
    details: dict[str, Any],
    now: datetime,
) -> None:
    conn.execute(
        insert(audit_log).values(
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=None if entity_id is None else str(entity_id),
            company_id=company_id,
            details=json.dumps(details, default=str, sort_keys=True),
            created_at=now,
        )
    )
