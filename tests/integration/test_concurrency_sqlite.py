"""Concurrency on SQLite: two OS processes on one file, and many threads through the group committer.

The MCP server and the webhook process share one SQLite file. Here two real Python processes write it at
the same time (each with its own thread pool, so group commit and the file lock both come into play), and
every expected amount is computed in the test, in integer minor units.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import call_charges, reservations
from billing_core.errors import CallChargedWithDifferentData, RefundExceedsCharge
from billing_core.money import Money
from tests.conftest import make_settings
from tests.integration.helpers import assert_ledger_ok, charge_entries_per_call, charged_call_ids, eur, new_company
from tests.support.processes import run_together

pytestmark = pytest.mark.slow

STARTED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]

# One writer process: builds its own services on the shared file, says "ready", waits for "go" on stdin,
# runs its operations on a thread pool and prints one JSON line with what happened.
CHILD = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from billing_core.bootstrap import build_services
from billing_core.config import Settings
from billing_core.money import Money

spec = json.loads(open(sys.argv[1]).read())
services = build_services(Settings(_env_file=None, database_url=spec["url"]))
started_at = datetime.fromisoformat(spec["started_at"])


def run(op):
    kind = op["kind"]
    try:
        if kind == "charge":
            r = services.charging.charge_call(call_id=op["call_id"], company_id=op["company_id"],
                                              duration_seconds=op["seconds"], started_at=started_at)
            return {"op": op, "replayed": r.replayed, "cents": r.amount.cents}
        if kind == "topup":
            r = services.topups.record_payment(company_id=op["company_id"], amount=Money(op["cents"], "EUR"),
                                               reference=op["reference"], actor=spec["name"])
            return {"op": op, "credited_now": r.credited_now}
        if kind == "refund":
            r = services.refunds.refund_call(call_id=op["call_id"], amount=Money(op["cents"], "EUR"),
                                             reason="goodwill", actor=spec["name"], idempotency_key=op["key"])
            return {"op": op, "replayed": r.replayed}
        raise ValueError(kind)
    except Exception as error:
        return {"op": op, "error": f"{type(error).__name__}: {error}"}


print("ready", flush=True)
sys.stdin.readline()
began = time.time()
with ThreadPoolExecutor(max_workers=spec["threads"]) as pool:
    results = list(pool.map(run, spec["ops"]))
ended = time.time()
services.close()
print(json.dumps({"began": began, "ended": ended, "results": results}), flush=True)
"""


def expected_charge(seconds: int, rate: str) -> int:
    """billed seconds x rate / 60, half-up to the cent (increment 1 s), computed without the services."""
    exact = Decimal(seconds) * Decimal(rate) * 100 / 60
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "billing.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def sqlite_services(sqlite_url: str) -> Iterator[Services]:
    built = build_services(make_settings(sqlite_url))
    try:
        yield built
    finally:
        built.close()




def count_commits(services: Services) -> Callable[[], int]:
    commits = Counter[str]()

    def on_commit(conn: Connection) -> None:
        commits["n"] += 1

    event.listen(services.db.engine, "commit", on_commit)
    return lambda: commits["n"]


