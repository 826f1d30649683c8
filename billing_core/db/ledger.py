"""The balance row lock and the one way to change a balance: an append-only ledger entry.

Lock order everywhere: the company's ``prepaid_balances`` row first (``SELECT ... FOR UPDATE``), then
whatever the use case touches (the call charge, the top-up). On Galera the lock holds only on the local
node; what makes concurrent transactions of one company conflict cluster-wide is that each of them
writes that row (a money movement, or :func:`write_guard` where none happens). Every money movement goes through
:func:`post_entry`, which writes the entry with its ``balance_before``/``balance_after`` and moves the
stored balance in the same transaction, so the balance is the sum of the ledger by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from billing_core.db.direct import DirectStatement
from billing_core.db.tables import balances, companies, ledger
from billing_core.errors import CompanyNotFound
from billing_core.money import Money

ENTRY_TYPES = ("topup", "bonus", "charge", "refund", "adjustment", "reversal")


@dataclass(slots=True)
class LockedBalance:
    """The company's balance row, locked for the rest of the transaction."""

    company_id: int
    currency: str
    balance: int
    reserved: int
    extra: dict[str, Any]

    @property
    def available(self) -> int:
        return self.balance - self.reserved


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    company_id: int
    type: str
    amount: Money
    balance_before: Money
    balance_after: Money
    description: str
    reference_type: str | None
    reference_id: str | None
    idempotency_key: str
    actor: str | None
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "company_id": self.company_id,
            "type": self.type,
            "amount": self.amount.as_json(),
            "balance_before": self.balance_before.as_json(),
            "balance_after": self.balance_after.as_json(),
            "description": self.description,
            "reference_type": self.reference_type,
            "reference_id": self.reference_id,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
        }


def locking_select(*extra_columns: Any) -> DirectStatement:
    """A ``SELECT ... FOR UPDATE`` of the balance row by ``:company_id``, plus ``extra_columns``.

    Build these once at import time: every money movement starts with one, so it runs as a
    :class:`DirectStatement`. Select only what the use case reads: every column costs a column definition
    the driver parses on each execution.
    """
    return DirectStatement(
        select(
            balances.c.currency,
            balances.c.balance,
            balances.c.reserved_balance,
            *extra_columns,
        )
        .where(balances.c.company_id == bindparam("company_id"))
        .with_for_update()
    )


LOCK_BALANCE = locking_select()
INSERT_ENTRY = DirectStatement(insert(ledger))
UPDATE_BALANCE = DirectStatement(
    update(balances)
    .where(balances.c.company_id == bindparam("b_company_id"))
    .values(
        balance=bindparam("b_balance"),
        reserved_balance=bindparam("b_reserved"),
        updated_at=bindparam("b_updated_at"),
    )
)
BUMP_GUARD = DirectStatement(
    update(balances)
    .where(balances.c.company_id == bindparam("g_company_id"))
    .values(guard_version=balances.c.guard_version + 1)
)
_BASE_COLUMNS = 3  # currency, balance, reserved_balance


def lock_balance(
    conn: Connection, company_id: int, statement: DirectStatement = LOCK_BALANCE, **params: Any
) -> LockedBalance:
    """Lock the company's balance row; the statement's extra columns come back in ``extra``."""
    row = statement.first(conn, {"company_id": company_id, **params})
    if row is None:
        raise CompanyNotFound(company_id)
    currency, balance, reserved, *extra = row
    return LockedBalance(
        company_id=company_id,
        currency=currency,
        balance=balance,
        reserved=reserved,
        extra=dict(zip(row._fields[_BASE_COLUMNS:], extra, strict=True)) if extra else {},
    )


def write_guard(conn: Connection, locked: LockedBalance) -> None:
    """Write the locked balance row although no money moves: a guard that counts rows and then inserts.

    ``SELECT ... FOR UPDATE`` serialises such guards on one server, but on Galera the lock is local to the
    node: two transactions on two nodes that read the same counts and insert different rows both certify
    (write skew). Writing the row that guards the count makes them write the same row, so the second one
    fails certification (a deadlock error at commit), is retried, and then sees the first one's row.
    """
    BUMP_GUARD.update(conn, {"g_company_id": locked.company_id})


def company_exists(conn: Connection, company_id: int) -> bool:
    return conn.execute(select(companies.c.id).where(companies.c.id == company_id)).first() is not None


def post_entry(
    conn: Connection,
    locked: LockedBalance,
    *,
    type: str,
    amount: int,
    description: str,
    idempotency_key: str,
    now: datetime,
    reference_type: str | None = None,
    reference_id: str | None = None,
    actor: str | None = None,
    reserved_delta: int = 0,
) -> LedgerEntry:
    """Append one ledger entry and move the locked balance by ``amount`` (and reserved by ``reserved_delta``)."""
    assert type in ENTRY_TYPES, type
    before = locked.balance
    values = {
        "company_id": locked.company_id,
        "type": type,
        "amount": amount,
        "currency": locked.currency,
        "balance_before": before,
        "balance_after": before + amount,
        "description": description[:500],
        "reference_type": reference_type,
        "reference_id": reference_id,
        "idempotency_key": idempotency_key,
        "actor": actor,
        "created_at": now,
    }
    entry_id = INSERT_ENTRY.insert(conn, values)
    move_balance(conn, locked, amount=amount, reserved_delta=reserved_delta, now=now)
    return entry_from_row({**values, "id": entry_id})


def move_balance(conn: Connection, locked: LockedBalance, *, amount: int, reserved_delta: int, now: datetime) -> None:
    """Write the locked row's new balance and reservation total (only ever called under the row lock)."""
    if amount == 0 and reserved_delta == 0:
        return
    locked.balance += amount
    locked.reserved += reserved_delta
    UPDATE_BALANCE.update(
        conn,
        {
            "b_company_id": locked.company_id,
            "b_balance": locked.balance,
            "b_reserved": locked.reserved,
            "b_updated_at": now,
        },
    )


def entry_by_key(conn: Connection, idempotency_key: str) -> LedgerEntry | None:
    row = conn.execute(select(ledger).where(ledger.c.idempotency_key == idempotency_key)).mappings().first()
    return None if row is None else entry_from_row(row)


def entry_from_row(row: Any) -> LedgerEntry:
    currency = row["currency"]
    return LedgerEntry(
        id=row["id"],
        company_id=row["company_id"],
        type=row["type"],
        amount=Money(row["amount"], currency),
        balance_before=Money(row["balance_before"], currency),
        balance_after=Money(row["balance_after"], currency),
        description=row["description"],
        reference_type=row["reference_type"],
        reference_id=row["reference_id"],
        idempotency_key=row["idempotency_key"],
        actor=row["actor"],
        created_at=row["created_at"],
    )
