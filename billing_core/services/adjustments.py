"""Manual balance adjustments (the reference's admin credit/debit), always with a reason and an actor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from billing_core.db.ledger import LedgerEntry, entry_by_key, lock_balance, post_entry
from billing_core.errors import CurrencyMismatch, IdempotencyKeyReused, InsufficientBalance, InvalidAmount
from billing_core.money import Money
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class AdjustmentResult:
    entry: LedgerEntry
    replayed: bool

    def as_json(self) -> dict[str, Any]:
        return {**self.entry.as_json(), "replayed": self.replayed}


class AdjustmentService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def adjust(
        self,
        *,
        company_id: int,
        amount: Money,
        reason: str,
        actor: str,
        idempotency_key: str | None = None,
    ) -> AdjustmentResult:
        """Credit (positive) or debit (negative) a balance; a debit may not exceed the available balance."""
        company_id = validation.company_id(company_id)
        if not isinstance(amount, Money) or amount.cents == 0:
            raise InvalidAmount("an adjustment needs a non-zero amount")
        validation.operation_amount(amount, self._ctx.settings.max_operation_amount, "adjustment", signed=True)
        reason = validation.text(reason, "reason")
        actor = validation.text(actor, "actor", max_length=200)
        key = "adjustment:" + validation.identifier(
            idempotency_key or uuid.uuid4().hex, "idempotency key", max_length=170
        )

        def work(conn: Connection) -> AdjustmentResult:
            locked = lock_balance(conn, company_id)
            previous = entry_by_key(conn, key)
            if previous is not None:
                if previous.company_id != company_id or previous.amount != amount:
                    raise IdempotencyKeyReused(key.removeprefix("adjustment:"))
                return AdjustmentResult(previous, replayed=True)
            if amount.currency != locked.currency:
                raise CurrencyMismatch(locked.currency, amount.currency)
            if amount.cents < 0 and locked.available + amount.cents < 0:
                raise InsufficientBalance(company_id, -amount.cents, locked.available, locked.currency)
            now = self._ctx.clock()
            entry = post_entry(
                conn,
                locked,
                type="adjustment",
                amount=amount.cents,
                description=reason,
                idempotency_key=key,
                reference_type="admin_adjustment",
                actor=actor,
                now=now,
            )
            audit.record(
                conn,
                actor=actor,
                action="balance.adjusted",
                entity_type="balance_transaction",
                entity_id=entry.id,
                company_id=company_id,
                now=now,
                details={"amount": amount.cents, "currency": amount.currency, "reason": reason},
            )
            return AdjustmentResult(entry, replayed=False)

        return self._ctx.db.write(work)
