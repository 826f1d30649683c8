"""A deadlock inside a webhook handler on MariaDB: the whole event is retried, never recorded as failed.

A deadlock (on Galera also a certification failure or a brute-force abort by another node's write set)
rolls back the whole transaction, savepoints included. The inbox must hand it to the transaction runner
as it is, not try to roll back to the handler's savepoint first (which no longer exists).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, insert, select, update

from billing_core.bootstrap import Services
from billing_core.db.tables import audit_log, call_charges, companies, webhook_events
from billing_core.services.webhooks.inbox import HandlerResult, InboundEvent, WebhookInbox
from billing_core.services.webhooks.retell_events import RetellEventHandler
from tests.conftest import Clock
from tests.integration.helpers import assert_ledger_ok, new_company
from tests.integration.webhook_helpers import retell_call

pytestmark = pytest.mark.mariadb_only


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_a_deadlock_inside_the_handler_runs_the_whole_event_again_and_charges_once(services: Services, clock: Clock):
    firm, other = new_company(services, funded="20.00"), new_company(services, name="Praxis Zwei")
    received = clock.now - timedelta(minutes=1)
    start_ms = int((received - timedelta(hours=1)).timestamp() * 1000)
    raw = retell_call("call_ended", "call-deadlocked", firm.id, seconds=90, start_ms=start_ms)
    services.db.write(
        lambda conn: conn.execute(
            insert(webhook_events),
            {"provider": "retell", "event_id": "call_ended:call-deadlocked", "event_type": "call_ended",
             "payload": raw.decode(), "status": "pending", "attempts": 0, "next_attempt_at": received,
             "received_at": received},
        )
    )
    charge = RetellEventHandler(services.charging, max_call_seconds=services.ctx.settings.max_call_seconds)
    calls: list[int] = []
    rival_done = threading.Event()

    rival_errors: list[BaseException] = []

    def rival() -> None:
        try:
            run_rival()
        except BaseException as error:  # reported by the assertion below
            rival_errors.append(error)

    def run_rival() -> None:
        """Writes a lot (so InnoDB picks the handler as the victim), locks ``other``, then waits for ``firm``."""
        with services.db.engine.connect() as conn:
            conn.begin()
            conn.execute(insert(audit_log), [
                {"actor": "rival", "action": "test.rival", "entity_type": "test", "details": "{}",
                 "created_at": datetime.now(UTC)} for _ in range(200)
            ])
            conn.execute(update(companies).where(companies.c.id == other.id).values(name="Praxis Zwei"))
            conn.execute(update(companies).where(companies.c.id == firm.id).values(name="Praxis Weber"))
            conn.commit()
        rival_done.set()

    def handler(conn: Connection, event: InboundEvent) -> HandlerResult:
        calls.append(1)
        if len(calls) == 1:  # the first attempt walks into a deadlock with the rival
            conn.execute(update(companies).where(companies.c.id == firm.id).values(name="Praxis Weber"))
            threading.Thread(target=rival, daemon=True).start()
            time.sleep(1)  # the rival now holds ``other`` and waits for ``firm``
            conn.execute(update(companies).where(companies.c.id == other.id).values(name="Praxis Zwei"))
        return charge(conn, event)

    outcomes = WebhookInbox(services.ctx, {"retell": handler}).process_due()

    assert rival_done.wait(30), rival_errors
    assert len(calls) == 2  # the deadlocked attempt, then the whole event once more
    assert [(o.event_id, o.status) for o in outcomes] == [("call_ended:call-deadlocked", "processed")]
    charges = services.db.read(lambda conn: conn.execute(select(call_charges.c.amount_charged)).scalars().all())
    assert charges == [63]
    assert services.balances.get(firm.id).balance.cents == 2000 - 63
    assert_ledger_ok(services)
