"""Invoice numbers are gap-free and unique per series and year, however many settlements race for them.

200 top-ups settled at once from a thread pool on MariaDB; two OS processes (each with threads) settling
the same top-ups on one SQLite file; a new year starting at 000001; credit notes numbered in their own series.
Numbers are checked against the top-ups they belong to, not only counted.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import invoices, topups
from tests.conftest import Clock, empty_mariadb, make_settings
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur
from tests.integration.invoice_helpers import company_with_address, counters, invoice_numbers, invoice_row, pay
from tests.integration.stripe_helpers import create_card
from tests.support.processes import run_together

REPO = Path(__file__).resolve().parents[2]
ISSUED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def pending_topups(services: Services, count: int, companies: int) -> dict[int, tuple[int, int]]:
    """``count`` pending card top-ups spread over ``companies`` companies with addresses: id -> (company, cents)."""
    owners = [company_with_address(services, name=f"Praxis {n}").id for n in range(companies)]
    made = {}
    for n in range(count):
        company_id, cents = owners[n % companies], 1000 + 7 * n
        topup = services.topups.create_pending(company_id=company_id, amount=eur(f"{cents / 100:.2f}"),
                                               source="payment_intent", initiated_by="api:client",
                                               idempotency_key=f"pay-{n}")
        made[topup.id] = (company_id, cents)
    return made


def invoice_by_topup(services: Services) -> dict[int, dict[str, Any]]:
    rows = services.db.read(
        lambda conn: conn.execute(select(invoices.c.id, invoices.c.number, invoices.c.topup_id, invoices.c.gross_amount,
                                         invoices.c.kind).order_by(invoices.c.id)).mappings().all()
    )
    return {r["topup_id"]: dict(r) for r in rows}


def topup_invoice_ids(services: Services) -> dict[int, int | None]:
    return dict(services.db.read(lambda conn: conn.execute(select(topups.c.id, topups.c.invoice_id)).all()))


def assert_numbered_one_to(services: Services, made: dict[int, tuple[int, int]], *, year: int = 2026) -> None:
    """Every top-up has exactly one invoice for its amount; the numbers are 1..n, in the order they were issued."""
    count = len(made)
    by_topup = invoice_by_topup(services)
    assert set(by_topup) == set(made)
    numbers_in_issue_order = [r["number"] for r in sorted(by_topup.values(), key=lambda r: r["id"])]
    assert numbers_in_issue_order == [f"RE-{year}-{n:06d}" for n in range(1, count + 1)]
    assert {t: r["gross_amount"] for t, r in by_topup.items()} == {t: cents for t, (_, cents) in made.items()}
    assert topup_invoice_ids(services) == {t: r["id"] for t, r in by_topup.items()}
    assert counters(services) == {("RE", year): count}


def assert_balances(services: Services, made: dict[int, tuple[int, int]]) -> None:
    expected: dict[int, int] = {}
    for company_id, cents in made.values():
        expected[company_id] = expected.get(company_id, 0) + cents
    assert {c: balance_cents(services, c) for c in expected} == expected
    assert_ledger_ok(services)


# -- MariaDB: 200 at once ----------------------------------------------------------------------------------


@pytest.fixture
def mariadb_services(mariadb_template_url: str) -> Iterator[Services]:
    empty_mariadb(mariadb_template_url)
    built = build_services(make_settings(mariadb_template_url), clock=Clock(ISSUED))
    try:
        yield built
    finally:
        built.close()


def settle_all_at_once(services: Services, topup_ids: list[int], *, threads: int) -> list[Any]:
    """Settle every top-up from a pool of ``threads`` released together; returns results or exceptions."""
    go = threading.Event()

    def one(topup_id: int) -> Any:
        go.wait()
        try:
            return services.topups.settle(topup_id)
        except Exception as error:  # collected and asserted on below
            return error

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(one, topup_id) for topup_id in topup_ids]
        go.set()
        return [f.result() for f in futures]


@pytest.mark.mariadb_only
@pytest.mark.slow
def test_200_concurrent_settlements_on_mariadb_number_1_to_200_without_gap_or_duplicate(mariadb_services):
    services = mariadb_services
    made = pending_topups(services, 200, companies=10)
    order = list(made)
    random.Random(7).shuffle(order)

    results = settle_all_at_once(services, order, threads=40)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert all(r.credited_now for r in results)
    assert_numbered_one_to(services, made)
    assert_balances(services, made)

    # the same 200 settled again at once (a webhook and the reconciler both reporting them) issue nothing
    again = settle_all_at_once(services, order[::-1], threads=40)
    assert [r for r in again if isinstance(r, Exception)] == []
    assert not any(r.credited_now for r in again)
    assert_numbered_one_to(services, made)
    assert_balances(services, made)


# -- SQLite: two processes on one file ---------------------------------------------------------------------

# One settling process: builds its own services on the shared file (with a fixed clock), says "ready",
# waits for "go", settles its top-ups from a thread pool and prints one JSON line with what happened.
CHILD = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from billing_core.bootstrap import build_services
from tests.conftest import make_settings

spec = json.loads(open(sys.argv[1]).read())
now = datetime.fromisoformat(spec["now"])
services = build_services(make_settings(spec["url"]), clock=lambda: now)


def settle(topup_id):
    try:
        return {"topup_id": topup_id, "credited_now": services.topups.settle(topup_id).credited_now}
    except Exception as error:
        return {"topup_id": topup_id, "error": f"{type(error).__name__}: {error}"}


print("ready", flush=True)
sys.stdin.readline()
with ThreadPoolExecutor(max_workers=spec["threads"]) as pool:
    results = list(pool.map(settle, spec["topup_ids"]))
services.close()
print(json.dumps(results), flush=True)
"""


