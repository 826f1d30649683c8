"""What a MariaDB Galera cluster changes, on a real 3-node cluster (tests/support/galera.py).

``SELECT ... FOR UPDATE`` and ``SKIP LOCKED`` hold only on the node that runs them; two transactions on two
nodes find out about each other at commit, when the second one to certify fails with a deadlock error
(1213) and ``Database`` runs it again. These tests make two nodes race on purpose (a barrier inside the
transaction, after the local locks are taken) and check that nothing happens twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from billing_core.adapters.stripe_gateway import StripeGateway
from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import call_charges, invoices, topups, webhook_events
from billing_core.money import Money
from billing_core.services.webhooks.inbox import HandlerResult, InboundEvent, WebhookInbox
from billing_core.services.webhooks.retell_events import RetellEventHandler
from tests.conftest import make_settings
from tests.integration.helpers import assert_ledger_ok, new_company
from tests.integration.stripe_helpers import company_with_method, money
from tests.integration.webhook_helpers import retell_call
from tests.support.galera import GaleraCluster

pytestmark = [pytest.mark.mariadb_only, pytest.mark.slow]

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class RendezvousClock:
    """A fixed clock that, once armed, holds each thread's first reading until ``parties`` threads read it.

    Services read the clock inside their transaction after taking the balance row lock, so two threads on
    two nodes are both past their local locks and counts when they go on: the race Galera must resolve.
    """

    def __init__(self, parties: int) -> None:
        self.now = START
        self._barrier = threading.Barrier(parties)
        self._armed = False
        self._waited: set[int] = set()

    def arm(self) -> None:
        self._armed = True

    def __call__(self) -> datetime:
        me = threading.get_ident()
        if self._armed and me not in self._waited:
            self._waited.add(me)
            self._barrier.wait(timeout=30)
        return self.now


def cert_conflicts(cluster: GaleraCluster) -> int:
    """Certification failures and brute-force aborts on every node so far (each one is a 1213 somewhere)."""
    total = 0
    for node in cluster.nodes:
        for name in ("wsrep_local_cert_failures", "wsrep_local_bf_aborts"):
            total += int(node.status(name) or 0)
    return total


@pytest.fixture
def node_services(galera_urls: list[str]) -> Iterator[Callable[..., Services]]:
    """Builds the services of one replica pointed at one node; closes them all afterwards."""
    built: list[Services] = []

    def build(node: int, **kwargs: Any) -> Services:
        services = build_services(make_settings(galera_urls[node]), **kwargs)
        built.append(services)
        return services

    yield build
    for services in built:
        services.close()


def test_a_write_on_one_node_is_seen_at_once_by_a_read_on_another(node_services):
    writer, reader = node_services(0), node_services(2)
    company = new_company(writer, funded="10.00")
    for n in range(30):
        writer.charging.charge_call(call_id=f"seen-{n}", company_id=company.id, duration_seconds=60, started_at=START)
        # wsrep_sync_wait: the reading node applies what the cluster committed before it answers
        assert reader.charging.get_charge(f"seen-{n}").amount.cents == 42
    assert reader.balances.get(company.id).balance.cents == 1000 - 30 * 42


def test_concurrent_charges_of_one_company_on_three_nodes_are_retried_and_exact_on_every_node(
    node_services, galera_cluster
):
    nodes = [node_services(i) for i in range(3)]
    company = new_company(nodes[0], rate="0.60", funded="500.00")
    before = cert_conflicts(galera_cluster)
    calls = [(f"hot-{n:03d}", 30 + n) for n in range(120)]

    def charge(index: int) -> None:
        call_id, seconds = calls[index]
        nodes[index % 3].charging.charge_call(
            call_id=call_id, company_id=company.id, duration_seconds=seconds, started_at=START
        )

    with ThreadPoolExecutor(9) as pool:
        list(pool.map(charge, range(len(calls))))

    expected = 50000 - sum(
        int((Decimal(s) * Decimal("0.60") * 100 / 60).quantize(Decimal(1), rounding=ROUND_HALF_UP)) for _, s in calls
    )
    for services in nodes:
        assert services.balances.get(company.id).balance.cents == expected
        assert_ledger_ok(services)
    assert cert_conflicts(galera_cluster) > before, "the nodes never conflicted: the test raced nothing"


def test_concurrent_auto_topup_triggers_on_two_nodes_make_exactly_one_attempt(
    node_services, stripe_gateway: StripeGateway
):
    clock = RendezvousClock(parties=2)
    first = node_services(0, clock=clock, gateway=stripe_gateway)
    second = node_services(1, clock=clock, gateway=stripe_gateway)
    company_id, _ = company_with_method(first)  # 5.00, threshold 10.00, auto top-up 50.00
    clock.arm()

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda svc: svc.stripe.auto_topup.trigger(company_id), (first, second)))

    assert sorted(o.triggered for o in outcomes) == [False, True], [o.reason for o in outcomes]
    attempts = first.db.read(
        lambda conn: conn.execute(
            select(topups.c.status).where(topups.c.company_id == company_id, topups.c.source == "auto_topup")
        ).scalars().all()
    )
    assert attempts == ["succeeded"]
    for services in (first, second):
        assert money(services, company_id).cents == 5500
        assert_ledger_ok(services)


class RendezvousHandler:
    """Charges the call; each thread's first call waits for the other thread's (both hold the same claim)."""

    def __init__(self, services: Services) -> None:
        self._delegate = RetellEventHandler(services.charging, max_call_seconds=services.ctx.settings.max_call_seconds)
        self._barrier = threading.Barrier(2)
        self._waited: set[int] = set()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, conn: Connection, event: InboundEvent) -> HandlerResult:
        with self._lock:
            self.calls += 1
            first = threading.get_ident() not in self._waited
            self._waited.add(threading.get_ident())
        if first:
            self._barrier.wait(timeout=30)
        return self._delegate(conn, event)


def test_two_workers_on_two_nodes_claiming_the_same_inbox_row_process_it_once(node_services, galera_cluster):
    first, second = node_services(0), node_services(1)
    company = new_company(first, funded="20.00")
    start_ms = int((START - timedelta(hours=1)).timestamp() * 1000)
    raw = retell_call("call_ended", "call-claimed-twice", company.id, seconds=90, start_ms=start_ms)
    first.db.write(
        lambda conn: conn.execute(
            insert(webhook_events),
            {
                "provider": "retell",
                "event_id": "call_ended:call-claimed-twice",
                "event_type": "call_ended",
                "payload": raw.decode(),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": START - timedelta(minutes=1),
                "received_at": START - timedelta(minutes=1),
            },
        )
    )
    handler = RendezvousHandler(first)
    inboxes = [WebhookInbox(services.ctx, {"retell": handler}) for services in (first, second)]
    before = cert_conflicts(galera_cluster)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda inbox: inbox.process_due(limit=5), inboxes))

    # both claimed the one due row on their own node and ran the handler; one commit lost certification
    assert handler.calls == 2
    assert cert_conflicts(galera_cluster) > before
    assert sorted(len(r) for r in results) == [0, 1], results
    for services in (first, second):
        charges = services.db.read(lambda conn: conn.execute(select(call_charges.c.amount_charged)).scalars().all())
        assert charges == [63]
        assert services.balances.get(company.id).balance.cents == 2000 - 63
        assert services.webhooks.backlog() == {}
        assert_ledger_ok(services)


def test_payments_settled_on_three_nodes_at_once_get_gap_free_invoice_numbers(node_services, galera_cluster):
    nodes = [node_services(i) for i in range(3)]
    firms = [new_company(nodes[0], name=f"Praxis {n}") for n in range(6)]
    for firm in firms:
        nodes[0].companies.set(firm.id, actor="test", address_line1="Hauptstraße 1", postal_code="10115",
                               city="Berlin", country="DE")
    before = cert_conflicts(galera_cluster)

    def pay(n: int) -> None:
        nodes[n % 3].topups.record_payment(company_id=firms[n % len(firms)].id, amount=Money(1000 + n, "EUR"),
                                           reference=f"transfer {n}", actor="test")

    with ThreadPoolExecutor(9) as pool:
        list(pool.map(pay, range(45)))

    # the one counter row was written from three nodes at once: conflicts, retried until each one got through
    assert cert_conflicts(galera_cluster) > before
    for services in nodes:
        rows = services.db.read(
            lambda conn: conn.execute(select(invoices.c.number).where(invoices.c.kind == "invoice")).scalars().all()
        )
        assert sorted(int(number.rsplit("-", 1)[-1]) for number in rows) == list(range(1, 46))
        for n, firm in enumerate(firms):
            paid = sum(1000 + k for k in range(45) if k % len(firms) == n)
            assert services.balances.get(firm.id).balance.cents == paid
        assert_ledger_ok(services)
