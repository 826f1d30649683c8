"""The webhook sidecar as a real ``billing webhooks`` process, fed by localstripe and by storms of signed events.

Every test owns a private database (a migrated SQLite file, or a fresh schema on the session's MariaDB)
and its own sidecar process; the test process builds companies and top-ups in the same database and,
at the end, reads it back and runs ``billing ledger check``. Expected amounts are computed here, in
integer cents, independently of billing_core: billed seconds = ceil(duration_ms / 1000), amount =
seconds x 0.42 / 60 rounded half-up to the cent.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest
import stripe
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from billing_core.adapters.stripe_gateway import StripeGateway
from billing_core.bootstrap import Services, build_services
from billing_core.db import migrate
from billing_core.db.tables import call_charges, ledger, topups, webhook_events
from billing_core.money import Money
from tests.conftest import make_settings
from tests.integration.helpers import eur, new_company
from tests.integration.stripe_helpers import CARD_OK, create_card
from tests.integration.webhook_helpers import (
    RETELL_API_KEY,
    STRIPE_WEBHOOK_SECRET,
    retell_examples,
    stripe_event,
    stripe_fixtures,
)
from tests.support.localstripe import SECRET_KEY as LOCALSTRIPE_KEY
from tests.support.localstripe import LocalStripe
from tests.support.mariadb import MariaDBServer, free_port
from tests.support.processes import WebhookProcess, run_billing, sidecar_env
from tests.support.webhook_storm import Delivery, Storm

RATE_PER_MINUTE = Decimal("0.42")
FUNDED = "300.00"
DEAD_URL = "http://127.0.0.1:1/gone"  # nothing listens on port 1: where a finished test's localstripe hook points


# -- databases and processes --------------------------------------------------------------------


def _admin(url: str) -> pymysql.connections.Connection:
    parsed = make_url(url)
    return pymysql.connect(host=parsed.host, port=parsed.port or 3306, user=parsed.username,
                           password=parsed.password or "")


def create_mariadb_database(base_url: str, name: str) -> str:
    conn = _admin(base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        conn.close()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_mariadb_database(url: str) -> None:
    conn = _admin(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{make_url(url).database}`")
    finally:
        conn.close()


@pytest.fixture
def private_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test alone: a migrated SQLite file, or a new migrated schema on the test MariaDB."""
    if backend == "sqlite":
        target = tmp_path / "billing.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    server: MariaDBServer | None = request.getfixturevalue("mariadb_server")
    name = f"billing_e2e_{uuid.uuid4().hex[:12]}"
    if server is None:
        url = create_mariadb_database(os.environ["BILLING_TEST_MARIADB_URL"], name)
    else:
        url = server.create_database(name)
    migrate.upgrade(url)
    yield url
    drop_mariadb_database(url)


@pytest.fixture
def sidecars(tmp_path: Path, localstripe: LocalStripe) -> Iterator[Callable[[str], WebhookProcess]]:
    """Makes ``billing webhooks`` processes (not started) for a database URL; stops them all afterwards."""
    made: list[WebhookProcess] = []

    def make(database_url: str, **extra: str) -> WebhookProcess:
        env = sidecar_env(database_url, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET, retell_api_key=RETELL_API_KEY,
                          stripe_api_base=localstripe.url, **extra)
        process = WebhookProcess(tmp_path / f"sidecar-{len(made)}", env)
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()


def open_services(database_url: str, gateway: StripeGateway | None = None) -> Services:
    """The test process's own view of the database (and, with ``gateway``, of localstripe)."""
    settings = make_settings(database_url, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET, retell_api_key=RETELL_API_KEY)
    return build_services(settings, gateway=gateway)


@pytest.fixture
def services(private_database_url: str) -> Iterator[Services]:
    built = open_services(private_database_url)
    try:
        yield built
    finally:
        built.close()


