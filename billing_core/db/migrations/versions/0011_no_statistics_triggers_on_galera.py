"""no statistics triggers on a Galera cluster: drop them, and the journal and roll-ups they fed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

MariaDB 10.11 can lose a table's triggers for good on a node when Galera aborts a statement that is opening
the table (see billing_core.db.statistics_triggers.triggers_allowed): every write of that table on that node
would fail. On a cluster the whole-business statistics therefore aggregate the base tables, and the worker keeps
no roll-ups; without the triggers the journal and roll-ups would go stale, so they go too (the state row with
them, which is what makes statistics read the base tables). Elsewhere nothing changes.
"""

from __future__ import annotations

from alembic import op

from billing_core.db.statistics_triggers import drop_triggers, triggers_allowed

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if triggers_allowed(conn):
        return
    for statement in drop_triggers():
        op.execute(statement)
    for table in ("statistics_rollup_state", "statistics_rollups", "statistics_journal"):
        op.execute(f"DELETE FROM {table}")


def downgrade() -> None:
    """Nothing: 0010's triggers are not brought back on a cluster, where they are the hazard."""
