"""Read side: balances, ledger history with cursor pagination, low-balance companies, and the ledger check."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from billing_core.db.ledger import ENTRY_TYPES, LedgerEntry, entry_from_row
from billing_core.db.tables import balances, companies, disputes, ledger, reservations, topup_refunds
from billing_core.errors import CompanyNotFound, InvalidCursor, InvalidInput
from billing_core.money import Money
from billing_core.services import validation
from billing_core.services.context import ServiceContext

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class BalanceView:
    company_id: int
    balance: Money
    reserved: Money
    low_balance_threshold: Money

    @property
    def available(self) -> Money:
        return self.balance - self.reserved

    @property
    def is_low(self) -> bool:
        return self.balance < self.low_balance_threshold

    def as_json(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "balance": self.balance.as_json(),
            "reserved": self.reserved.as_json(),
            "available": self.available.as_json(),
            "low_balance_threshold": self.low_balance_threshold.as_json(),
            "is_low": self.is_low,
        }


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[LedgerEntry]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        return {"entries": [e.as_json() for e in self.entries], "next_cursor": self.next_cursor}


@dataclass(frozen=True, slots=True)
class LowBalanceCompany:
    company_id: int
    name: str
    balance: Money
    low_balance_threshold: Money
    auto_topup_enabled: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "name": self.name,
            "balance": self.balance.as_json(),
            "low_balance_threshold": self.low_balance_threshold.as_json(),
            "auto_topup_enabled": self.auto_topup_enabled,
        }


@dataclass(slots=True)
class CompanyLedgerCheck:
    company_id: int
    currency: str
    balance: int
    ledger_sum: int = 0
    entries: int = 0
    reserved: int = 0
    active_reservations: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "ok": self.ok,
            "balance": Money(self.balance, self.currency).as_json(),
            "ledger_sum": Money(self.ledger_sum, self.currency).as_json(),
            "entries": self.entries,
            "reserved": Money(self.reserved, self.currency).as_json(),
            "active_reservations": Money(self.active_reservations, self.currency).as_json(),
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class LedgerReport:
    companies: list[CompanyLedgerCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.companies)

    @property
    def failing(self) -> list[CompanyLedgerCheck]:
        return [c for c in self.companies if not c.ok]

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "companies_checked": len(self.companies), "failing": [c.as_json() for c in self.failing]}


def encode_cursor(company_id: int, before_id: int) -> str:
    return base64.urlsafe_b64encode(f"{company_id}:{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, company_id: int) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        owner, before_id = (int(part) for part in raw.split(":"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("the history cursor is not one this server issued") from None
    if owner != company_id:
        raise InvalidCursor("the history cursor belongs to another company")
    return before_id


class BalanceService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def get(self, company_id: int) -> BalanceView:
        company_id = validation.company_id(company_id)

        def work(conn: Connection) -> BalanceView:
            row = conn.execute(select(balances).where(balances.c.company_id == company_id)).mappings().first()
            if row is None:
                raise CompanyNotFound(company_id)
            currency = row["currency"]
            return BalanceView(
                company_id,
                Money(row["balance"], currency),
                Money(row["reserved_balance"], currency),
                Money(row["low_balance_threshold"], currency),
            )

        return self._ctx.db.read(work)

    def history(
        self, company_id: int, *, limit: int = 50, cursor: str | None = None, types: Iterable[str] | None = None
    ) -> HistoryPage:
        """Newest first; pass ``next_cursor`` back for the following page (stable under concurrent writes)."""
        company_id = validation.company_id(company_id)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        before_id = decode_cursor(cursor, company_id) if cursor else None
        wanted = sorted(set(types)) if types else None
        unknown = set(wanted or ()) - set(ENTRY_TYPES)
        if unknown:
            raise InvalidInput(f"unknown entry types {sorted(unknown)}; use {', '.join(ENTRY_TYPES)}")

        def work(conn: Connection) -> HistoryPage:
            if conn.execute(select(companies.c.id).where(companies.c.id == company_id)).first() is None:
                raise CompanyNotFound(company_id)
            query = select(ledger).where(ledger.c.company_id == company_id)
            if before_id is not None:
                query = query.where(ledger.c.id < before_id)
            if wanted:
                query = query.where(ledger.c.type.in_(wanted))
            rows = conn.execute(query.order_by(ledger.c.id.desc()).limit(limit + 1)).mappings().all()
            entries = [entry_from_row(r) for r in rows[:limit]]
            more = len(rows) > limit
            return HistoryPage(entries, encode_cursor(company_id, entries[-1].id) if more else None)

        return self._ctx.db.read(work)

    def low_balance_companies(self) -> list[LowBalanceCompany]:
        def work(conn: Connection) -> list[LowBalanceCompany]:
            rows = conn.execute(
                select(
                    companies.c.id,
                    companies.c.name,
                    balances.c.balance,
                    balances.c.currency,
                    balances.c.low_balance_threshold,
                    balances.c.auto_topup_enabled,
                )
                .join(balances, balances.c.company_id == companies.c.id)
                .where(balances.c.balance < balances.c.low_balance_threshold)
                .order_by(balances.c.balance, companies.c.id)
            )
            return [
                LowBalanceCompany(
                    r.id,
                    r.name,
                    Money(r.balance, r.currency),
                    Money(r.low_balance_threshold, r.currency),
                    r.auto_topup_enabled,
                )
                for r in rows
            ]

        return self._ctx.db.read(work)

    def check_ledger(self) -> LedgerReport:
        """Prove balance == sum(ledger), an unbroken before/after chain, and reserved == active holds."""
        return self._ctx.db.read(_check_ledger)


def _check_ledger(conn: Connection) -> LedgerReport:
    checks: dict[int, CompanyLedgerCheck] = {}
    for row in conn.execute(
        select(balances.c.company_id, balances.c.currency, balances.c.balance, balances.c.reserved_balance)
    ):
        checks[row.company_id] = CompanyLedgerCheck(
            row.company_id, row.currency, row.balance, reserved=row.reserved_balance
        )
    held = conn.execute(
        select(reservations.c.company_id, func.sum(reservations.c.amount))
        .where(reservations.c.status == "active")
        .group_by(reservations.c.company_id)
    )
    refunds_held = conn.execute(
        select(topup_refunds.c.company_id, func.sum(topup_refunds.c.amount + topup_refunds.c.bonus_reversed))
        .where(topup_refunds.c.status == "pending")
        .group_by(topup_refunds.c.company_id)
    )
    disputes_held = conn.execute(
        select(disputes.c.company_id, func.sum(disputes.c.amount))
        .where(disputes.c.status == "open")
        .group_by(disputes.c.company_id)
    )
    for company_id, total in (*held, *refunds_held, *disputes_held):
        if company_id in checks:
            checks[company_id].active_reservations += int(total)
    running: dict[int, int] = {}
    entries = conn.execution_options(stream_results=True, yield_per=5000).execute(
        select(
            ledger.c.id,
            ledger.c.company_id,
            ledger.c.amount,
            ledger.c.balance_before,
            ledger.c.balance_after,
            ledger.c.currency,
        ).order_by(ledger.c.company_id, ledger.c.id)
    )
    for e in entries:
        check = checks.get(e.company_id)
        if check is None:
            continue
        previous = running.get(e.company_id, 0)
        if e.balance_before != previous and len(check.problems) < 10:
            check.problems.append(
                f"entry {e.id}: balance_before {e.balance_before} but previous balance_after {previous}"
            )
        if e.balance_after != e.balance_before + e.amount and len(check.problems) < 10:
            check.problems.append(f"entry {e.id}: {e.balance_before} + {e.amount} != balance_after {e.balance_after}")
        if e.currency != check.currency and len(check.problems) < 10:
            check.problems.append(f"entry {e.id}: currency {e.currency} in a {check.currency} ledger")
        running[e.company_id] = e.balance_after
        check.ledger_sum += e.amount
        check.entries += 1
    for check in checks.values():
        if check.ledger_sum != check.balance:
            check.problems.append(f"balance {check.balance} != ledger sum {check.ledger_sum}")
        if running.get(check.company_id, 0) != check.balance:
            check.problems.append(f"last balance_after {running.get(check.company_id, 0)} != balance {check.balance}")
        if check.reserved < 0:
            check.problems.append(f"reserved {check.reserved} is negative")
        if check.reserved != check.active_reservations:
            check.problems.append(
                f"reserved {check.reserved} != open holds {check.active_reservations} "
                "(call reservations, pending refunds, open disputes)"
            )
    return LedgerReport(sorted(checks.values(), key=lambda c: c.company_id))