def ledger_check(sidecar: WebhookProcess) -> None:
    done = run_billing("ledger", "check", env=sidecar.env, cwd=sidecar.workdir)
    assert done.returncode == 0, f"billing ledger check -> {done.returncode}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")


# -- the storm ----------------------------------------------------------------------------------


def call_cents(duration_ms: int) -> int:
    """The charge of a call, computed here on its own: ceil to whole seconds, 0.42/min, half-up to the cent."""
    seconds = -(-duration_ms // 1000)
    exact = Decimal(seconds) * RATE_PER_MINUTE / 60
    return int(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)


EDGE_DURATIONS_MS = [1, 999, 1000, 1001, 59_999, 60_000, 60_001, 71_428, 142_857, 187_450, 3_599_999]


@dataclass
class StormPlan:
    seed: int
    events: list[Delivery]  # one per distinct event
    deliveries: list[Delivery]  # every event two or three times, shuffled
    expected_balance: dict[int, int]  # company -> cents
    calls: dict[str, tuple[int, int]]  # call id -> (company, cents)
    topup_ids: list[int]
    inbox_statuses: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        return f"storm plan seed={self.seed}: {len(self.events)} events, {len(self.deliveries)} deliveries"


def retell_body(example: dict[str, Any], event: str, call_id: str, company_id: int, start_ms: int,
                duration_ms: int) -> bytes:
    body = copy.deepcopy(example[event])
    call = body["call"]
    call.update(call_id=call_id, start_timestamp=start_ms, metadata={"company_id": str(company_id)})
    if event != "call_started":
        call.update(end_timestamp=start_ms + duration_ms, duration_ms=duration_ms)
    return json.dumps(body).encode()


def plan_storm(services: Services, *, seed: int, events: int = 1000, companies: int = 20) -> StormPlan:
    """Companies funded in the database, pending top-ups for the Stripe events, and the signed-to-be bodies.

    The mix of ``events`` distinct events: two ``payment_intent.succeeded`` per company (pending top-ups),
    ``charge.succeeded`` for half of those top-ups, ten ``customer.created`` (ignored), 15 % ``call_started``
    and 2 % ``call_analyzed`` of calls that also end, and ``call_ended`` for the rest.
    """
    rng = random.Random(seed)
    examples = retell_examples()
    fixtures = stripe_fixtures()
    tag = uuid.uuid4().hex[:8]
    company_ids = [new_company(services, name=f"Storm {n:02d}", funded=FUNDED).id for n in range(companies)]
    expected = {c: Money.parse(FUNDED, "EUR").cents for c in company_ids}
    plan_events: list[Delivery] = []
    statuses: Counter[str] = Counter()

    topup_ids: list[int] = []
    for n, company in enumerate(company_ids * 2):
        amount = Money(1000 + 137 * n, "EUR")
        topup = services.topups.create_pending(company_id=company, amount=amount, source="payment_intent",
                                               initiated_by="test", idempotency_key=f"storm-{tag}-{n}")
        topup_ids.append(topup.id)
        expected[company] += amount.cents
        intent_id, charge_id = f"pi_storm_{tag}_{n}", f"ch_storm_{tag}_{n}"
        services.topups.attach_stripe_ids(topup.id, stripe_payment_intent_id=intent_id)  # as PaymentService does
        metadata = {"topup_id": str(topup.id), "company_id": str(company), "source": "payment_intent"}
        intent = dict(fixtures["payment_intent"], id=intent_id, amount=amount.cents, amount_received=amount.cents,
                      currency="eur", status="succeeded", latest_charge=charge_id, metadata=metadata)
        plan_events.append(Delivery("stripe", f"stripe:evt_pi_{tag}_{n}", stripe_event(
            "payment_intent.succeeded", intent, event_id=f"evt_pi_{tag}_{n}")))
        statuses["processed"] += 1
        if n % 2 == 0:
            charge = dict(fixtures["charge"], id=charge_id, payment_intent=intent_id, amount=amount.cents,
                          currency="eur", paid=True, status="succeeded", metadata=metadata)
            plan_events.append(Delivery("stripe", f"stripe:evt_ch_{tag}_{n}", stripe_event(
                "charge.succeeded", charge, event_id=f"evt_ch_{tag}_{n}")))
            statuses["processed"] += 1
    for n in range(10):
        customer = dict(fixtures["customer"], id=f"cus_storm_{tag}_{n}")
        plan_events.append(Delivery("stripe", f"stripe:evt_cus_{tag}_{n}", stripe_event(
            "customer.created", customer, event_id=f"evt_cus_{tag}_{n}")))
        statuses["ignored"] += 1

    retell_events = events - len(plan_events)
    started, analyzed = retell_events * 15 // 100, retell_events * 2 // 100
    ended = retell_events - started - analyzed
    now_ms = int(time.time() * 1000)
    calls: dict[str, tuple[int, int]] = {}
    bodies: dict[str, tuple[int, int, int]] = {}
    for n in range(ended):
        call_id = f"call_storm_{tag}_{n:04d}"
        company = company_ids[n % companies] if n < companies else rng.choice(company_ids)
        duration = EDGE_DURATIONS_MS[n] if n < len(EDGE_DURATIONS_MS) else rng.randint(1, 600_000)
        start_ms = now_ms - duration - rng.randint(1_000, 60_000)
        calls[call_id] = (company, call_cents(duration))
        bodies[call_id] = (company, start_ms, duration)
        expected[company] -= call_cents(duration)
        plan_events.append(Delivery("retell", f"retell:call_ended:{call_id}", retell_body(
            examples, "call_ended", call_id, company, start_ms, duration)))
    call_ids = list(calls)
    for event, count in (("call_started", started), ("call_analyzed", analyzed)):
        for call_id in rng.sample(call_ids, count):
            company, start_ms, duration = bodies[call_id]
            plan_events.append(Delivery("retell", f"retell:{event}:{call_id}", retell_body(
                examples, event, call_id, company, start_ms, duration)))
    statuses["processed"] += retell_events
    assert len(plan_events) == events and len({d.event_key for d in plan_events}) == events

    deliveries = [d for d in plan_events for _ in range(rng.choice((2, 3)))]
    rng.shuffle(deliveries)
    return StormPlan(seed, plan_events, deliveries, expected, calls, topup_ids, statuses)


def assert_exact_outcome(services: Services, plan: StormPlan, sidecar: WebhookProcess) -> None:
    """Every event stored once and processed; balances, charges and top-ups exact; the ledger check passes."""
    wait_until(lambda: services.webhooks.backlog() == {} or None, timeout=30,
               what=f"an empty inbox backlog ({plan})")

    def inbox(conn: Any) -> Counter[str]:
        rows = conn.execute(select(webhook_events.c.status, func.count()).group_by(webhook_events.c.status))
        return Counter({status: int(n) for status, n in rows})

    assert services.db.read(inbox) == plan.inbox_statuses, plan

    views = {c: services.balances.get(c) for c in plan.expected_balance}
    assert {c: v.balance.cents for c, v in views.items()} == plan.expected_balance, plan
    assert {c: v.reserved.cents for c, v in views.items()} == dict.fromkeys(plan.expected_balance, 0), plan

    def charges(conn: Any) -> dict[str, tuple[int, int]]:
        rows = conn.execute(select(call_charges.c.call_id, call_charges.c.company_id, call_charges.c.amount_charged))
        return {call_id: (company, cents) for call_id, company, cents in rows}

    assert services.db.read(charges) == plan.calls, plan

    def entries(conn: Any) -> Counter[str]:
        rows = conn.execute(select(ledger.c.type, func.count()).group_by(ledger.c.type))
        return Counter({kind: int(n) for kind, n in rows})

    companies = len(plan.expected_balance)
    assert services.db.read(entries) == Counter(
        {"charge": len(plan.calls), "topup": companies + len(plan.topup_ids)}
    ), plan

    def topup_states(conn: Any) -> Counter[str]:
        rows = conn.execute(select(topups.c.status).where(topups.c.id.in_(plan.topup_ids)))
        return Counter(status for (status,) in rows)

    assert services.db.read(topup_states) == Counter({"succeeded": len(plan.topup_ids)}), plan
    ledger_check(sidecar)
    assert_clean_log(sidecar)


def assert_clean_log(sidecar: WebhookProcess) -> None:
    log = sidecar.log_tail(10**8)
    assert "Traceback" not in log, sidecar.log_tail()
    for secret in (STRIPE_WEBHOOK_SECRET, RETELL_API_KEY, LOCALSTRIPE_KEY, "v1="):
        assert secret not in log, f"the sidecar log shows {secret!r}"


def report(request: pytest.FixtureRequest, label: str, storm: Storm) -> None:
    """Throughput for the closing notes (visible with -rP or -s)."""
    print(f"\n{request.node.name} {label}: {storm.summary()}")


# -- localstripe end to end -----------------------------------------------------------------------


@pytest.fixture
def localstripe_hook(localstripe: LocalStripe) -> Iterator[Callable[[WebhookProcess], str]]:
    """Registers a sidecar with the emulator under a name of this test; points it nowhere afterwards.

    localstripe posts every event to every registered hook, and its hooks outlive the test, so a finished
    test's hook is turned to a dead address: a later sidecar on the same port must not get its events.
    """
    names: list[str] = []

    def register(sidecar: WebhookProcess) -> str:
        name = f"e2e-{uuid.uuid4().hex[:12]}"
        localstripe.register_webhook(name, f"{sidecar.url}/api/stripe/webhook", STRIPE_WEBHOOK_SECRET)
        names.append(name)
        return name

    yield register
    for name in names:
        localstripe.register_webhook(name, DEAD_URL, STRIPE_WEBHOOK_SECRET)


def stripe_events_about(services: Services, object_id: str) -> dict[str, str]:
    """Event type -> inbox status of the stored Stripe events that mention ``object_id``."""
    query = select(webhook_events.c.event_type, webhook_events.c.status, webhook_events.c.payload).where(
        webhook_events.c.provider == "stripe"
    )
    rows = services.db.read(lambda conn: list(conn.execute(query)))
    return {kind: status for kind, status, payload in rows if object_id in payload}


def topup_entries(services: Services, company_id: int) -> list[int]:
    return [e.amount.cents for e in services.balances.history(company_id, types=["topup", "bonus"]).entries]


@pytest.fixture
def stripe_services(private_database_url: str, localstripe: LocalStripe) -> Iterator[Services]:
    gateway = StripeGateway(LOCALSTRIPE_KEY, test_mode=True, api_base=localstripe.url, max_network_retries=0)
    built = open_services(private_database_url, gateway)
    try:
        yield built
    finally:
        built.close()


def test_saved_card_payment_in_localstripe_is_credited_once_by_the_answer_and_its_webhook(
    stripe_services, private_database_url, sidecars, localstripe_hook
):
    sidecar = sidecars(private_database_url).start()
    localstripe_hook(sidecar)
    services = stripe_services
    company = new_company(services, funded="5.00")
    method = create_card(services, CARD_OK)
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")

    outcome = services.stripe.payments.pay_with_saved_method(
        company_id=company.id, amount=eur("50.00"), payment_method_id=method, initiated_by="test",
        idempotency_key=f"e2e-{uuid.uuid4().hex}",
    )
    assert outcome.topup.status == "succeeded"
    intent = outcome.topup.stripe_payment_intent_id
    assert intent

    seen = wait_until(lambda: stripe_events_about(services, intent), timeout=20,
                      what=f"localstripe's events about {intent} in the sidecar's inbox")
    assert seen == {"payment_intent.succeeded": "processed"}, sidecar.log_tail()
    assert services.balances.get(company.id).balance == eur("55.00")
    assert topup_entries(services, company.id) == [5000, 500]
    ledger_check(sidecar)
    assert_clean_log(sidecar)


def test_payment_confirmed_by_the_customer_is_credited_once_by_the_localstripe_webhook_alone(
    stripe_services, private_database_url, sidecars, localstripe_hook, localstripe
):
    sidecar = sidecars(private_database_url).start()
    localstripe_hook(sidecar)
    services = stripe_services
    company = new_company(services, funded="5.00")
    method = create_card(services, CARD_OK)
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    started = services.stripe.payments.create_payment_intent(
        company_id=company.id, amount=eur("30.00"), initiated_by="test", idempotency_key=f"e2e-{uuid.uuid4().hex}"
    )
    intent = started.topup.stripe_payment_intent_id
    assert started.topup.status == "pending" and intent

    # What the customer's browser does with Stripe.js and the client secret: the server hears of it by webhook only.
    http = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(LOCALSTRIPE_KEY, base_addresses={"api": localstripe.url},
                                     http_client=http)
        client.v1.payment_intents.update(intent, {"payment_method": method})
        assert client.v1.payment_intents.confirm(intent).status == "succeeded"
    finally:
        http.close()

    wait_until(lambda: services.topups.get(started.topup.id).status == "succeeded", timeout=20,
               what=f"the webhook to settle top-up {started.topup.id}")
    seen = wait_until(lambda: stripe_events_about(services, intent), timeout=5, what=f"events about {intent}")
    assert seen == {"payment_intent.succeeded": "processed"}
    assert services.balances.get(company.id).balance == eur("35.00")
    assert topup_entries(services, company.id) == [3000, 500]
    ledger_check(sidecar)


# -- storms -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_storm_of_duplicated_shuffled_events_from_16_senders_gives_exact_balances(
    services, private_database_url, sidecars, request
):
    plan = plan_storm(services, seed=4101)
    sidecar = sidecars(private_database_url).start()

    storm = Storm(lambda: sidecar.url, plan.deliveries, senders=16, deadline_seconds=60).run()
    report(request, "storm", storm)

    assert storm.statuses() == Counter({200: len(plan.deliveries)}), (plan, storm.errors())
    assert storm.outcomes() == Counter(
        {**plan.inbox_statuses, "duplicate": len(plan.deliveries) - len(plan.events)}
    ), plan
    assert_exact_outcome(services, plan, sidecar)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_storm_through_the_pymysql_thread_path_gives_the_same_exact_balances(
    services, private_database_url, sidecars, request
):
    """The storm above runs the sidecar's transactions in the event loop (aiomysql, the default on MariaDB);
    ``BILLING_ASYNC_DB_DRIVER=pymysql`` runs them in worker threads, with the same outcome."""
    plan = plan_storm(services, seed=4103)
    sidecar = sidecars(private_database_url, BILLING_ASYNC_DB_DRIVER="pymysql").start()

    storm = Storm(lambda: sidecar.url, plan.deliveries, senders=16, deadline_seconds=60).run()
    report(request, "storm, pymysql threads", storm)

    assert storm.statuses() == Counter({200: len(plan.deliveries)}), (plan, storm.errors())
    assert_exact_outcome(services, plan, sidecar)


