"""The triggers that write ``statistics_journal``: each change of a base row appends the statistics facts it
adds (+1) and removes (-1), in the same transaction, so the journal and the roll-ups folded from it are exact
whatever code (or operator) changes the rows. Used by migration 0010; one definition for both dialects.

Not on a Galera cluster (migration 0011 drops them there, see :func:`triggers_allowed`).

Facts (the definitions of :mod:`billing_core.queries.statistics`):
- ``calls``: a call charge at ``charged_at`` (company, billed seconds, amount charged). Call charges are never
  deleted and these columns never change (a refund changes ``refund_status`` and ``refunded_amount`` only).
- ``call_refunds``: a ``refund`` ledger entry at ``created_at`` (the ledger is append-only).
- ``topups_created``: a top-up at ``created_at`` by status and source, with its amount; a status change
  moves it from one key to the other.
- ``topups_credited``: a credited top-up (succeeded, partially or fully refunded) at ``succeeded_at``, with
  amount and bonus.
- ``topup_refunds``: a succeeded top-up refund at ``created_at``, with amount and bonus reversed.
- ``webhooks``: a processed webhook event at ``received_at`` by provider and event type, with the
  microseconds to its processing (for sum and maximum). A maximum cannot be taken back: a row that loses the
  fact (its ``processed_at`` changes once set, which the inbox never does) makes the reads of that day
  aggregate the base table instead (see :mod:`billing_core.queries.rollups`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection

CREDITED_SQL = "('succeeded', 'partially_refunded', 'refunded')"


@dataclass(frozen=True)
class Fact:
    fact: str
    table: str
    at: str
    condition: str  # when a row counts, with {r} for NEW or OLD
    k1: str = "''"
    k2: str = "''"
    a: str = "0"
    b: str = "0"
    company: str = "NULL"
    currency: str = "{r}.currency"
    watched: tuple[str, ...] = ()  # columns whose change moves the fact (empty: insert-only)


FACTS = (
    Fact(
        "calls",
        "call_charges",
        "charged_at",
        "1 = 1",
        a="{r}.billed_seconds",
        b="{r}.amount_charged",
        company="{r}.company_id",
    ),
    Fact("call_refunds", "balance_transactions", "created_at", "{r}.type = 'refund'", a="{r}.amount"),
    Fact(
        "topups_created",
        "balance_topups",
        "created_at",
        "1 = 1",
        k1="{r}.status",
        k2="{r}.source",
        a="{r}.amount",
        watched=("status", "source", "amount", "currency", "created_at"),
    ),
    Fact(
        "topups_credited",
        "balance_topups",
        "succeeded_at",
        "{r}.status IN " + CREDITED_SQL + " AND {r}.succeeded_at IS NOT NULL",
        a="{r}.amount",
        b="{r}.bonus_amount",
        watched=("status", "succeeded_at", "amount", "bonus_amount", "currency"),
    ),
    # processing time per provider and event type (no currency); b carries the elapsed time for the maximum
    Fact(
        "webhooks",
        "webhook_events",
        "received_at",
        "{r}.processed_at IS NOT NULL",
        k1="{r}.provider",
        k2="{r}.event_type",
        a="{elapsed}",
        b="{elapsed}",
        currency="''",
        watched=("processed_at", "received_at", "provider", "event_type"),
    ),
    Fact(
        "topup_refunds",
        "topup_refunds",
        "created_at",
        "{r}.status = 'succeeded'",
        a="{r}.amount",
        b="{r}.bonus_reversed",
        watched=("status", "amount", "bonus_reversed", "currency", "created_at"),
    ),
)


def _elapsed(dialect: str, r: str) -> str:
    """Microseconds from receipt to processing, as :func:`billing_core.queries.periods.duration_microseconds`."""
    if dialect == "sqlite":

        def micros(column: str) -> str:
            seconds = f"CAST(strftime('%s', {r}.{column}) AS INTEGER)"
            return f"({seconds} * 1000000 + CAST(substr({r}.{column}, 21, 6) AS INTEGER))"

        return f"({micros('processed_at')} - {micros('received_at')})"
    return f"TIMESTAMPDIFF(MICROSECOND, {r}.received_at, {r}.processed_at)"


COLUMNS = "fact, at, currency, company_id, k1, k2, n, a, b"


def _row(fact: Fact, r: str, sign: int, dialect: str) -> str:
    """An INSERT of the fact for row ``r`` (NEW or OLD) with sign +1/-1, only when the row counts."""
    elapsed = _elapsed(dialect, r)

    def expression(template: str) -> str:
        return template.replace("{elapsed}", elapsed).format(r=r)

    values = [
        f"'{fact.fact}'",
        f"{r}.{fact.at}",
        fact.currency.format(r=r),
        fact.company.format(r=r),
        fact.k1.format(r=r),
        fact.k2.format(r=r),
        str(sign),
        f"{sign} * {expression(fact.a)}",
        f"{sign} * {expression(fact.b)}",
    ]
    source = " FROM DUAL" if dialect != "sqlite" else ""
    return (
        f"INSERT INTO statistics_journal ({COLUMNS}) SELECT {', '.join(values)}{source} "
        f"WHERE {fact.condition.format(r=r)}"
    )


def _changed(columns: tuple[str, ...], dialect: str) -> str:
    if dialect == "sqlite":
        return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
    return " OR ".join(f"NOT (OLD.{c} <=> NEW.{c})" for c in columns)


def triggers_allowed(conn: Connection) -> bool:
    """False on a Galera node. MariaDB 10.11 keeps a table whose triggers it was loading when the statement
    opening the table was killed, with the triggers unparsed, in its table cache: every later write of that
    table on that node fails (1064) until the table is flushed there. Galera kills statements routinely (a
    local transaction aborted for a replicated one), so on a cluster the statistics come from the base tables
    and the journal is not kept (tests/integration/test_mariadb_killed_trigger_load.py shows the server bug)."""
    from billing_core.db.database import on_galera

    return not on_galera(conn)


def trigger_names() -> list[str]:
    names = []
    for table in dict.fromkeys(f.table for f in FACTS):
        names.append(f"trg_statistics_{table}_insert")
        if any(f.watched for f in FACTS if f.table == table):
            names.append(f"trg_statistics_{table}_update")
    return names


def create_triggers(dialect: str) -> list[str]:
    """CREATE TRIGGER statements: one AFTER INSERT and (for mutable facts) one AFTER UPDATE per table."""
    statements = []
    for table in dict.fromkeys(f.table for f in FACTS):
        facts = [f for f in FACTS if f.table == table]
        inserts = [_row(f, "NEW", 1, dialect) for f in facts]
        statements.append(_trigger(f"trg_statistics_{table}_insert", "INSERT", table, inserts))
        mutable = [f for f in facts if f.watched]
        if mutable:
            body = []
            for f in mutable:
                changed = _changed(f.watched, dialect)
                # the old contribution out, the new one in, only when a watched column changed
                for r, sign in (("OLD", -1), ("NEW", 1)):
                    body.append(_row(f, r, sign, dialect) + f" AND ({changed})")
            statements.append(_trigger(f"trg_statistics_{table}_update", "UPDATE", table, body))
    return statements


def _trigger(name: str, event: str, table: str, body: list[str]) -> str:
    statements = "".join(f"{statement}; " for statement in body)
    return f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN {statements}END"


def drop_triggers() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in trigger_names()]
