"""Calls: reserve balance when a call starts, charge it once when it ends, release what was held.

The hot path (:meth:`ChargingService.charge_call`) takes five statements and a commit: one locking
SELECT that also brings the rate in force, the company's switch and its auto top-up threshold; the call's
hold (read once the lock is held); the charge row; the ledger entry; the balance update (and the hold's
release when there was one). A duplicate call id is caught by the unique key rather than looked up first,
and answered from what was stored. ``reserve_in`` and
``charge_call_in`` do the same inside a caller's transaction (the webhook inbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError

from billing_core.db.direct import DirectStatement
from billing_core.db.ledger import (
    LockedBalance,
    entry_by_key,
    lock_balance,
    locking_select,
    move_balance,
    post_entry,
)
from billing_core.db.tables import balances, billing_rates, call_charges, companies, reservations
from billing_core.domain.charges import Rate, compute_charge, reservation_amount
from billing_core.errors import (
    BillingDisabled,
    CallChargedWithDifferentData,
    CallChargeNotFound,
    Conflict,
    InvalidInput,
    NotFound,
)
from billing_core.money import Money
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class ChargeResult:
    call_id: str
    company_id: int
    charge_id: int
    duration_seconds: int
    billed_seconds: int
    rate_per_minute: Decimal
    billing_increment_seconds: int
    amount: Money
    balance_after: Money
    released_reservation: Money
    replayed: bool
    auto_topup_due: bool = False

    @property
    def balance_negative(self) -> bool:
        """The call was charged although the balance did not cover it (the call happened)."""
        return self.balance_after.cents < 0

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "company_id": self.company_id,
            "charge_id": self.charge_id,
            "duration_seconds": self.duration_seconds,
            "billed_seconds": self.billed_seconds,
            "rate_per_minute": str(self.rate_per_minute),
            "billing_increment_seconds": self.billing_increment_seconds,
            "amount": self.amount.as_json(),
            "balance_after": self.balance_after.as_json(),
            "balance_negative": self.balance_negative,
            "released_reservation": self.released_reservation.as_json(),
            "replayed": self.replayed,
            "auto_topup_due": self.auto_topup_due,
        }


@dataclass(frozen=True, slots=True)
class HoldRelease:
    """What releasing a call's hold did: ``released_now`` is False when nothing was held any more."""

    call_id: str
    company_id: int
    amount: Money  # given back now (zero when the hold was released or charged before)
    status: str  # the hold's status now: released | rejected
    released_now: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "company_id": self.company_id,
            "amount": self.amount.as_json(),
            "status": self.status,
            "released_now": self.released_now,
        }


@dataclass(frozen=True, slots=True)
class ReservationResult:
    call_id: str
    company_id: int
    amount: Money
    status: str  # active | rejected (nothing available) | already_charged (the call ended first)
    replayed: bool

    @property
    def accepted(self) -> bool:
        return self.status == "active"


def _rate_in_force() -> tuple[Any, Any]:
    """Scalar subqueries for the rate and increment in force at ``:at`` for ``:company_id`` (NULL if none)."""
    latest = (
        select(billing_rates.c.rate_per_minute)
        .where(billing_rates.c.company_id == bindparam("company_id"), billing_rates.c.effective_from <= bindparam("at"))
        .order_by(billing_rates.c.effective_from.desc())
        .limit(1)
    )
    return (
        latest.scalar_subquery().label("rate"),
        latest.with_only_columns(billing_rates.c.billing_increment_seconds).scalar_subquery().label("increment"),
    )


_ENABLED = (
    select(companies.c.prepaid_billing_enabled)
    .where(companies.c.id == bindparam("company_id"))
    .scalar_subquery()
    .label("enabled")
)
_ACTIVE_HOLD = (reservations.c.call_id == bindparam("call_id")) & (reservations.c.status == "active")
# The auto top-up threshold when the company has auto top-up on, else NULL: one column instead of two.
_AUTO_TOPUP_BELOW = case((balances.c.auto_topup_enabled, balances.c.auto_topup_threshold)).label("auto_topup_below")

