"""Card disputes on top-ups: the disputed amount is held back while open; lost means it leaves the balance,
together with the bonus that came with that part of the payment.

Both steps arrive as Stripe webhooks, so both join the inbox's transaction (``open_in``, ``close_in``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from billing_core.db.ledger import lock_balance, move_balance, post_entry
from billing_core.db.tables import disputes, topup_refunds
from billing_core.domain.bonus import bonus_taken_back
from billing_core.services import audit, notifications
from billing_core.services.context import ServiceContext
from billing_core.services.notifications import NotificationKind
from billing_core.services.topups import Topup


class DisputeService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def open_in(
        self, conn: Connection, *, topup: Topup, dispute_id: str, charge_id: str, amount: int, reason: str | None
    ) -> str:
        """Hold the disputed amount (``reserved``) and alert the admin; repeated deliveries hold once."""
        locked = lock_balance(conn, topup.company_id)
        if self._row(conn, dispute_id) is not None:
            return "already recorded"
        now = self._ctx.clock()
        self._insert(conn, topup, dispute_id, charge_id, amount, reason, now)
        move_balance(conn, locked, amount=0, reserved_delta=amount, now=now)
        self._tell(conn, "dispute_opened", topup, now, dispute=dispute_id, amount=amount, reason=reason)
        return "held"

    def close_in(
        self,
        conn: Connection,
        *,
        topup: Topup,
        dispute_id: str,
        charge_id: str,
        amount: int,
        status: str,
        reason: str | None,
    ) -> str:
        """Release the hold; a lost dispute also takes the amount off the balance (a ``reversal`` entry)."""
        locked = lock_balance(conn, topup.company_id)
        row = self._row(conn, dispute_id)
        now = self._ctx.clock()
        if row is not None and row.status != "open":
            return "already closed"
        if row is None:  # closed before we saw it open (events out of order): nothing was held
            self._insert(conn, topup, dispute_id, charge_id, amount, reason, now)
        held = 0 if row is None else row.amount
        move_balance(conn, locked, amount=0, reserved_delta=-held, now=now)
        lost = status == "lost"
        if lost:
            bonus_back = self._bonus_share(conn, topup, amount)
            if bonus_back:
                post_entry(
                    conn,
                    locked,
                    type="reversal",
                    amount=-bonus_back,
                    idempotency_key=f"dispute:{dispute_id}:bonus",
                    description=f"Bonus of top-up {topup.id} taken back with the lost dispute {dispute_id}",
                    reference_type="dispute",
                    reference_id=dispute_id,
                    actor="stripe",
                    now=now,
                )
            post_entry(
                conn,
                locked,
                type="reversal",
                amount=-amount,
                description=f"Dispute {dispute_id} on top-up {topup.id} lost",
                idempotency_key=f"dispute:{dispute_id}",
                reference_type="dispute",
                reference_id=dispute_id,
                actor="stripe",
                now=now,
            )
        conn.execute(
            update(disputes)
            .where(disputes.c.stripe_dispute_id == dispute_id)
            .values(status="lost" if lost else "won", closed_at=now)
        )
        self._tell(conn, "dispute_closed", topup, now, dispute=dispute_id, amount=amount, status=status)
        return "reversed" if lost else "released"

    def _insert(
        self,
        conn: Connection,
        topup: Topup,
        dispute_id: str,
        charge_id: str,
        amount: int,
        reason: str | None,
        now: datetime,
    ) -> None:
        conn.execute(
            insert(disputes).values(
                stripe_dispute_id=dispute_id,
                stripe_charge_id=charge_id,
                topup_id=topup.id,
                company_id=topup.company_id,
                amount=amount,
                currency=topup.amount.currency,
                status="open",
                reason=reason,
                created_at=now,
            )
        )

    @staticmethod
    def _tell(conn: Connection, kind: NotificationKind, topup: Topup, now: datetime, **details: Any) -> None:
        """The admin alert and the audit row of a dispute event."""
        payload = {"topup_id": topup.id, "currency": topup.amount.currency, **details}
        notifications.enqueue(conn, kind=kind, recipient="admin", company_id=topup.company_id, payload=payload, now=now)
        audit.record(
            conn,
            actor="stripe",
            action=kind.replace("_", "."),
            entity_type="dispute",
            entity_id=details["dispute"],
            company_id=topup.company_id,
            details=payload,
            now=now,
        )

    @staticmethod
    def _bonus_share(conn: Connection, topup: Topup, amount: int) -> int:
        """The bonus that came with the disputed part of the payment, less what refunds already took back."""
        taken = conn.execute(
            select(func.coalesce(func.sum(topup_refunds.c.bonus_reversed), 0)).where(
                topup_refunds.c.topup_id == topup.id, topup_refunds.c.status.in_(("pending", "succeeded"))
            )
        ).scalar_one()
        paid = topup.amount.cents
        return bonus_taken_back(
            bonus=topup.bonus.cents,
            paid=paid,
            returned=amount,
            already_taken=int(taken),
            returned_after=min(amount, paid),
        )

    @staticmethod
    def _row(conn: Connection, dispute_id: str) -> Any:
        return conn.execute(select(disputes).where(disputes.c.stripe_dispute_id == dispute_id)).first()