def run_writers(specs: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    """Start one process per spec, release them together, and return each one's report."""
    commands = []
    for spec in specs:
        spec_file = tmp_path / f"{spec['name']}.json"
        spec_file.write_text(json.dumps(spec))
        commands.append([sys.executable, "-c", CHILD, str(spec_file)])
    return run_together(commands, cwd=REPO)


def test_two_processes_writing_one_file_lose_no_update_and_see_no_lock_error(sqlite_services, sqlite_url, tmp_path):
    services = sqlite_services
    rng = random.Random(42)
    rates = ["0.42", "0.60", "0.35", "1.00"]
    companies = [new_company(services, name=f"Praxis {i}", rate=rate, funded="100.00") for i, rate in enumerate(rates)]
    rate_of = {c.id: rate for c, rate in zip(companies, rates, strict=True)}
    expected = {c.id: 10000 for c in companies}
    ids = [c.id for c in companies]

    refundable = []
    for n, company_id in enumerate(ids * 4):
        call_id = f"pre-{n}"
        services.charging.charge_call(call_id=call_id, company_id=company_id, duration_seconds=600, started_at=STARTED)
        amount = expected_charge(600, rate_of[company_id])
        expected[company_id] -= amount
        refundable.append((company_id, call_id, amount))

    shared_calls = []
    for n in range(100):  # delivered to both processes, like a webhook retried against another replica
        company_id, seconds = ids[n % 4], rng.randrange(1, 900)
        expected[company_id] -= expected_charge(seconds, rate_of[company_id])
        shared_calls.append({"kind": "charge", "call_id": f"shared-{n}", "company_id": company_id, "seconds": seconds})
    shared_topups = []
    for n in range(20):
        company_id, cents = ids[n % 4], rng.randrange(100, 5001)
        expected[company_id] += cents
        shared_topups.append({"kind": "topup", "company_id": company_id, "cents": cents, "reference": f"shared-{n}"})

    shared = [*shared_calls, *shared_topups]
    rng.shuffle(shared)
    specs = []
    for name in ("mcp", "webhooks"):
        ops: list[dict[str, Any]] = []
        for n in range(500):
            company_id, seconds = ids[n % 4], rng.randrange(1, 900)
            expected[company_id] -= expected_charge(seconds, rate_of[company_id])
            ops.append({"kind": "charge", "call_id": f"{name}-{n}", "company_id": company_id, "seconds": seconds})
        for n in range(60):
            company_id, cents = ids[n % 4], rng.randrange(100, 5001)
            expected[company_id] += cents
            ops.append({"kind": "topup", "company_id": company_id, "cents": cents, "reference": f"{name}-{n}"})
        for company_id, call_id, amount in refundable:  # a quarter each: both together stay below the charge
            expected[company_id] += amount // 4
            ops.append({"kind": "refund", "call_id": call_id, "cents": amount // 4, "key": f"{name}-{call_id}"})
        rng.shuffle(ops)
        if not specs:
            positions = sorted(rng.sample(range(len(ops) + len(shared)), len(shared)))
        for position, op in zip(positions, shared, strict=True):  # same place in both queues: arrive together
            ops.insert(position, op)
        specs.append({"name": name, "url": sqlite_url, "threads": 8, "started_at": STARTED.isoformat(), "ops": ops})

    reports = run_writers(specs, tmp_path)

    for spec, report in zip(specs, reports, strict=True):
        errors = [r for r in report["results"] if "error" in r]
        assert (spec["name"], errors) == (spec["name"], [])
    assert max(r["began"] for r in reports) < min(r["ended"] for r in reports), "the writers did not overlap"

    for c in companies:
        view = services.balances.get(c.id)
        assert (c.id, view.balance.cents, view.reserved.cents) == (c.id, expected[c.id], 0)
    assert_ledger_ok(services)

    all_calls = {op["call_id"] for spec in specs for op in spec["ops"] if op["kind"] == "charge"}
    all_calls |= {call_id for _, call_id, _ in refundable}
    assert set(charged_call_ids(services)) == all_calls
    per_call = charge_entries_per_call(services)
    assert set(per_call) == all_calls and set(per_call.values()) == {1}

    replays: dict[str, list[bool]] = defaultdict(list)
    credits: dict[str, list[bool]] = defaultdict(list)
    for report in reports:
        for r in report["results"]:
            if r["op"]["kind"] == "charge" and r["op"]["call_id"].startswith("shared-"):
                replays[r["op"]["call_id"]].append(r["replayed"])
            if r["op"]["kind"] == "topup" and r["op"]["reference"].startswith("shared-"):
                credits[r["op"]["reference"]].append(r["credited_now"])
    assert len(replays) == 100 and all(sorted(v) == [False, True] for v in replays.values())
    assert len(credits) == 20 and all(sorted(v) == [False, True] for v in credits.values())


@dataclass
class Outcome:
    kind: str
    key: Any
    result: Any = None
    error: BaseException | None = None


def run_all(ops: list[tuple[str, Any, Callable[[], Any]]], *, threads: int) -> list[Outcome]:
    def one(op: tuple[str, Any, Callable[[], Any]]) -> Outcome:
        kind, key, call = op
        try:
            return Outcome(kind, key, result=call())
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            return Outcome(kind, key, error=error)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, ops))


def test_thirty_two_threads_through_the_group_committer_end_with_exact_balances(sqlite_services):
    services = sqlite_services
    rng = random.Random(11)
    companies = [new_company(services, name=f"Praxis {i}", funded="200.00") for i in range(4)]
    ids = [c.id for c in companies]
    expected = {c.id: 20000 for c in companies}
    for n, company_id in enumerate(ids * 5):
        services.charging.charge_call(call_id=f"pre-{n}", company_id=company_id, duration_seconds=600,
                                      started_at=STARTED)
        expected[company_id] -= 420
    commits = count_commits(services)

    groups: list[list[tuple[str, Any, Callable[[], Any]]]] = []  # members of a group arrive together
    for n in range(400):
        company_id, call_id, seconds = ids[n % 4], f"call-{n}", rng.randrange(1, 900)
        expected[company_id] -= expected_charge(seconds, "0.42")
        charge = partial(services.charging.charge_call, call_id=call_id, company_id=company_id,
                         duration_seconds=seconds, started_at=STARTED)
        group = [("charge", call_id, charge)] * (2 if n % 10 == 0 else 1)  # a webhook delivered twice
        if n % 4 == 0:  # call_started racing its own call_ended
            group.append(("reserve", call_id, partial(services.charging.reserve, call_id=call_id,
                                                      company_id=company_id, started_at=STARTED)))
        rng.shuffle(group)
        groups.append(group)
    for n in range(100):
        company_id, cents = ids[n % 4], rng.randrange(100, 5001)
        expected[company_id] += cents
        groups.append([("topup", n, partial(services.topups.record_payment, company_id=company_id,
                                            amount=Money(cents, "EUR"), reference=f"transfer-{n}", actor="test"))])
    for n, company_id in enumerate(ids * 5):  # 50 refunds of 0.30 against each 4.20 charge: 14 fit
        expected[company_id] += 14 * 30
        groups += [[("refund", f"pre-{n}", partial(services.refunds.refund_call, call_id=f"pre-{n}",
                                                   amount=eur("0.30"), reason="quality", actor="agent"))]] * 50
    rng.shuffle(groups)
    ops = [op for group in groups for op in group]

    outcomes = run_all(ops, threads=32)

    errors = Counter(type(o.error).__name__ for o in outcomes if o.error is not None)
    assert errors == Counter({"RefundExceedsCharge": 20 * 36})
    for c in companies:
        view = services.balances.get(c.id)
        assert (c.id, view.balance.cents, view.reserved.cents) == (c.id, expected[c.id], 0)
    assert_ledger_ok(services)
    per_call = charge_entries_per_call(services)
    assert set(per_call.values()) == {1} and len(per_call) == 420
    active = services.db.read(lambda conn: conn.execute(
        select(func.count()).select_from(reservations).where(reservations.c.status == "active")).scalar_one())
    assert active == 0
    assert commits() < len(ops), "writers were never batched into a shared commit"


def test_a_failing_unit_gets_its_own_error_while_the_rest_of_its_batch_commits(sqlite_services):
    services = sqlite_services
    company = new_company(services, rate="1.00", funded="20.00")
    services.charging.charge_call(call_id="call-1", company_id=company.id, duration_seconds=600, started_at=STARTED)
    commits = count_commits(services)
    entered, release = threading.Event(), threading.Event()

    def hold_the_writer_slot(conn: Connection) -> None:
        entered.set()
        assert release.wait(timeout=30)

    units: list[tuple[str, Callable[[], Any]]] = [
        ("refund too much", lambda: services.refunds.refund_call(
            call_id="call-1", amount=eur("10.01"), reason="too much", actor="agent")),
        ("charge again with other data", lambda: services.charging.charge_call(
            call_id="call-1", company_id=company.id, duration_seconds=601, started_at=STARTED)),
        ("charge new call", lambda: services.charging.charge_call(
            call_id="call-2", company_id=company.id, duration_seconds=60, started_at=STARTED)),
        ("refund part", lambda: services.refunds.refund_call(
            call_id="call-1", amount=eur("3.00"), reason="quality", actor="agent")),
        ("top up", lambda: services.topups.record_payment(
            company_id=company.id, amount=eur("20.00"), reference="transfer-1", actor="ops")),
        ("adjust", lambda: services.adjustments.adjust(
            company_id=company.id, amount=eur("1.50"), reason="courtesy", actor="ops")),
    ]
    group = services.db._group
    assert group is not None
    with ThreadPoolExecutor(max_workers=1 + len(units)) as pool:
        blocker = pool.submit(services.db.write, hold_the_writer_slot)
        assert entered.wait(timeout=10)
        futures = {}
        for name, call in units:  # queue them one by one, in this order, behind the busy writer
            queued = len(group._queue)
            futures[name] = pool.submit(call)
            deadline = time.monotonic() + 10
            while len(group._queue) == queued and time.monotonic() < deadline:
                time.sleep(0.001)
        assert len(group._queue) == len(units)
        release.set()
        blocker.result(timeout=30)
        outcomes = {}
        for name, future in futures.items():
            try:
                outcomes[name] = future.result(timeout=30)
            except Exception as error:  # noqa: BLE001
                outcomes[name] = error

    assert commits() == 2, "the queued units did not share one batch"
    assert isinstance(outcomes.pop("refund too much"), RefundExceedsCharge)
    different = outcomes.pop("charge again with other data")
    assert isinstance(different, CallChargedWithDifferentData) and different.differences == ["duration_seconds"]
    assert outcomes["charge new call"].amount == eur("1.00") and not outcomes["charge new call"].replayed
    assert outcomes["refund part"].refunded_total == eur("3.00")
    assert outcomes["top up"].credited_now
    assert not outcomes["adjust"].replayed
    assert services.balances.get(company.id).balance.cents == 2000 - 1000 - 100 + 300 + 2000 + 150
    refunded = services.db.read(lambda conn: conn.execute(
        select(call_charges.c.refunded_amount).where(call_charges.c.call_id == "call-1")).scalar_one())
    assert refunded == 300
    assert set(charged_call_ids(services)) == {"call-1", "call-2"}
    assert_ledger_ok(services)


def test_a_call_charged_twice_within_one_batch_posts_once_and_the_second_is_a_replay(sqlite_services):
    services = sqlite_services
    company = new_company(services, rate="1.00", funded="20.00")
    commits = count_commits(services)
    entered, release = threading.Event(), threading.Event()

    def hold_the_writer_slot(conn: Connection) -> None:
        entered.set()
        assert release.wait(timeout=30)

    group = services.db._group
    assert group is not None
    with ThreadPoolExecutor(max_workers=3) as pool:
        blocker = pool.submit(services.db.write, hold_the_writer_slot)
        assert entered.wait(timeout=10)
        futures = []
        for _ in range(2):
            queued = len(group._queue)
            futures.append(pool.submit(services.charging.charge_call, call_id="call-1", company_id=company.id,
                                       duration_seconds=90, started_at=STARTED))
            deadline = time.monotonic() + 10
            while len(group._queue) == queued and time.monotonic() < deadline:
                time.sleep(0.001)
        assert len(group._queue) == 2
        release.set()
        blocker.result(timeout=30)
        first, second = (f.result(timeout=30) for f in futures)

    assert commits() == 2
    assert (first.replayed, second.replayed) == (False, True)
    assert first.charge_id == second.charge_id and first.amount == second.amount == eur("1.50")
    assert services.balances.get(company.id).balance.cents == 2000 - 150
    assert charge_entries_per_call(services) == Counter({"call-1": 1})
    assert_ledger_ok(services)