# Prebuilt statements of the hot paths (see db.ledger.locking_select). The locking SELECT brings what
# changes rarely (rate, switches); what concurrent events of the same call change (its hold, its charge)
# is read by a second statement, after the lock is granted: on MariaDB a statement's subqueries see the
# data as of the statement's start, which may be before a competing transaction committed and let go.
LOCK_FOR_CHARGE = locking_select(*_rate_in_force(), _ENABLED, _AUTO_TOPUP_BELOW)
LOCK_FOR_RESERVE = locking_select(*_rate_in_force(), _ENABLED)
HELD_FOR_CALL = DirectStatement(select(reservations.c.amount, reservations.c.company_id).where(_ACTIVE_HOLD))
CALL_STATE = DirectStatement(
    select(
        select(call_charges.c.id)
        .where(call_charges.c.call_id == bindparam("call_id"))
        .scalar_subquery()
        .label("charged"),
        select(reservations.c.amount)
        .where(reservations.c.call_id == bindparam("call_id"))
        .scalar_subquery()
        .label("held_amount"),
        select(reservations.c.status)
        .where(reservations.c.call_id == bindparam("call_id"))
        .scalar_subquery()
        .label("held_status"),
        select(reservations.c.company_id)
        .where(reservations.c.call_id == bindparam("call_id"))
        .scalar_subquery()
        .label("held_company"),
    )
)
INSERT_CHARGE = DirectStatement(insert(call_charges))
INSERT_RESERVATION = DirectStatement(
    insert(reservations), column_keys=("call_id", "company_id", "amount", "currency", "status", "created_at")
)
RELEASE_HOLD = DirectStatement(
    update(reservations)
    .where(reservations.c.call_id == bindparam("r_call_id"), reservations.c.status == "active")
    .values(status="released", released_at=bindparam("r_released_at"))
)


