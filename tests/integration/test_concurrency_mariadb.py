"""Concurrency on MariaDB: many threads through the real services, exact money at the end.

Every test starts from an empty migrated schema and drives the services from a thread pool, the way
async callers do (one worker thread per service call). Expected amounts are computed here, independently
of the services, in integer minor units.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from billing_core.bootstrap import Services, build_services
from billing_core.db.ledger import lock_balance, post_entry
from billing_core.db.tables import call_charges, reservations
from billing_core.errors import RefundExceedsCharge
from billing_core.money import Money
from tests.conftest import empty_mariadb, make_settings
from tests.integration.helpers import assert_ledger_ok, charge_entries_per_call, charged_call_ids, eur, new_company

pytestmark = [pytest.mark.mariadb_only, pytest.mark.slow]

STARTED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
THREADS = 32


@pytest.fixture
def mariadb_services(mariadb_template_url: str) -> Iterator[Services]:
    empty_mariadb(mariadb_template_url)
    built = build_services(make_settings(mariadb_template_url))
    try:
        yield built
    finally:
        built.close()


def expected_charge(seconds: int, rate: str) -> int:
    """billed seconds x rate / 60, half-up to the cent (increment 1 s), computed without the services."""
    exact = Decimal(seconds) * Decimal(rate) * 100 / 60
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass
class Outcome:
    kind: str
    key: Any
    result: Any = None
    error: BaseException | None = None


def run_all(ops: list[tuple[str, Any, Callable[[], Any]]], *, threads: int = THREADS) -> list[Outcome]:
    """Run every operation on a pool; each outcome keeps its result or the exception it raised."""

    def one(op: tuple[str, Any, Callable[[], Any]]) -> Outcome:
        kind, key, call = op
        try:
            return Outcome(kind, key, result=call())
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            return Outcome(kind, key, error=error)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, ops))


def simultaneously(count: int, call: Callable[[int], Any]) -> list[Outcome]:
    """Start ``count`` calls at the same instant (a barrier), one thread each."""
    barrier = threading.Barrier(count)

    def one(i: int) -> Outcome:
        barrier.wait(timeout=30)
        try:
            return Outcome("call", i, result=call(i))
        except Exception as error:  # noqa: BLE001
            return Outcome("call", i, error=error)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))




def test_hundreds_of_concurrent_charges_topups_and_refunds_end_with_exact_balances(mariadb_services):
    services = mariadb_services
    rng = random.Random(20261102)
    rates = ["0.42", "0.60", "0.35", "1.00"]
    companies = [new_company(services, name=f"Praxis {i}", rate=rate, funded="200.00") for i, rate in enumerate(rates)]
    expected = {c.id: 20000 for c in companies}
    rate_of = {c.id: rate for c, rate in zip(companies, rates, strict=True)}

    # Charges posted before the storm, so refunds of them can race everything else deterministically.
    refundable: list[tuple[int, str, int]] = []
    for c in companies:
        for n in range(10):
            call_id = f"pre-{c.id}-{n}"
            services.charging.charge_call(call_id=call_id, company_id=c.id, duration_seconds=600, started_at=STARTED)
            amount = expected_charge(600, rate_of[c.id])
            expected[c.id] -= amount
            refundable.append((c.id, call_id, amount))

    # Groups of operations that arrive together (a webhook delivered twice, a refund retried with its key):
    # the groups are shuffled, their members stay neighbours in the queue so two threads take them at once.
    groups: list[list[tuple[str, Any, Callable[[], Any]]]] = []

    def charge_op(company_id: int, call_id: str, seconds: int) -> Callable[[], Any]:
        return lambda: services.charging.charge_call(
            call_id=call_id, company_id=company_id, duration_seconds=seconds, started_at=STARTED
        )

    charged: dict[str, int] = {}
    for n in range(400):
        company_id = companies[n % 4].id
        call_id, seconds = f"call-{n}", rng.randrange(1, 900)
        charged[call_id] = company_id
        expected[company_id] -= expected_charge(seconds, rate_of[company_id])
        copies = 2 if n % 10 == 0 else 1  # 40 call ids delivered twice at the same time
        groups.append([("charge", call_id, charge_op(company_id, call_id, seconds))] * copies)

    for n in range(100):
        company_id = companies[n % 4].id
        cents = rng.randrange(100, 5001)
        expected[company_id] += cents
        pay = partial(services.topups.record_payment, company_id=company_id, amount=Money(cents, "EUR"),
                      reference=f"transfer-{n}", actor="test")
        groups.append([("topup", n, pay)] * (2 if n % 10 == 0 else 1))  # 10 transfers reported twice

    for company_id, call_id, amount in refundable:
        n = int(call_id.rsplit("-", 1)[1])
        if n < 5:  # three partial refunds that together stay below the charge
            parts = [amount // 5, amount // 4, amount // 3]
            expected[company_id] += sum(parts)
            for i, part in enumerate(parts):
                groups.append([("refund", call_id, lambda call_id=call_id, part=part, i=i: services.refunds.refund_call(
                    call_id=call_id, amount=Money(part, "EUR"), reason="goodwill", actor="agent",
                    idempotency_key=f"{call_id}-part-{i}"))])
        else:  # one full refund, requested twice with the same idempotency key
            expected[company_id] += amount
            full = partial(services.refunds.refund_call, call_id=call_id, amount=None, reason="dropped call",
                           actor="agent", idempotency_key=f"{call_id}-full")
            groups.append([("refund", call_id, full)] * 2)

    for n in range(20):
        company_id = companies[n % 4].id
        expected[company_id] += 150
        groups.append([("adjustment", n, lambda company_id=company_id: services.adjustments.adjust(
            company_id=company_id, amount=eur("1.50"), reason="courtesy credit", actor="ops"))])

    rng.shuffle(groups)
    ops = [op for group in groups for op in group]
    assert len(ops) >= 600
    outcomes = run_all(ops)

    assert [(o.kind, o.key, repr(o.error)) for o in outcomes if o.error is not None] == []
    for c in companies:
        view = services.balances.get(c.id)
        assert (c.id, view.balance.cents, view.reserved.cents) == (c.id, expected[c.id], 0)
    assert_ledger_ok(services)

    # One charge per call id, and of each pair delivered together exactly one posted it.
    all_calls = set(charged) | {call_id for _, call_id, _ in refundable}
    assert sorted(charged_call_ids(services)) == sorted(all_calls)
    per_call = charge_entries_per_call(services)
    assert {call_id: per_call[call_id] for call_id in all_calls if per_call[call_id] != 1} == {}
    assert sum(per_call.values()) == len(all_calls)
    by_call: dict[str, list[Any]] = defaultdict(list)
    for o in outcomes:
        if o.kind == "charge":
            by_call[o.key].append(o.result)
    for results in by_call.values():
        if len(results) == 2:
            assert sorted(r.replayed for r in results) == [False, True]
            assert results[0].charge_id == results[1].charge_id and results[0].amount == results[1].amount

    topups_by_ref: dict[int, list[Any]] = defaultdict(list)
    for o in outcomes:
        if o.kind == "topup":
            topups_by_ref[o.key].append(o.result)
    assert all(sum(r.credited_now for r in results) == 1 for results in topups_by_ref.values())
    full_refunds: dict[str, list[Any]] = defaultdict(list)
    for o in outcomes:
        if o.kind == "refund" and o.result.refund_status == "full":
            full_refunds[o.key].append(o.result)
    assert len(full_refunds) == 20
    assert all(sorted(r.replayed for r in results) == [False, True] for results in full_refunds.values())


def test_fifty_concurrent_partial_refunds_never_exceed_the_charge(mariadb_services):
    services = mariadb_services
    company = new_company(services, rate="1.00", funded="5.00")
    charge = services.charging.charge_call(call_id="call-1", company_id=company.id, duration_seconds=600,
                                           started_at=STARTED)
    assert charge.amount == eur("10.00")

    outcomes = simultaneously(50, lambda i: services.refunds.refund_call(
        call_id="call-1", amount=eur("0.30"), reason="quality", actor=f"agent-{i}"))

    succeeded = [o.result for o in outcomes if o.error is None]
    rejected = [o.error for o in outcomes if o.error is not None]
    assert len(succeeded) == 33 and len(rejected) == 17
    assert all(isinstance(e, RefundExceedsCharge) for e in rejected), rejected
    assert {(e.requested, e.refundable) for e in rejected} == {(30, 10)}  # type: ignore[union-attr]
    # Each success saw the one before it: the running totals are 0.30, 0.60, ... 9.90, each exactly once.
    assert sorted(r.refunded_total.cents for r in succeeded) == [30 * k for k in range(1, 34)]
    assert sorted(r.balance_after.cents for r in succeeded) == [-500 + 30 * k for k in range(1, 34)]
    row = services.db.read(lambda conn: conn.execute(
        select(call_charges.c.refunded_amount, call_charges.c.refund_status).where(call_charges.c.call_id == "call-1")
    ).one())
    assert tuple(row) == (990, "partial")
    assert services.balances.get(company.id).balance.cents == 500 - 1000 + 990
    assert_ledger_ok(services)


def test_fifty_concurrent_full_refunds_of_one_charge_credit_it_once(mariadb_services):
    services = mariadb_services
    company = new_company(services, rate="1.00", funded="5.00")
    services.charging.charge_call(call_id="call-1", company_id=company.id, duration_seconds=600, started_at=STARTED)

    outcomes = simultaneously(50, lambda i: services.refunds.refund_call(
        call_id="call-1", amount=None, reason="dropped", actor=f"agent-{i}"))

    succeeded = [o.result for o in outcomes if o.error is None]
    rejected = [o.error for o in outcomes if o.error is not None]
    assert [(r.amount.cents, r.refunded_total.cents, r.refund_status) for r in succeeded] == [(1000, 1000, "full")]
    assert len(rejected) == 49 and all(isinstance(e, RefundExceedsCharge) for e in rejected), rejected
    assert {e.refundable for e in rejected} == {0}  # type: ignore[union-attr]
    assert services.balances.get(company.id).balance.cents == 500
    assert_ledger_ok(services)


def test_fifty_concurrent_refunds_with_one_idempotency_key_post_once(mariadb_services):
    services = mariadb_services
    company = new_company(services, rate="1.00", funded="5.00")
    services.charging.charge_call(call_id="call-1", company_id=company.id, duration_seconds=600, started_at=STARTED)

    outcomes = simultaneously(50, lambda i: services.refunds.refund_call(
        call_id="call-1", amount=eur("2.50"), reason="retry storm", actor="agent", idempotency_key="ticket-77"))

    assert [o.error for o in outcomes if o.error is not None] == []
    results = [o.result for o in outcomes]
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    assert {(r.ledger_entry_id, r.amount.cents, r.balance_after.cents) for r in results} == {
        (results[0].ledger_entry_id, 250, -250)
    }
    assert services.balances.get(company.id).balance.cents == 500 - 1000 + 250
    assert_ledger_ok(services)


def test_racing_call_started_and_call_ended_leave_nothing_reserved_and_one_charge_each(mariadb_services):
    services = mariadb_services
    rng = random.Random(7)
    companies = [new_company(services, name=f"Praxis {i}", funded="1000.00") for i in range(2)]
    expected = {c.id: 100000 for c in companies}
    ops: list[tuple[str, Any, Callable[[], Any]]] = []
    for n in range(300):
        company_id = companies[n % 2].id
        call_id, seconds = f"call-{n}", rng.randrange(1, 600)
        expected[company_id] -= expected_charge(seconds, "0.42")
        pair = [
            ("reserve", call_id, lambda call_id=call_id, company_id=company_id: services.charging.reserve(
                call_id=call_id, company_id=company_id, started_at=STARTED)),
            ("charge", call_id, lambda call_id=call_id, company_id=company_id, seconds=seconds:
                services.charging.charge_call(call_id=call_id, company_id=company_id, duration_seconds=seconds,
                                              started_at=STARTED)),
        ]
        rng.shuffle(pair)
        ops += pair  # neighbours in the queue, so the two events of one call really race

    outcomes = run_all(ops)

    assert [(o.kind, o.key, repr(o.error)) for o in outcomes if o.error is not None] == []
    reserved = {o.key: o.result for o in outcomes if o.kind == "reserve"}
    charged = {o.key: o.result for o in outcomes if o.kind == "charge"}
    for call_id, hold in reserved.items():
        # Either the hold came first (and the charge released exactly it) or the charge did (nothing held).
        if hold.status == "active":
            assert (call_id, charged[call_id].released_reservation) == (call_id, eur("2.10"))
        else:
            assert (call_id, hold.status, charged[call_id].released_reservation) == (
                call_id, "already_charged", eur("0.00"))
    for c in companies:
        view = services.balances.get(c.id)
        assert (view.balance.cents, view.reserved.cents) == (expected[c.id], 0)
    active = services.db.read(lambda conn: conn.execute(
        select(func.count()).select_from(reservations).where(reservations.c.status == "active")).scalar_one())
    assert active == 0
    assert set(charge_entries_per_call(services).items()) == {(f"call-{n}", 1) for n in range(300)}
    assert_ledger_ok(services)


def statements_waiting_for_a_row_lock(services: Services) -> int:
    """Locking SELECTs in flight on other connections (MariaDB waits for a const row in the optimizer)."""
    with services.db.engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = DATABASE() AND COMMAND = 'Query' AND INFO LIKE 'SELECT%%FOR UPDATE'").scalar_one())


def test_call_started_and_call_ended_queued_on_a_locked_balance_leave_nothing_reserved(mariadb_services):
    services = mariadb_services
    company = new_company(services, funded="100.00")
    pool = ThreadPoolExecutor(max_workers=2)

    def hold_the_balance_row_while_both_events_queue(conn: Connection) -> None:
        lock_balance(conn, company.id)
        futures.append(pool.submit(services.charging.charge_call, call_id="call-1", company_id=company.id,
                                   duration_seconds=90, started_at=STARTED))
        futures.append(pool.submit(services.charging.reserve, call_id="call-1", company_id=company.id,
                                   started_at=STARTED))
        for _ in range(500):
            if statements_waiting_for_a_row_lock(services) == 2:
                return
            time.sleep(0.01)
        raise AssertionError("the two events never queued on the balance row lock")

    futures: list[Any] = []
    try:
        services.db.write(hold_the_balance_row_while_both_events_queue)
        charge, hold = (f.result(timeout=30) for f in futures)
    finally:
        pool.shutdown()

    view = services.balances.get(company.id)
    assert (hold.status, charge.released_reservation.cents) in {("active", 210), ("already_charged", 0)}
    assert (view.balance.cents, view.reserved.cents) == (10000 - 63, 0)
    assert_ledger_ok(services)


def test_deadlock_between_two_writers_locking_companies_in_opposite_orders_is_retried(mariadb_services):
    """No service locks two balance rows; this proves the runner's deadlock retry (error 1213) on its own."""
    services = mariadb_services
    a = new_company(services, name="A", funded="10.00").id
    b = new_company(services, name="B", funded="10.00").id
    both_hold_first = threading.Barrier(2)
    attempts: Counter[str] = Counter()

    def transfer(name: str, first: int, second: int) -> None:
        def work(conn: Connection) -> None:
            attempts[name] += 1
            locked_first = lock_balance(conn, first)
            if attempts[name] == 1:
                both_hold_first.wait(timeout=10)  # now each holds one row and wants the other's
            locked_second = lock_balance(conn, second)
            now = datetime.now(UTC)
            post_entry(conn, locked_first, type="adjustment", amount=-100, description=f"{name} out",
                       idempotency_key=f"adjustment:{name}:out", now=now)
            post_entry(conn, locked_second, type="adjustment", amount=100, description=f"{name} in",
                       idempotency_key=f"adjustment:{name}:in", now=now)

        services.db.write(work)

    outcomes = simultaneously(2, lambda i: transfer("ab", a, b) if i == 0 else transfer("ba", b, a))

    assert [o.error for o in outcomes] == [None, None]
    assert sorted(attempts.values()) == [1, 2]  # one victim of the deadlock, run again
    assert services.balances.get(a).balance.cents == 1000
    assert services.balances.get(b).balance.cents == 1000
    assert_ledger_ok(services)
