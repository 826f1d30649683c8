"""The system scaled out on a 3-node Galera cluster, with one node SIGKILLed mid-storm.

Two ``billing webhooks`` sidecars and two ``billing worker`` processes run against different nodes (the
sidecars with their in-process worker switched off). Sixteen senders spread Retell call events and Stripe
payment events, each delivered two or three times and shuffled, over both sidecars and retry on 5xx as the
providers do. While the storm runs, the node under one sidecar and one worker is killed with SIGKILL and
started again; it rejoins by IST (or SST). At the end every node must show the same exact result.

A ``billing mcp --transport http`` server runs beside them, with a token from ``billing tokens create``, and
an MCP client (the SDK's streamable HTTP client) makes read calls and balance adjustments through it during
the storm: each adjustment has an idempotency key, is confirmed in two steps, and is sent again after
timeouts and errors, some on purpose (see :mod:`tests.support.mcp_storm`); half of them run while the node is
down and rejoining. Every node must show each adjustment exactly once.

The MCP server sits on a surviving node (node 3, beside the second worker), not on the killed one. A replica
whose only node is down can only answer errors until the node is back, and the killed node's sidecar and
worker already show that path (503s, retries, a restart). On a surviving node the MCP calls still meet what
the kill does to the whole cluster: writes stall until the dead member is evicted, certification conflicts
with the charges the sidecars post on the other nodes, and answers that are lost on purpose while money
moves. Waiting out a rejoin whose length depends on the machine's load would add minutes and flakiness, and
prove nothing the sidecar on the killed node does not.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select, text

from billing_core.bootstrap import Services
from billing_core.db.tables import (
    call_charges,
    invoices,
    job_schedule,
    ledger,
    statistics_journal,
    statistics_rollup_state,
    statistics_rollups,
    topups,
    webhook_events,
)
from tests.e2e.test_webhook_process import (
    StormPlan,
    assert_clean_log,
    open_services,
    plan_storm,
    report,
    wait_until,
)
from tests.integration.webhook_helpers import RETELL_API_KEY, STRIPE_WEBHOOK_SECRET
from tests.support.galera import GaleraCluster
from tests.support.localstripe import LocalStripe
from tests.support.mcp_process import McpHttpProcess, mcp_env
from tests.support.mcp_storm import McpStorm
from tests.support.processes import WebhookProcess, find_billing, run_billing, sidecar_env
from tests.support.webhook_storm import Storm

pytestmark = [pytest.mark.mariadb_only, pytest.mark.slow]

SIDECAR_NODES = (0, 1)
WORKER_NODES = (1, 2)
KILLED_NODE = 1
MCP_NODE = 2  # a surviving node: see the module's docstring


@dataclass
class WorkerProcess:
    """``billing worker`` as a subprocess, its output in a log file of its own."""

    workdir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "worker.log"

    def start(self) -> WorkerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [find_billing(), "worker"], cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=30)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def replicas(tmp_path: Path, galera_urls: list[str], localstripe: LocalStripe) -> Iterator[dict[str, list[Any]]]:
    """The sidecars and workers (not started), each against its own node; stopped afterwards."""

    def env(node: int) -> dict[str, str]:
        return sidecar_env(galera_urls[node], stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
                           retell_api_key=RETELL_API_KEY, stripe_api_base=localstripe.url,
                           BILLING_WEBHOOK_WORKER="false")

    sidecars = [WebhookProcess(tmp_path / f"sidecar-node{n + 1}", env(n)) for n in SIDECAR_NODES]
    # the statistics job every 2 s: on a cluster it must keep nothing (no triggers, no journal, no roll-ups)
    workers = [
        WorkerProcess(tmp_path / f"worker-node{n + 1}", dict(env(n), BILLING_JOB_STATISTICS_ROLLUPS_SECONDS="2"))
        for n in WORKER_NODES
    ]
    # No four-eyes limits in the way (the storm's adjustments are small; re-sent ones count again today),
    # and no rate limit: the client retries.
    mcp = McpHttpProcess(
        tmp_path / f"mcp-node{MCP_NODE + 1}",
        mcp_env(DATABASE_URL=galera_urls[MCP_NODE], BILLING_MCP_DAILY_LIMIT="1000000.00",
                BILLING_MCP_RATE_LIMIT="100000", BILLING_MCP_CONFIRMATION="token"),
    )
    yield {"sidecars": sidecars, "workers": workers, "mcp": [mcp]}
    for process in [*sidecars, *workers, mcp]:
        process.stop()


def give_buyer_data(services: Services, plan: StormPlan) -> None:
    """Full invoice addresses, so every credited Stripe payment gets its invoice number in the storm."""
    for n, company_id in enumerate(plan.expected_balance):
        services.companies.set(company_id, actor="test", address_line1=f"Hauptstraße {n + 1}", postal_code="10115",
                               city="Berlin", country="DE")


def assert_exact_on_node(
    services: Services, plan: StormPlan, adjusted: dict[str, tuple[int, int]], env: dict[str, str], cwd: Path
) -> None:
    """One node's view: every event processed once, every MCP adjustment (key -> company, cents) booked once,
    balances and charges exact, invoices gap-free."""
    wait_until(lambda: services.webhooks.backlog() == {} or None, timeout=60, what=f"an empty backlog ({plan})")

    def inbox(conn: Any) -> Counter[str]:
        rows = conn.execute(select(webhook_events.c.status, func.count()).group_by(webhook_events.c.status))
        return Counter({status: int(n) for status, n in rows})

    assert services.db.read(inbox) == plan.inbox_statuses, plan

    expected = Counter(plan.expected_balance)
    for company, cents in adjusted.values():
        expected[company] += cents
    views = {c: services.balances.get(c) for c in plan.expected_balance}
    assert {c: v.balance.cents for c, v in views.items()} == dict(expected), plan
    assert {c: v.reserved.cents for c, v in views.items()} == dict.fromkeys(plan.expected_balance, 0), plan

    def charges(conn: Any) -> dict[str, tuple[int, int]]:
        rows = conn.execute(select(call_charges.c.call_id, call_charges.c.company_id, call_charges.c.amount_charged))
        return {call_id: (company, cents) for call_id, company, cents in rows}

    assert services.db.read(charges) == plan.calls, plan

    def entries(conn: Any) -> Counter[tuple[str, str | None]]:
        rows = conn.execute(select(ledger.c.type, ledger.c.reference_id))
        return Counter((kind, reference) for kind, reference in rows)

    per_reference = services.db.read(entries)
    assert {call: per_reference[("charge", call)] for call in plan.calls} == dict.fromkeys(plan.calls, 1)
    assert sum(n for (kind, _), n in per_reference.items() if kind == "charge") == len(plan.calls)
    assert sum(n for (kind, _), n in per_reference.items() if kind == "topup") == (
        len(plan.expected_balance) + len(plan.topup_ids)
    )

    def adjustments(conn: Any) -> list[tuple[int, int]]:
        rows = conn.execute(select(ledger.c.company_id, ledger.c.amount).where(ledger.c.type == "adjustment"))
        return sorted((company, cents) for company, cents in rows)

    assert services.db.read(adjustments) == sorted(adjusted.values())  # each exactly once

    def topup_states(conn: Any) -> Counter[str]:
        rows = conn.execute(select(topups.c.status).where(topups.c.id.in_(plan.topup_ids)))
        return Counter(status for (status,) in rows)

    assert services.db.read(topup_states) == Counter({"succeeded": len(plan.topup_ids)}), plan

    def invoice_rows(conn: Any) -> list[tuple[str, int]]:
        return list(conn.execute(select(invoices.c.number, invoices.c.topup_id).where(invoices.c.kind == "invoice")))

    rows = services.db.read(invoice_rows)
    assert sorted(topup for _, topup in rows) == sorted(plan.topup_ids)  # one invoice per credited payment
    numbers = sorted(int(re.sub(r"\D", "", number.rsplit("-", 1)[-1])) for number, _ in rows)
    assert numbers == list(range(1, len(plan.topup_ids) + 1)), numbers  # no gap, no duplicate

    done = run_billing("ledger", "check", env=env, cwd=cwd)
    assert done.returncode == 0, f"billing ledger check -> {done.returncode}\n{done.stdout}{done.stderr}"


def assert_no_statistics_journal_on_node(services: Services) -> None:
    """The workers ran the statistics job on the cluster, and it kept nothing: no triggers there (migration 0011)."""

    def state(conn: Any) -> tuple[Any, ...]:
        job = conn.execute(
            select(job_schedule.c.last_finished_at, job_schedule.c.last_error).where(
                job_schedule.c.name == "statistics_rollups"
            )
        ).one()
        triggers = conn.execute(
            text(
                "SELECT COUNT(*) FROM information_schema.TRIGGERS "
                "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE 'trg_statistics_%'"
            )
        ).scalar_one()
        rows = [
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (statistics_journal, statistics_rollups, statistics_rollup_state)
        ]
        return job.last_finished_at is not None, job.last_error, triggers, rows

    assert services.db.read(state) == (True, None, 0, [0, 0, 0])


def test_storm_over_two_sidecars_and_two_workers_on_galera_survives_a_node_killed_and_rejoining(
    galera_cluster: GaleraCluster, galera_urls: list[str], replicas, tmp_path, request
):
    services = [open_services(url) for url in galera_urls]
    try:
        plan = plan_storm(services[0], seed=4201, events=600, companies=12)
        give_buyer_data(services[0], plan)
        sidecars: list[WebhookProcess] = replicas["sidecars"]
        workers: list[WorkerProcess] = replicas["workers"]
        for sidecar in sidecars:
            sidecar.start()
        for worker in workers:
            worker.start()
        mcp: McpHttpProcess = replicas["mcp"][0]
        mcp.start()
        token = mcp.create_token("storm-assistant", "billing:read,billing:adjust")
        assistant = McpStorm(f"{mcp.url}/mcp", token, sorted(plan.expected_balance), adjustments=24, seed=4201)
        spread = random.Random(4201)

        storm = Storm(lambda: spread.choice(sidecars).url, plan.deliveries, senders=16, retry=True,
                      deadline_seconds=150).start()
        assistant.start()
        assert storm.wait_for_acks(len(plan.deliveries) // 4, timeout=90), storm.errors()
        node = galera_cluster.nodes[KILLED_NODE]
        node.kill()
        assistant.halfway.set()
        acked_at_kill = storm.acked_count
        galera_cluster.wait_size(len(galera_cluster.nodes) - 1, timeout=60)
        transfer = node.rejoin()
        galera_cluster.wait_size(len(galera_cluster.nodes), timeout=60)
        storm.join()
        assistant.join()
        report(request, f"galera storm with {node.name} killed (rejoined by {transfer})", storm)
        print(f"MCP client on node {MCP_NODE + 1}: {assistant.summary()}")

        assert acked_at_kill < len(plan.deliveries), "the storm was over before the node was killed"
        assert storm.final_statuses() == Counter({200: len(plan.deliveries)}), storm.errors()
        assert set(storm.statuses()) <= {200, 503, None}, storm.errors()  # never a 500
        assert all(worker.alive() for worker in workers), [w.log_text()[-3000:] for w in workers]
        assert len(set(assistant.entries.values())) == len(assistant.plan), assistant.summary()
        adjusted = {a.key: (a.company_id, a.cents) for a in assistant.plan}
        for n, built in enumerate(services):
            env = dict(sidecars[0].env, DATABASE_URL=galera_urls[n])
            assert_exact_on_node(built, plan, adjusted, env, tmp_path)
            assert_no_statistics_journal_on_node(built)
        for sidecar in sidecars:
            assert_clean_log(sidecar)
        for worker in workers:
            assert "Traceback" not in worker.log_text(), worker.log_text()[-3000:]
        assert "Traceback" not in mcp.log_tail(1_000_000), mcp.log_tail()
    finally:
        for built in services:
            built.close()
