"""The inbox's worker side: retries with backoff, dead letters, replay, concurrent workers, reports and the CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import call_charges, webhook_events
from billing_core.errors import Conflict, InvalidInput, NotFound
from billing_core.services.webhooks.inbox import (
    HandlerResult,
    InboundEvent,
    InboxSettings,
    RetryLater,
    WebhookInbox,
)
from billing_core.services.webhooks.retell_events import RetellEventHandler, event_identity
from tests.conftest import Clock, make_settings
from tests.integration.helpers import assert_ledger_ok, new_company
from tests.integration.webhook_helpers import retell_call


class CountingHandler:
    """Counts its calls per event id; raises ``errors[event_id]`` (or ``error``) while one is set."""

    def __init__(self, delegate: Any = None) -> None:
        self.calls: Counter[str] = Counter()
        self.errors: dict[str, Exception] = {}
        self.error: Exception | None = None
        self._delegate = delegate
        self._lock = threading.Lock()

    def __call__(self, conn: Connection, event: InboundEvent) -> HandlerResult:
        with self._lock:
            self.calls[event.event_id] += 1
        error = self.errors.get(event.event_id, self.error)
        if error is not None:
            raise error
        if self._delegate is not None:
            return self._delegate(conn, event)
        return HandlerResult("processed", "ok")


def retell_event(event: str, call_id: str, company_id: int | None = 1, **kwargs: Any) -> tuple[InboundEvent, bytes]:
    raw = retell_call(event, call_id, company_id, **kwargs)
    data = json.loads(raw)
    event_id, event_type = event_identity(data)
    return InboundEvent("retell", event_id, event_type, data), raw


def cents_for(seconds: int, rate: str = "0.42") -> int:
    return int((Decimal(seconds) * Decimal(rate) / 60 * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- retries, backoff, dead letters, replay ------------------------------------------------------------


def test_crashing_handler_backs_off_exponentially_goes_dead_after_max_attempts_and_replay_recovers(
    services: Services, clock: Clock, caplog: pytest.LogCaptureFixture
):
    handler = CountingHandler()
    handler.error = RuntimeError("upstream exploded")
    inbox = WebhookInbox(services.ctx, {"retell": handler}, InboxSettings(max_attempts=3))
    event, raw = retell_event("call_ended", "call-crash")
    received_at = clock.now

    with caplog.at_level(logging.ERROR, logger="billing_core.services.webhooks.inbox"):
        first = inbox.receive(event, raw)

    assert (first.status, first.note) == ("failed", "RuntimeError")
    assert [r.getMessage() for r in caplog.records] == ["webhook handler failed"]
    [row] = inbox.events()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, received_at + timedelta(seconds=2))

    clock.advance(seconds=1)
    assert inbox.process_due() == []  # not due yet
    clock.now = row.next_attempt_at
    [second] = inbox.process_due()
    [row] = inbox.events()
    assert second.status == "failed"
    assert (row.attempts, row.next_attempt_at) == (2, clock.now + timedelta(seconds=4))

    clock.now = row.next_attempt_at
    [third] = inbox.process_due()
    assert third.status == "dead"
    clock.advance(days=1)
    assert inbox.process_due() == []  # dead waits for an operator
    [dead] = inbox.events(statuses=("dead",))
    assert (dead.attempts, dead.last_error, dead.processed_at) == (3, "RuntimeError", None)
    assert handler.calls == {event.event_id: 3}
    assert inbox.backlog() == {"dead": 1}

    handler.error = None
    [replayed] = inbox.replay([dead.id])

    assert (replayed.event_id, replayed.status) == (event.event_id, "processed")
    assert handler.calls == {event.event_id: 4}
    [done] = inbox.events(statuses=("processed",))
    assert (done.attempts, done.last_error, done.processed_at, done.received_at) == (1, None, clock.now, received_at)
    assert inbox.backlog() == {}
    with pytest.raises(NotFound):
        inbox.replay([dead.id])  # nothing dead or failed under that id any more
    assert inbox.replay() == []


def test_retry_delay_doubles_up_to_the_configured_maximum(services: Services, clock: Clock):
    handler = CountingHandler()
    handler.error = RuntimeError("still broken")
    policy = InboxSettings(max_attempts=6, base_delay=timedelta(seconds=2), max_delay=timedelta(seconds=5))
    inbox = WebhookInbox(services.ctx, {"retell": handler}, policy)
    inbox.receive(*retell_event("call_ended", "call-capped"))

    delays, statuses = [], []
    while True:
        [row] = inbox.events(statuses=("failed", "dead"))
        statuses.append(row.status)
        if row.status == "dead":
            break
        delays.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at
        inbox.process_due()

    assert delays == [2, 4, 5, 5, 5]
    assert statuses == ["failed"] * 5 + ["dead"]


def test_errors_no_retry_can_fix_are_dead_at_once_and_waiting_ones_are_retried(services: Services):
    handler = CountingHandler()
    inbox = WebhookInbox(services.ctx, {"retell": handler})
    cases = {
        "bad": (InvalidInput("call.start_timestamp must be a positive integer"), "dead"),
        "unknown": (NotFound("no company for Retell agent 'agent_q'"), "dead"),
        "contradiction": (Conflict("call charged with different data"), "dead"),
        "early": (RetryLater("the payment has not settled"), "failed"),
        "crash": (ZeroDivisionError("division by zero"), "failed"),
    }
    outcomes = {}
    for name, (error, _) in cases.items():
        event, raw = retell_event("call_ended", f"call-{name}")
        handler.errors[event.event_id] = error
        outcomes[name] = inbox.receive(event, raw)

    assert {name: o.status for name, o in outcomes.items()} == {name: status for name, (_, status) in cases.items()}
    assert outcomes["early"].note == "waiting: the payment has not settled"
    assert outcomes["unknown"].note == "NotFound: no company for Retell agent 'agent_q'"
    assert inbox.backlog() == {"dead": 3, "failed": 2}


def test_replaying_one_dead_event_processes_that_event_even_when_other_events_are_overdue(
    services: Services, clock: Clock
):
    handler = CountingHandler()
    inbox = WebhookInbox(services.ctx, {"retell": handler})
    waiting, waiting_raw = retell_event("call_ended", "call-waiting")
    handler.errors[waiting.event_id] = RetryLater("not yet")
    inbox.receive(waiting, waiting_raw)
    broken, broken_raw = retell_event("call_ended", "call-broken")
    handler.errors[broken.event_id] = NotFound("company 7 does not exist")
    inbox.receive(broken, broken_raw)
    clock.advance(minutes=5)  # no worker ran: the waiting event is overdue
    del handler.errors[broken.event_id]
    [dead] = inbox.events(statuses=("dead",))

    outcomes = inbox.replay([dead.id])

    assert [(o.event_id, o.status) for o in outcomes] == [(broken.event_id, "processed")]


# -- several workers ---------------------------------------------------------------------------------


def test_concurrent_workers_process_each_of_200_pending_events_exactly_once(services: Services, clock: Clock):
    firms = [new_company(services, name=f"Firma {n}", funded="100.00") for n in range(2)]
    start_ms = int((clock.now - timedelta(hours=1)).timestamp() * 1000)
    rows, expected = [], Counter[int]()
    for n in range(200):
        company = firms[n % 2]
        seconds = 30 + n
        raw = retell_call("call_ended", f"call-{n:03d}", company.id, seconds=seconds, start_ms=start_ms + n * 1000)
        rows.append(
            {
                "provider": "retell",
                "event_id": f"call_ended:call-{n:03d}",
                "event_type": "call_ended",
                "payload": raw.decode(),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": clock.now,
                "received_at": clock.now,
            }
        )
        expected[company.id] += cents_for(seconds)
    services.db.write(lambda conn: conn.execute(insert(webhook_events), rows))
    retell = RetellEventHandler(services.charging, max_call_seconds=services.ctx.settings.max_call_seconds)
    handler = CountingHandler(delegate=retell)
    inbox = WebhookInbox(services.ctx, {"retell": handler})
    workers = 4
    start = threading.Barrier(workers)

    def worker() -> list[Any]:
        start.wait()
        done = []
        while batch := inbox.process_due(limit=5):
            done.extend(batch)
        return done

    with ThreadPoolExecutor(workers) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(worker) for _ in range(workers)]]

    outcomes = [o for result in results for o in result]
    assert sorted(o.event_id for o in outcomes) == sorted(r["event_id"] for r in rows)
    assert {o.status for o in outcomes} == {"processed"}
    assert len(handler.calls) == 200 and set(handler.calls.values()) == {1}
    assert inbox.backlog() == {}
    charged = services.db.read(lambda conn: conn.execute(select(call_charges.c.call_id)).scalars().all())
    assert len(charged) == 200
    for company in firms:
        assert services.balances.get(company.id).balance.cents == 10000 - expected[company.id]
    assert_ledger_ok(services)


@pytest.mark.mariadb_only
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_a_second_worker_claims_another_due_event_while_the_first_is_busy(services: Services, clock: Clock):
    rows = [
        {
            "provider": "retell", "event_id": f"e{n}", "event_type": "call_ended", "payload": "{}",
            "status": "pending", "attempts": 0, "next_attempt_at": clock.now, "received_at": clock.now,
        }
        for n in range(3)
    ]
    services.db.write(lambda conn: conn.execute(insert(webhook_events), rows))
    busy, release = threading.Event(), threading.Event()

    def slow_first(conn: Connection, event: InboundEvent) -> HandlerResult:
        if event.event_id == "e0":
            busy.set()
            release.wait(10)
        return HandlerResult("processed")

    inbox = WebhookInbox(services.ctx, {"retell": slow_first})
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(inbox.process_due, limit=1)
        assert busy.wait(10)
        try:
            second = inbox.process_due(limit=1)
        finally:
            release.set()
        assert [o.event_id for o in first.result(timeout=10)] == ["e0"]

    assert [o.event_id for o in second] == ["e1"]


# -- reports -----------------------------------------------------------------------------------------


def test_processing_times_and_backlog_report_what_happened(services: Services, clock: Clock):
    handler = CountingHandler()
    inbox = WebhookInbox(services.ctx, {"retell": handler, "stripe": handler})
    start = clock.now
    clock.now = start - timedelta(days=2)
    inbox.receive(*retell_event("call_ended", "call-old"))  # before the window
    clock.now = start

    quick, quick_raw = retell_event("call_ended", "call-quick")
    slow, slow_raw = retell_event("call_ended", "call-slow")
    started, started_raw = retell_event("call_started", "call-quick")
    broken = InboundEvent("stripe", "evt_broken", "charge.refunded", {"id": "evt_broken"})
    handler.errors[slow.event_id] = RetryLater("not yet")
    handler.errors[broken.event_id] = Conflict("amounts disagree")
    for event, raw in ((quick, quick_raw), (slow, slow_raw), (started, started_raw), (broken, b"{}")):
        inbox.receive(event, raw)

    assert inbox.backlog() == {"failed": 1, "dead": 1}
    assert inbox.processing_times(since=start - timedelta(hours=1)) == [
        {"provider": "retell", "event_type": "call_ended", "count": 1, "avg_seconds": 0.0, "max_seconds": 0.0},
        {"provider": "retell", "event_type": "call_started", "count": 1, "avg_seconds": 0.0, "max_seconds": 0.0},
    ]

    del handler.errors[slow.event_id]
    clock.advance(seconds=3)
    [retried] = inbox.process_due()

    assert (retried.event_id, retried.status) == (slow.event_id, "processed")
    assert (retried.processed_at - retried.received_at) == timedelta(seconds=3)
    assert inbox.backlog() == {"dead": 1}
    assert inbox.processing_times(since=start - timedelta(hours=1)) == [
        {"provider": "retell", "event_type": "call_ended", "count": 2, "avg_seconds": 1.5, "max_seconds": 3.0},
        {"provider": "retell", "event_type": "call_started", "count": 1, "avg_seconds": 0.0, "max_seconds": 0.0},
    ]
    everything = inbox.processing_times(since=start - timedelta(days=3))
    assert [(r["event_type"], r["count"]) for r in everything] == [("call_ended", 3), ("call_started", 1)]


# -- the operator's commands, as subprocesses ------------------------------------------------------------


def billing_script() -> str:
    script = Path(sys.executable).parent / "billing"
    if script.exists():
        return str(script)
    found = shutil.which("billing")
    assert found is not None, "the billing console script is not installed beside this Python"
    return found


class Billing:
    """``billing`` with only DATABASE_URL configured, run from an empty directory (no stray .env)."""

    def __init__(self, database_url: str, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith(("BILLING_", "STRIPE_", "RETELL_", "DATABASE_", "SMTP_"))
        }
        self.env["DATABASE_URL"] = database_url

    def __call__(self, *args: str, code: int = 0) -> str:
        done = subprocess.run(
            [billing_script(), *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60,
            check=False,
        )
        assert done.returncode == code, f"billing {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code))


def test_operator_lists_dead_events_adds_the_missing_company_and_agent_and_replays_them(
    sqlite_template: Path, tmp_path: Path
):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    shutil.copy(sqlite_template, tmp_path / "billing.db")
    billing = Billing(url, tmp_path)
    built = build_services(make_settings(url))
    try:
        calls = {
            "a": retell_event("call_ended", "call-a", 1, seconds=60),
            "b": retell_event("call_ended", "call-b", 1, seconds=120),
            "c": retell_event("call_ended", "call-c", None, seconds=90, agent_id="agent_z"),
        }
        assert [built.webhooks.receive(*c).status for c in calls.values()] == ["dead", "dead", "dead"]

        failed = sorted(billing.json("webhooks", "failed"), key=lambda e: e["event_id"])  # listed newest first
        assert [(e["event_id"], e["status"], e["attempts"]) for e in failed] == [
            ("call_ended:call-a", "dead", 1), ("call_ended:call-b", "dead", 1), ("call_ended:call-c", "dead", 1)
        ]
        assert failed[0]["last_error"] == "CompanyNotFound: company 1 does not exist"
        assert failed[2]["last_error"].startswith("NotFound: no company for Retell agent 'agent_z'")
        ids = {e["event_id"].removeprefix("call_ended:call-"): e["id"] for e in failed}

        still = billing.json("webhooks", "replay", str(ids["a"]), code=1)  # the company is still missing
        assert [r["status"] for r in still] == ["dead"]

        company = billing.json("companies", "add", "--name", "Praxis Weber", "--email", "praxis@example.com")
        assert company["id"] == 1
        [replayed] = billing.json("webhooks", "replay", str(ids["a"]))
        assert replayed == {
            "event_id": "call_ended:call-a",
            "event_type": "call_ended",
            "status": "processed",
            "note": "charged 0.42 EUR (balance below zero)",
        }
        assert "calls of agent_z bill company 1" in billing("agents", "add", "agent_z", "--company", "1")
        rest = billing.json("webhooks", "replay", "--all-failed")
        assert sorted((r["event_id"], r["status"]) for r in rest) == [
            ("call_ended:call-b", "processed"), ("call_ended:call-c", "processed")
        ]

        stats = billing.json("webhooks", "stats")
        assert stats["backlog"] == {}
        [ended] = stats["processing_times"]
        assert (ended["provider"], ended["event_type"], ended["count"]) == ("retell", "call_ended", 3)
        assert ended["max_seconds"] >= ended["avg_seconds"] >= 0

        fresh = built.webhooks.receive(*retell_event("call_ended", "call-d", None, seconds=30, agent_id="agent_z"))
        assert fresh.status == "processed"
        charged = built.db.read(
            lambda conn: sorted(conn.execute(select(call_charges.c.call_id, call_charges.c.company_id)).all())
        )
        assert charged == [("call-a", 1), ("call-b", 1), ("call-c", 1), ("call-d", 1)]
        balance = -(cents_for(60) + cents_for(120) + cents_for(90) + cents_for(30))
        assert built.balances.get(1).balance.cents == balance == -210
        assert_ledger_ok(built)
    finally:
        built.close()
