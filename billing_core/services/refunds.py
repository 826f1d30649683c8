"""Refunds of call charges back to the prepaid balance, fully or in parts, never beyond the charge."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from billing_core.db.ledger import LedgerEntry, entry_by_key, lock_balance, post_entry
from billing_core.db.tables import call_charges
from billing_core.errors import CallChargeNotFound, CurrencyMismatch, IdempotencyKeyReused, RefundExceedsCharge
from billing_core.money import Money
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class CallRefundResult:
    call_id: str
    company_id: int
    amount: Money
    refunded_total: Money
    charged: Money
    refund_status: str  # partial | full
    balance_after: Money
    ledger_entry_id: int
    replayed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "company_id": self.company_id,
            "amount": self.amount.as_json(),
            "refunded_total": self.refunded_total.as_json(),
            "charged": self.charged.as_json(),
            "refund_status": self.refund_status,
            "balance_after": self.balance_after.as_json(),
            "ledger_entry_id": self.ledger_entry_id,
            "replayed": self.replayed,
        }


def refund_status(charged: int, refunded: int) -> str:
    if refunded <= 0:
        return "none"
    return "full" if refunded >= charged else "partial"


class RefundService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def refundable(self, call_id: str) -> tuple[int, Money, Money]:
        """(company id, amount charged, amount refunded so far) of a call's charge, for previews."""
        call_id = validation.identifier(call_id, "call id")
        query = select(
            call_charges.c.company_id, call_charges.c.amount_charged, call_charges.c.refunded_amount,
            call_charges.c.currency,
        ).where(call_charges.c.call_id == call_id)
        row = self._ctx.db.read(lambda conn: conn.execute(query).first())
        if row is None:
            raise CallChargeNotFound(call_id)
        return row.company_id, Money(row.amount_charged, row.currency), Money(row.refunded_amount, row.currency)

    def refund_call(
        self,
        *,
        call_id: str,
        amount: Money | None,
        reason: str,
        actor: str,
        idempotency_key: str | None = None,
    ) -> CallRefundResult:
        """Credit (part of) a call charge back. ``amount=None`` refunds whatever is still refundable."""
        call_id = validation.identifier(call_id, "call id")
        reason = validation.text(reason, "reason")
        actor = validation.text(actor, "actor", max_length=200)
        if amount is not None:
            validation.operation_amount(amount, self._ctx.settings.max_operation_amount, "refund amount")
        key = f"refund:{validation.identifier(idempotency_key or uuid.uuid4().hex, 'idempotency key', max_length=180)}"
        return self._ctx.db.write(lambda conn: self._refund(conn, call_id, amount, reason, actor, key))

    def _refund(
        self, conn: Connection, call_id: str, amount: Money | None, reason: str, actor: str, key: str
    ) -> CallRefundResult:
        owner = conn.execute(select(call_charges.c.company_id).where(call_charges.c.call_id == call_id)).first()
        if owner is None:
            raise CallChargeNotFound(call_id)
        locked = lock_balance(conn, owner.company_id)
        charge = (
            conn.execute(select(call_charges).where(call_charges.c.call_id == call_id).with_for_update())
            .mappings()
            .one()
        )
        charged = Money(charge["amount_charged"], charge["currency"])
        previous = entry_by_key(conn, key)
        if previous is not None:
            return self._replay(previous, call_id, amount, charge, charged)
        if amount is not None and amount.currency != charged.currency:
            raise CurrencyMismatch(charged.currency, amount.currency)
        refundable = charge["amount_charged"] - charge["refunded_amount"]
        cents = refundable if amount is None else amount.cents
        if cents <= 0 or cents > refundable:
            raise RefundExceedsCharge(cents or charge["amount_charged"], refundable, charged.currency)
        now = self._ctx.clock()
        entry = post_entry(
            conn,
            locked,
            type="refund",
            amount=cents,
            description=f"Refund for call {call_id}: {reason}",
            idempotency_key=key,
            reference_type="call_charge",
            reference_id=call_id,
            actor=actor,
            now=now,
        )
        refunded = charge["refunded_amount"] + cents
        status = refund_status(charge["amount_charged"], refunded)
        conn.execute(
            update(call_charges)
            .where(call_charges.c.id == charge["id"])
            .values(refunded_amount=refunded, refund_status=status)
        )
        audit.record(
            conn,
            actor=actor,
            action="call_charge.refunded",
            entity_type="call_charge",
            entity_id=call_id,
            company_id=locked.company_id,
            now=now,
            details={"amount": cents, "currency": charged.currency, "reason": reason, "ledger_entry": entry.id},
        )
        return CallRefundResult(
            call_id=call_id,
            company_id=locked.company_id,
            amount=Money(cents, charged.currency),
            refunded_total=Money(refunded, charged.currency),
            charged=charged,
            refund_status=status,
            balance_after=entry.balance_after,
            ledger_entry_id=entry.id,
            replayed=False,
        )

    @staticmethod
    def _replay(
        previous: LedgerEntry, call_id: str, amount: Money | None, charge: Any, charged: Money
    ) -> CallRefundResult:
        same_call = previous.reference_type == "call_charge" and previous.reference_id == call_id
        if not same_call or (amount is not None and amount != previous.amount):
            raise IdempotencyKeyReused(previous.idempotency_key.removeprefix("refund:"))
        return CallRefundResult(
            call_id=call_id,
            company_id=previous.company_id,
            amount=previous.amount,
            refunded_total=Money(charge["refunded_amount"], charged.currency),
            charged=charged,
            refund_status=charge["refund_status"],
            balance_after=previous.balance_after,
            ledger_entry_id=previous.id,
            replayed=True,
        )