@pytest.mark.slow
def test_sidecar_killed_mid_storm_loses_and_doubles_nothing_once_unacknowledged_deliveries_are_resent(
    services, private_database_url, sidecars, request
):
    plan = plan_storm(services, seed=4102)
    sidecar = sidecars(private_database_url).start()
    first_pid = sidecar.pid

    storm = Storm(lambda: sidecar.url, plan.deliveries, senders=16, retry=False, deadline_seconds=60).start()
    assert storm.wait_for_acks(len(plan.deliveries) * 2 // 5, timeout=60), storm.errors()
    assert sidecar.kill() == -signal.SIGKILL
    storm.join()
    report(request, "until the kill", storm)
    unacked = storm.unacked
    assert 0 < len(unacked) < len(plan.deliveries)
    assert set(storm.statuses()) <= {200, None}, storm.errors()  # refused or cut off, never refused by the app

    sidecar.start()
    assert sidecar.pid != first_pid
    resend = Storm(lambda: sidecar.url, [plan.deliveries[i] for i in unacked], senders=16, retry=True,
                   deadline_seconds=60).run()
    report(request, "resent after the restart", resend)
    assert resend.final_statuses() == Counter({200: len(unacked)}), resend.errors()
    assert_exact_outcome(services, plan, sidecar)


@pytest.mark.slow
def test_mariadb_outage_mid_storm_answers_503_then_recovers_without_a_sidecar_restart(
    tmp_path_factory, sidecars, request
):
    server = MariaDBServer(tmp_path_factory.mktemp("mdb-outage")).start()
    built: Services | None = None
    try:
        url = server.create_database("billing_outage")
        migrate.upgrade(url)
        built = open_services(url)
        plan = plan_storm(built, seed=4103)
        sidecar = sidecars(url).start()
        pid = sidecar.pid
        assert sidecar.get("/readyz").status_code == 200

        storm = Storm(lambda: sidecar.url, plan.deliveries, senders=16, retry=True, deadline_seconds=120).start()
        assert storm.wait_for_acks(len(plan.deliveries) * 3 // 10, timeout=60), storm.errors()
        port = server.port
        down_at = time.monotonic()
        server.stop()
        ready_while_down = []
        while time.monotonic() < down_at + 10:
            ready_while_down.append(sidecar.get("/readyz").status_code)
            time.sleep(0.5)
        acked_while_down = storm.acked_count
        server.launch()
        assert server.port == port, "the MariaDB server came back on another port"
        up_at = time.monotonic()
        wait_until(lambda: sidecar.get("/readyz").status_code == 200, timeout=30, what="/readyz to answer 200")
        storm.join()
        report(request, "storm through the outage", storm)

        assert set(ready_while_down) == {503}, ready_while_down
        refused = [a for a in storm.attempts if a.status == 503]
        assert refused, "no sender saw a 503 while the database was down"
        assert all(down_at - 5 <= a.started <= up_at + 5 for a in refused), "503s outside the outage"
        assert set(storm.statuses()) == {200, 503}, storm.errors()
        assert storm.final_statuses() == Counter({200: len(plan.deliveries)}), storm.errors()
        assert sidecar.pid == pid and sidecar.starts == 1, "the sidecar was restarted"
        assert acked_while_down < len(plan.deliveries), "the storm was over before the outage"
        assert_exact_outcome(built, plan, sidecar)
    finally:
        if built is not None:
            built.close()
        server.stop()
        shutil.rmtree(server.base_dir, ignore_errors=True)


def test_sidecar_answers_503_within_two_and_a_half_seconds_while_mariadb_cannot_be_reached(sidecars, request):
    url = f"mysql+pymysql://root@127.0.0.1:{free_port()}/billing_unreachable"  # nothing listens there
    sidecar = sidecars(url).start()
    examples = retell_examples()
    start_ms = int(time.time() * 1000) - 120_000
    deliveries = [
        Delivery("retell", f"retell:call_ended:unreachable-{n}",
                 retell_body(examples, "call_ended", f"unreachable-{n}", 1, start_ms, 60_000))
        for n in range(32)
    ]
    storm = Storm(lambda: sidecar.url, deliveries, senders=32, retry=False, deadline_seconds=60).run()
    report(request, "database unreachable", storm)
    assert storm.final_statuses() == Counter({503: 32}), storm.errors()
    slowest = max(a.seconds for a in storm.attempts)
    assert slowest < 2.5, f"the slowest 503 took {slowest:.1f} s"
