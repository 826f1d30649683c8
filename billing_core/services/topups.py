"""Top-ups: a pending row first, then credited exactly once when the payment succeeds, with its bonus.

Whoever reports success first (the synchronous API answer, a webhook, the reconciler, an operator
recording a bank transfer) calls :meth:`TopupService.settle`; the others get the same result back.
The credit's ledger keys (``topup:<id>`` and ``topup:<id>:bonus``) make a second credit impossible.
``settle_in``, ``fail_in``, ``cancel_in``, ``mark_processing_in``, ``find_in`` and ``get_in`` do the same
inside a caller's transaction (webhooks, auto top-up); every other public method is one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from billing_core.db.database import inserted_id
from billing_core.db.ledger import LockedBalance, lock_balance, post_entry
from billing_core.db.tables import bonus_rules, companies, topups
from billing_core.domain.bonus import BonusRule, best_bonus
from billing_core.errors import (
    CompanyNotFound,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTopupState,
    TopupNotFound,
)
from billing_core.money import Money
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext

SETTLEABLE = ("pending", "processing", "failed")
CREDITED = ("succeeded", "partially_refunded", "refunded")
OPEN = ("pending", "processing")
SOURCES = ("checkout", "payment_intent", "auto_topup", "bank_transfer", "manual")
STRIPE_FIELDS = (
    "stripe_payment_intent_id",
    "stripe_checkout_session_id",
    "stripe_charge_id",
    "stripe_payment_method_id",
    "payment_method_type",
    "checkout_url",
)


@dataclass(frozen=True, slots=True)
class Topup:
    id: int
    company_id: int
    amount: Money
    bonus: Money
    status: str
    source: str
    reference: str | None
    initiated_by: str | None
    stripe_payment_intent_id: str | None
    stripe_checkout_session_id: str | None
    stripe_charge_id: str | None
    stripe_payment_method_id: str | None
    payment_method_type: str | None
    checkout_url: str | None
    refunded: Money
    failure_reason: str | None
    failure_code: str | None
    idempotency_key: str | None
    created_at: datetime
    succeeded_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Topup:
        currency = row["currency"]
        return cls(
            id=row["id"],
            company_id=row["company_id"],
            amount=Money(row["amount"], currency),
            bonus=Money(row["bonus_amount"], currency),
            status=row["status"],
            source=row["source"],
            reference=row["reference"],
            initiated_by=row["initiated_by"],
            **{name: row[name] for name in STRIPE_FIELDS},
            refunded=Money(row["refunded_amount"], currency),
            failure_reason=row["failure_reason"],
            failure_code=row["failure_code"],
            idempotency_key=row["idempotency_key"],
            created_at=row["created_at"],
            succeeded_at=row["succeeded_at"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "company_id": self.company_id,
            "amount": self.amount.as_json(),
            "bonus": self.bonus.as_json(),
            "status": self.status,
            "source": self.source,
            "reference": self.reference,
            "initiated_by": self.initiated_by,
            **{name: getattr(self, name) for name in STRIPE_FIELDS},
            "refunded": self.refunded.as_json(),
            "failure_reason": self.failure_reason,
            "failure_code": self.failure_code,
            "created_at": self.created_at.isoformat(),
            "succeeded_at": self.succeeded_at.isoformat() if self.succeeded_at else None,
        }


@dataclass(frozen=True, slots=True)
class SettleResult:
    topup: Topup
    balance_after: Money
    credited_now: bool  # False when an earlier delivery already credited it

    def as_json(self) -> dict[str, Any]:
        return {
            **self.topup.as_json(),
            "balance_after": self.balance_after.as_json(),
            "credited_now": self.credited_now,
        }


def load_bonus_rules(conn: Connection, company_id: int, currency: str) -> list[BonusRule]:
    rows = conn.execute(
        select(bonus_rules).where(
            bonus_rules.c.currency == currency,
            bonus_rules.c.active.is_(True),
            or_(bonus_rules.c.company_id.is_(None), bonus_rules.c.company_id == company_id),
        )
    ).mappings()
    return [
        BonusRule(
            id=r["id"],
            name=r["name"],
            min_topup_cents=r["min_topup_amount"],
            bonus_percent=r["bonus_percent"],
            bonus_fixed_cents=r["bonus_fixed_amount"],
            max_topup_cents=r["max_topup_amount"],
            max_bonus_cents=r["max_bonus_amount"],
            company_id=r["company_id"],
            valid_from=r["valid_from"],
            valid_until=r["valid_until"],
            active=r["active"],
        )
        for r in rows
    ]


class TopupService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        # called in the settling transaction right after a credit (invoicing registers here)
        self.after_credit: list[Callable[[Connection, int], None]] = []

    def create_pending(
        self,
        *,
        company_id: int,
        amount: Money,
        source: str,
        initiated_by: str | None,
        idempotency_key: str,
        reference: str | None = None,
    ) -> Topup:
        """Record the intent to pay before Stripe hears of it; the same key returns the same row."""
        company_id = validation.company_id(company_id)
        validation.positive(amount, "top-up amount")
        key = validation.identifier(idempotency_key, "idempotency key", max_length=191)
        if source not in SOURCES:
            raise InvalidInput(f"unknown top-up source {source!r}; one of {', '.join(SOURCES)}")

        def work(conn: Connection) -> Topup:
            existing = self._by_key(conn, key)
            if existing is not None:
                if existing.company_id != company_id or existing.amount != amount:
                    raise IdempotencyKeyReused(key)
                return existing
            currency = self._currency(conn, company_id)
            if amount.currency != currency:
                raise CurrencyMismatch(currency, amount.currency)
            now = self._ctx.clock()
            topup_id = inserted_id(
                conn.execute(
                    insert(topups).values(
                        company_id=company_id,
                        amount=amount.cents,
                        currency=currency,
                        status="pending",
                        source=source,
                        reference=reference,
                        initiated_by=initiated_by,
                        idempotency_key=key,
                        created_at=now,
                        updated_at=now,
                    )
                )
            )
            return self.get_in(conn, int(topup_id))

        return self._ctx.db.write(work)

    def settle(self, topup_id: int, **stripe_ids: str | None) -> SettleResult:
        """Mark a top-up succeeded and credit it (and its bonus) exactly once, whoever reports it first."""
        return self._ctx.db.write(lambda conn: self.settle_in(conn, topup_id, **stripe_ids))

    def settle_in(self, conn: Connection, topup_id: int, **stripe_ids: str | None) -> SettleResult:
        """:meth:`settle` inside a caller's transaction (auto top-up, webhooks)."""
        owner = self.get_in(conn, topup_id)
        locked = lock_balance(conn, owner.company_id)
        return self._settle_locked(conn, locked, topup_id, stripe_ids)

    def mark_processing(self, topup_id: int, **stripe_ids: str | None) -> Topup:
        """Payment started but not final (SEPA): no credit yet. A settled or failed top-up stays as it is."""
        return self._ctx.db.write(lambda conn: self.mark_processing_in(conn, topup_id, **stripe_ids))

    def mark_processing_in(self, conn: Connection, topup_id: int, **stripe_ids: str | None) -> Topup:
        topup = self.get_in(conn, topup_id, lock=True)
        values = self._stripe_values(topup, stripe_ids)
        if topup.status in OPEN:
            values["status"] = "processing"
        if values:
            conn.execute(update(topups).where(topups.c.id == topup_id).values(updated_at=self._ctx.clock(), **values))
        return self.get_in(conn, topup_id)

    def fail(self, topup_id: int, *, reason: str, code: str | None = None, **stripe_ids: str | None) -> Topup:
        """Record a failed payment (no credit). A top-up that already succeeded is never un-credited here."""
        return self._ctx.db.write(lambda conn: self.fail_in(conn, topup_id, reason=reason, code=code, **stripe_ids)[0])

    def fail_in(
        self, conn: Connection, topup_id: int, *, reason: str, code: str | None = None, **stripe_ids: str | None
    ) -> tuple[Topup, bool]:
        """:meth:`fail` inside a caller's transaction; also says whether this call made it fail."""
        topup = self.get_in(conn, topup_id, lock=True)
        values = self._stripe_values(topup, stripe_ids)
        failing = topup.status in OPEN
        if failing:
            values.update(status="failed", failure_reason=reason[:500], failure_code=code)
        if values:
            conn.execute(update(topups).where(topups.c.id == topup_id).values(updated_at=self._ctx.clock(), **values))
        return self.get_in(conn, topup_id), failing

    def cancel(self, topup_id: int, *, reason: str) -> Topup:
        """An abandoned payment (expired Checkout Session, canceled PaymentIntent)."""
        return self._ctx.db.write(lambda conn: self.cancel_in(conn, topup_id, reason=reason))

    def cancel_in(self, conn: Connection, topup_id: int, *, reason: str) -> Topup:
        topup = self.get_in(conn, topup_id, lock=True)
        if topup.status in (*OPEN, "failed"):
            conn.execute(
                update(topups)
                .where(topups.c.id == topup_id)
                .values(status="canceled", failure_reason=reason[:500], updated_at=self._ctx.clock())
            )
        return self.get_in(conn, topup_id)

    def attach_stripe_ids(self, topup_id: int, **stripe_ids: str | None) -> Topup:
        """Record Stripe's ids on the row as soon as they are known (before any money can move)."""

        def work(conn: Connection) -> Topup:
            topup = self.get_in(conn, topup_id, lock=True)
            values = self._stripe_values(topup, stripe_ids)
            if values:
                conn.execute(
                    update(topups).where(topups.c.id == topup_id).values(updated_at=self._ctx.clock(), **values)
                )
            return self.get_in(conn, topup_id)

        return self._ctx.db.write(work)

    def find(self, *, payment_intent_id: str | None = None, checkout_session_id: str | None = None) -> Topup | None:
        return self._ctx.db.read(
            lambda conn: self.find_in(
                conn, payment_intent_id=payment_intent_id, checkout_session_id=checkout_session_id
            )
        )

    def find_in(
        self,
        conn: Connection,
        *,
        payment_intent_id: str | None = None,
        checkout_session_id: str | None = None,
        charge_id: str | None = None,
        topup_id: str | int | None = None,
    ) -> Topup | None:
        """The top-up a Stripe object belongs to: by its ids, or by the ``topup_id`` we put in its metadata."""
        for column, value in (
            (topups.c.stripe_payment_intent_id, payment_intent_id),
            (topups.c.stripe_checkout_session_id, checkout_session_id),
            (topups.c.stripe_charge_id, charge_id),
        ):
            if value:
                found = self._one(conn, select(topups).where(column == value))
                if found is not None:
                    return found
        if topup_id is not None and str(topup_id).isdigit():
            return self._one(conn, select(topups).where(topups.c.id == int(topup_id)))
        return None

    def list(
        self,
        *,
        company_id: int | None = None,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Topup]:
        query = select(topups)
        if company_id is not None:
            query = query.where(topups.c.company_id == company_id)
        if status is not None:
            query = query.where(topups.c.status == status)
        if since is not None:
            query = query.where(topups.c.created_at >= since)
        query = query.order_by(topups.c.id.desc()).limit(limit)
        return self._ctx.db.read(lambda conn: [Topup.from_row(r) for r in conn.execute(query).mappings()])

    @staticmethod
    def _stripe_values(topup: Topup, stripe_ids: dict[str, str | None]) -> dict[str, Any]:
        unknown = set(stripe_ids) - set(STRIPE_FIELDS)
        if unknown:
            raise InvalidTopupState(f"unknown Stripe fields {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in stripe_ids.items():
            if not value:
                continue
            current = getattr(topup, name)
            if current and current != value and name in ("stripe_payment_intent_id", "stripe_checkout_session_id"):
                raise InvalidTopupState(f"top-up {topup.id} already belongs to {current}, not {value}")
            if current != value:
                values[name] = value
        return values

    def record_payment(
        self,
        *,
        company_id: int,
        amount: Money,
        reference: str,
        actor: str,
        source: str = "bank_transfer",
        idempotency_key: str | None = None,
    ) -> SettleResult:
        """A payment received outside Stripe (bank transfer): a succeeded top-up, credited in one step."""
        company_id = validation.company_id(company_id)
        validation.positive(amount, "top-up amount")
        reference = validation.text(reference, "reference", max_length=200)
        actor = validation.text(actor, "actor", max_length=200)
        if idempotency_key is not None:
            key = validation.identifier(idempotency_key, "idempotency key", max_length=191)
        else:  # one payment per reference: bank references have spaces and can be long, so hash them
            key = f"{source}:{company_id}:{hashlib.sha256(reference.encode()).hexdigest()}"

        def work(conn: Connection) -> SettleResult:
            locked = lock_balance(conn, company_id)
            existing = self._by_key(conn, key)
            if existing is not None:
                if existing.company_id != company_id or existing.amount != amount:
                    raise IdempotencyKeyReused(key)
                return self._settle_locked(conn, locked, existing.id, {})
            if amount.currency != locked.currency:
                raise CurrencyMismatch(locked.currency, amount.currency)
            now = self._ctx.clock()
            topup_id = inserted_id(
                conn.execute(
                    insert(topups).values(
                        company_id=company_id,
                        amount=amount.cents,
                        currency=locked.currency,
                        status="pending",
                        source=source,
                        reference=reference,
                        initiated_by=actor,
                        idempotency_key=key,
                        created_at=now,
                        updated_at=now,
                    )
                )
            )
            audit.record(
                conn,
                actor=actor,
                action="topup.recorded",
                entity_type="balance_topup",
                entity_id=topup_id,
                company_id=company_id,
                now=now,
                details={"amount": amount.cents, "currency": amount.currency, "reference": reference, "source": source},
            )
            return self._settle_locked(conn, locked, topup_id, {})

        return self._ctx.db.write(work)

    def get(self, topup_id: int) -> Topup:
        return self._ctx.db.read(lambda conn: self.get_in(conn, topup_id))

    # -- internals --------------------------------------------------------------------------------

    def _settle_locked(
        self, conn: Connection, locked: LockedBalance, topup_id: int, stripe_ids: dict[str, str | None]
    ) -> SettleResult:
        topup = self.get_in(conn, topup_id, lock=True)
        if topup.status not in SETTLEABLE:
            if topup.status in CREDITED:
                return SettleResult(topup, Money(locked.balance, locked.currency), credited_now=False)
            raise InvalidTopupState(f"top-up {topup_id} is {topup.status} and cannot succeed")
        now = self._ctx.clock()
        reference = str(topup_id)
        post_entry(
            conn,
            locked,
            type="topup",
            amount=topup.amount.cents,
            description=f"Top-up {topup_id} ({topup.source})",
            idempotency_key=f"topup:{topup_id}",
            reference_type="balance_topup",
            reference_id=reference,
            actor=topup.initiated_by,
            now=now,
        )
        bonus = best_bonus(
            load_bonus_rules(conn, topup.company_id, locked.currency), topup.amount, topup.company_id, now
        )
        bonus_cents = bonus.amount.cents if bonus else 0
        if bonus is not None:
            post_entry(
                conn,
                locked,
                type="bonus",
                amount=bonus_cents,
                description=f"Bonus '{bonus.rule.name}' on top-up {topup_id}",
                idempotency_key=f"topup:{topup_id}:bonus",
                reference_type="balance_topup",
                reference_id=reference,
                now=now,
            )
        values: dict[str, Any] = {
            **self._stripe_values(topup, stripe_ids),
            "status": "succeeded",
            "bonus_amount": bonus_cents,
            "succeeded_at": now,
            "updated_at": now,
            "failure_reason": None,
            "failure_code": None,
        }
        conn.execute(update(topups).where(topups.c.id == topup_id).values(**values))
        for hook in self.after_credit:
            hook(conn, topup_id)
        return SettleResult(self.get_in(conn, topup_id), Money(locked.balance, locked.currency), credited_now=True)

    @staticmethod
    def get_in(conn: Connection, topup_id: int, *, lock: bool = False) -> Topup:
        query = select(topups).where(topups.c.id == topup_id)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is None:
            raise TopupNotFound(topup_id)
        return Topup.from_row(row)

    @staticmethod
    def _one(conn: Connection, query: Any) -> Topup | None:
        row = conn.execute(query).mappings().first()
        return None if row is None else Topup.from_row(row)

    @staticmethod
    def _by_key(conn: Connection, key: str) -> Topup | None:
        row = conn.execute(select(topups).where(topups.c.idempotency_key == key)).mappings().first()
        return None if row is None else Topup.from_row(row)

    @staticmethod
    def _currency(conn: Connection, company_id: int) -> str:
        currency = conn.execute(select(companies.c.currency).where(companies.c.id == company_id)).scalar()
        if currency is None:
            raise CompanyNotFound(company_id)
        return str(currency)