class ChargingService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def _rate(self, locked: LockedBalance) -> Rate:
        settings = self._ctx.settings
        per_minute = locked.extra["rate"]
        increment = locked.extra["increment"]
        return Rate(
            per_minute if per_minute is not None else settings.default_billing_rate,
            locked.currency,
            increment if increment is not None else settings.default_billing_increment_seconds,
        )

    def _check_enabled(self, locked: LockedBalance) -> None:
        if not (self._ctx.settings.prepaid_billing_enabled and locked.extra["enabled"]):
            raise BillingDisabled(locked.company_id)

    # -- call start -------------------------------------------------------------------------------

    def reserve(self, *, call_id: str, company_id: int, started_at: datetime | None = None) -> ReservationResult:
        """Hold ``reservation_minutes`` at the company's rate, capped by what is available."""
        return self._ctx.db.write(
            lambda conn: self.reserve_in(conn, call_id=call_id, company_id=company_id, started_at=started_at)
        )

    def reserve_in(
        self, conn: Connection, *, call_id: str, company_id: int, started_at: datetime | None = None
    ) -> ReservationResult:
        call_id = validation.identifier(call_id, "call id")
        company_id = validation.company_id(company_id)
        at = validation.aware(started_at, "started_at") if started_at is not None else self._ctx.clock()
        return self._reserve(conn, call_id, company_id, at)

    def _reserve(self, conn: Connection, call_id: str, company_id: int, at: datetime) -> ReservationResult:
        locked = lock_balance(conn, company_id, LOCK_FOR_RESERVE, at=at)
        self._check_enabled(locked)
        state = CALL_STATE.first(conn, {"call_id": call_id})
        if state.held_status is not None:
            held = Money(state.held_amount, locked.currency)
            return ReservationResult(call_id, state.held_company, held, state.held_status, True)
        if state.charged is not None:  # call_ended arrived first: nothing left to hold
            return ReservationResult(call_id, company_id, Money.zero(locked.currency), "already_charged", False)
        available = Money(locked.available, locked.currency)
        amount = reservation_amount(self._ctx.settings.reservation_minutes, self._rate(locked), available)
        status = "active" if amount.cents > 0 else "rejected"
        now = self._ctx.clock()
        INSERT_RESERVATION.insert(
            conn,
            {
                "call_id": call_id,
                "company_id": company_id,
                "amount": amount.cents,
                "currency": locked.currency,
                "status": status,
                "created_at": now,
            },
        )
        move_balance(conn, locked, amount=0, reserved_delta=amount.cents, now=now)
        return ReservationResult(call_id, company_id, amount, status, False)

    def release(self, *, call_id: str) -> Money | None:
        """Give back a call's hold without charging (the call never connected). None when nothing was held."""
        try:
            result = self.release_hold(call_id=call_id, actor="system", reason="the call never connected")
        except NotFound:
            return None
        return result.amount if result.released_now else None

    def release_hold(self, *, call_id: str, actor: str, reason: str) -> HoldRelease:
        """Give back what a call still holds, with an audit entry; a hold released before is left alone."""
        call_id = validation.identifier(call_id, "call id")
        actor = validation.text(actor, "actor", max_length=200)
        reason = validation.text(reason, "reason")

        def work(conn: Connection) -> HoldRelease:
            row = conn.execute(select(reservations.c.company_id).where(reservations.c.call_id == call_id)).first()
            if row is None:
                raise NotFound(f"call {call_id} holds no reservation")
            locked = lock_balance(conn, row.company_id)
            return self._release_locked(conn, locked, call_id, actor=actor, reason=reason)

        return self._ctx.db.write(work)

    def expire_holds(self, *, limit: int = 100) -> list[HoldRelease]:
        """Release holds older than the longest call (``BILLING_MAX_CALL_SECONDS``): their ``call_ended``
        never came, or went to the dead letters. One transaction per hold; a late ``call_ended`` still
        charges the call in full."""
        max_seconds = self._ctx.settings.max_call_seconds
        cutoff = self._ctx.clock() - timedelta(seconds=max_seconds)
        stale = self._ctx.db.read(
            lambda conn: list(
                conn.execute(
                    select(reservations.c.call_id)
                    .where(reservations.c.status == "active", reservations.c.created_at < cutoff)
                    .order_by(reservations.c.created_at, reservations.c.id)
                    .limit(limit)
                ).scalars()
            )
        )
        reason = f"no call_ended within the longest call ({max_seconds} s)"
        released = [self.release_hold(call_id=call_id, actor="worker", reason=reason) for call_id in stale]
        return [r for r in released if r.released_now]

    def _release_locked(
        self, conn: Connection, locked: LockedBalance, call_id: str, *, actor: str, reason: str
    ) -> HoldRelease:
        row = conn.execute(
            select(reservations.c.amount, reservations.c.status, reservations.c.created_at).where(
                reservations.c.call_id == call_id
            )
        ).one()
        if row.status != "active":
            return HoldRelease(call_id, locked.company_id, Money.zero(locked.currency), row.status, False)
        now = self._ctx.clock()
        RELEASE_HOLD.update(conn, {"r_call_id": call_id, "r_released_at": now})
        move_balance(conn, locked, amount=0, reserved_delta=-row.amount, now=now)
        amount = Money(row.amount, locked.currency)
        audit.record(
            conn,
            actor=actor,
            action="call_hold.released",
            entity_type="call_reservation",
            entity_id=call_id,
            company_id=locked.company_id,
            details={"amount": amount.as_json(), "reason": reason, "held_since": row.created_at.isoformat()},
            now=now,
        )
        return HoldRelease(call_id, locked.company_id, amount, "released", True)

    # -- call end ---------------------------------------------------------------------------------

    def charge_call(
        self,
        *,
        call_id: str,
        company_id: int,
        duration_seconds: int,
        started_at: datetime,
        ended_at: datetime | None = None,
        caller_number: str | None = None,
    ) -> ChargeResult:
        """Charge a finished call once, at the rate in force when it started; posts even below zero.

        The happy path inserts straight away; a repeated call id is caught by the unique key and answered
        from what was stored (or refused when its data differ).
        """
        call_id, company_id = _valid_call(call_id, company_id, duration_seconds, started_at, ended_at)
        try:
            return self._ctx.db.write(
                lambda conn: self._charge(
                    conn, call_id, company_id, duration_seconds, started_at, ended_at, caller_number=caller_number
                )
            )
        except IntegrityError:
            previous = self._ctx.db.read(lambda conn: self._stored_charge(conn, call_id))
            if previous is None:
                raise
            return _same_call(previous, company_id, duration_seconds)

    def charge_call_in(
        self,
        conn: Connection,
        *,
        look_first: bool = True,
        call_id: str,
        company_id: int,
        duration_seconds: int,
        started_at: datetime,
        ended_at: datetime | None = None,
        caller_number: str | None = None,
    ) -> ChargeResult:
        """:meth:`charge_call` inside a caller's transaction.

        ``look_first`` answers a repeated call id from what was stored; without it a repeat fails on the
        unique key, which only callers that roll back and retry that way should choose.
        """
        call_id, company_id = _valid_call(call_id, company_id, duration_seconds, started_at, ended_at)
        return self._charge(
            conn,
            call_id,
            company_id,
            duration_seconds,
            started_at,
            ended_at,
            look_first=look_first,
            caller_number=caller_number,
        )

    def _charge(
        self,
        conn: Connection,
        call_id: str,
        company_id: int,
        duration_seconds: int,
        started_at: datetime,
        ended_at: datetime | None,
        *,
        look_first: bool = False,
        caller_number: str | None = None,
    ) -> ChargeResult:
        locked = lock_balance(conn, company_id, LOCK_FOR_CHARGE, at=started_at)
        if look_first:
            previous = self._stored_charge(conn, call_id)
            if previous is not None:
                return _same_call(previous, company_id, duration_seconds)
        self._check_enabled(locked)
        hold = HELD_FOR_CALL.first(conn, {"call_id": call_id})
        if hold is not None and hold.company_id != company_id:
            raise Conflict(f"call {call_id} holds a reservation of company {hold.company_id}, not {company_id}")
        held_cents = hold.amount if hold is not None else 0
        rate = self._rate(locked)
        charge = compute_charge(duration_seconds, rate)
        now = self._ctx.clock()
        charge_id = INSERT_CHARGE.insert(
            conn,
            {
                "call_id": call_id,
                "company_id": company_id,
                "duration_seconds": duration_seconds,
                "billed_seconds": charge.billed_seconds,
                "rate_per_minute": rate.per_minute,
                "billing_increment_seconds": rate.increment_seconds,
                "amount_charged": charge.amount.cents,
                "currency": rate.currency,
                "call_started_at": started_at,
                "call_ended_at": ended_at,
                "charged_at": now,
                "refund_status": "none",
                "refunded_amount": 0,
                "caller_number": caller_number[:32] if caller_number else None,
            },
        )
        if held_cents:
            RELEASE_HOLD.update(conn, {"r_call_id": call_id, "r_released_at": now})
        if charge.amount.cents:
            post_entry(
                conn,
                locked,
                type="charge",
                amount=-charge.amount.cents,
                description=f"Call {call_id}: {charge.billed_seconds} s at {rate.per_minute}/min",
                idempotency_key=f"charge:{call_id}",
                reference_type="call_charge",
                reference_id=call_id,
                now=now,
                reserved_delta=-held_cents,
            )
        else:
            move_balance(conn, locked, amount=0, reserved_delta=-held_cents, now=now)
        return ChargeResult(
            call_id=call_id,
            company_id=company_id,
            charge_id=int(charge_id),
            duration_seconds=duration_seconds,
            billed_seconds=charge.billed_seconds,
            rate_per_minute=rate.per_minute,
            billing_increment_seconds=rate.increment_seconds,
            amount=charge.amount,
            balance_after=Money(locked.balance, locked.currency),
            released_reservation=Money(held_cents, locked.currency),
            replayed=False,
            auto_topup_due=(
                self._ctx.settings.auto_topup_enabled
                and locked.extra["auto_topup_below"] is not None
                and locked.balance < locked.extra["auto_topup_below"]
            ),
        )

    def get_charge(self, call_id: str) -> ChargeResult:
        """A call's charge as stored (``replayed`` is True: nothing was charged by asking)."""
        call_id = validation.identifier(call_id, "call id")
        found = self._ctx.db.read(lambda conn: self._stored_charge(conn, call_id))
        if found is None:
            raise CallChargeNotFound(call_id)
        return found

    def _stored_charge(self, conn: Connection, call_id: str) -> ChargeResult | None:
        row = conn.execute(select(call_charges).where(call_charges.c.call_id == call_id)).mappings().first()
        if row is None:
            return None
        entry = entry_by_key(conn, f"charge:{call_id}")
        currency = row["currency"]
        balance_after = entry.balance_after if entry else None
        if balance_after is None:  # a zero-amount call moved no money; report today's balance
            balance_after = Money(lock_free_balance(conn, row["company_id"]), currency)
        return ChargeResult(
            call_id=call_id,
            company_id=row["company_id"],
            charge_id=row["id"],
            duration_seconds=row["duration_seconds"],
            billed_seconds=row["billed_seconds"],
            rate_per_minute=row["rate_per_minute"],
            billing_increment_seconds=row["billing_increment_seconds"],
            amount=Money(row["amount_charged"], currency),
            balance_after=balance_after,
            released_reservation=Money.zero(currency),
            replayed=True,
        )


def _valid_call(
    call_id: str, company_id: int, duration_seconds: int, started_at: datetime, ended_at: datetime | None
) -> tuple[str, int]:
    call_id = validation.identifier(call_id, "call id")
    company_id = validation.company_id(company_id)
    if isinstance(duration_seconds, bool) or not isinstance(duration_seconds, int) or duration_seconds < 0:
        raise InvalidInput(f"call duration must be a non-negative number of seconds, got {duration_seconds!r}")
    validation.aware(started_at, "started_at")
    if ended_at is not None:
        validation.aware(ended_at, "ended_at")
    return call_id, company_id


def _same_call(previous: ChargeResult, company_id: int, duration_seconds: int) -> ChargeResult:
    """A repeated charge of one call: the stored result when the data agree, an error otherwise."""
    differences = [
        name
        for name, stored, given in (
            ("company_id", previous.company_id, company_id),
            ("duration_seconds", previous.duration_seconds, duration_seconds),
        )
        if stored != given
    ]
    if differences:
        raise CallChargedWithDifferentData(previous.call_id, differences)
    return previous


def lock_free_balance(conn: Connection, company_id: int) -> int:
    return int(conn.execute(select(balances.c.balance).where(balances.c.company_id == company_id)).scalar_one())