def run_settlers(url: str, orders: list[list[int]], tmp_path: Path) -> list[list[dict[str, Any]]]:
    """One process per order of top-up ids, released together; returns each one's results."""
    commands = []
    for n, order in enumerate(orders):
        spec = tmp_path / f"settler-{n}.json"
        spec.write_text(json.dumps({"url": url, "now": ISSUED.isoformat(), "threads": 6, "topup_ids": order}))
        commands.append([sys.executable, "-c", CHILD, str(spec)])
    return run_together(commands, cwd=REPO)


@pytest.mark.slow
def test_two_processes_settling_the_same_topups_on_sqlite_number_each_once_without_gap(
    sqlite_template, tmp_path
):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    (tmp_path / "billing.db").write_bytes(Path(sqlite_template).read_bytes())
    services = build_services(make_settings(url), clock=Clock(ISSUED))
    try:
        made = pending_topups(services, 60, companies=6)
        ids = list(made)
        rng = random.Random(11)
        orders = [rng.sample(ids, len(ids)), rng.sample(ids, len(ids))]  # both processes race for every top-up

        reports = run_settlers(url, orders, tmp_path)

        outcomes = [r for report in reports for r in report]
        assert [r for r in outcomes if "error" in r] == []
        credited = sorted(r["topup_id"] for r in outcomes if r["credited_now"])
        assert credited == sorted(ids)  # each credited by exactly one of the two processes
        assert_numbered_one_to(services, made)
        assert_balances(services, made)
    finally:
        services.close()


# -- years and series --------------------------------------------------------------------------------------


def test_a_new_year_starts_again_at_000001(services, clock):
    company = company_with_address(services)
    clock.now = datetime(2026, 12, 31, 22, 59, 0, tzinfo=UTC)  # 23:59 in Berlin, the seller's calendar
    pay(services, company.id, "10.00", reference="december 1")
    pay(services, company.id, "20.00", reference="december 2")

    clock.advance(seconds=90)
    pay(services, company.id, "30.00", reference="january 1")
    pay(services, company.id, "40.00", reference="january 2")

    assert invoice_numbers(services) == ["RE-2026-000001", "RE-2026-000002", "RE-2027-000001", "RE-2027-000002"]
    assert [i.gross.cents for i in services.invoices.list()] == [1000, 2000, 3000, 4000]
    assert [i.document.issue_date.isoformat() for i in services.invoices.list()] == [
        "2026-12-31", "2026-12-31", "2027-01-01", "2027-01-01",
    ]
    assert counters(services) == {("RE", 2026): 2, ("RE", 2027): 2}


def card_topup(services: Services, company_id: int, amount: str, n: int) -> int:
    method = create_card(services, "4242424242424242")
    services.stripe.payments.attach_payment_method(company_id, method, actor="test")
    return services.stripe.payments.pay_with_saved_method(
        company_id=company_id, amount=eur(amount), payment_method_id=method, initiated_by="api:client",
        idempotency_key=f"pay-{company_id}-{n}",
    ).topup.id


def refund_all(services: Services, topup_id: int) -> None:
    services.stripe.topup_refunds.refund(topup_id=topup_id, amount=None, reason="customer cancelled",
                                         actor="support:anna", idempotency_key=f"refund-{topup_id}")


def test_credit_notes_have_their_own_gap_free_series_per_year(stripe_services, clock):
    services = stripe_services
    company = company_with_address(services)
    clock.now = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)
    first, second, third = (card_topup(services, company.id, amount, n)
                            for n, amount in enumerate(("10.00", "20.00", "30.00")))

    refund_all(services, second)
    fourth = card_topup(services, company.id, "40.00", 4)
    clock.now = datetime(2027, 1, 1, 8, 0, tzinfo=UTC)
    refund_all(services, first)
    refund_all(services, fourth)
    card_topup(services, company.id, "50.00", 5)

    assert invoice_numbers(services, "invoice") == [
        "RE-2026-000001", "RE-2026-000002", "RE-2026-000003", "RE-2026-000004", "RE-2027-000001",
    ]
    assert invoice_numbers(services, "credit_note") == ["GS-2026-000001", "GS-2027-000001", "GS-2027-000002"]
    corrected = {
        number: json.loads(invoice_row(services, number)["document"])["corrects"]
        for number in ("GS-2026-000001", "GS-2027-000001", "GS-2027-000002")
    }
    assert corrected == {
        "GS-2026-000001": {"number": "RE-2026-000002", "issue_date": "2026-12-31"},
        "GS-2027-000001": {"number": "RE-2026-000001", "issue_date": "2026-12-31"},
        "GS-2027-000002": {"number": "RE-2026-000004", "issue_date": "2026-12-31"},
    }
    assert [invoice_row(services, n)["gross_amount"] for n in corrected] == [2000, 1000, 4000]
    assert counters(services) == {("RE", 2026): 4, ("RE", 2027): 1, ("GS", 2026): 1, ("GS", 2027): 2}
    assert third  # paid and never refunded: no credit note
