"""One classification of webhook failures (retry may help / never will), descriptions without data,
Stripe objects settled only when they match what we stored, and the ledger check's view of ``reserved``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import DataError, OperationalError

from billing_core.bootstrap import Services
from billing_core.db.tables import balances, notifications, webhook_events
from billing_core.errors import DatabaseRejected, DatabaseUnavailable, InvalidPayload, StripeUnavailable
from billing_core.money import Money
from billing_core.services.webhooks.inbox import HandlerResult, InboundEvent, RetryLater, WebhookInbox
from tests.integration.helpers import new_company
from tests.integration.test_stripe_events import (
    checkout_session,
    deliver,
    money,
    payment_intent,
    pending_topup,
    stored,
)

PHONE = "+4915123456789"


class Raising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, conn: Connection, event: InboundEvent) -> HandlerResult:
        raise self.error


def driver_error(kind: type[DataError] | type[OperationalError], code: int) -> Any:
    orig = Exception(code, f"Data too long for column 'caller_number' at row 1: '{PHONE}'")
    return kind(f"INSERT INTO call_charges (caller_number) VALUES ('{PHONE}')", {"caller_number": PHONE}, orig)


def receive(services: Services, error: BaseException, event_id: str) -> Any:
    inbox = WebhookInbox(services.ctx, {"retell": Raising(error)})
    raw = json.dumps({"event": "call_ended", "call": {"call_id": "c1", "from_number": PHONE}}).encode()
    return inbox.receive(InboundEvent("retell", event_id, "call_ended", json.loads(raw)), raw)


@pytest.mark.parametrize(
    ("error", "status", "described"),
    [
        (ValueError(f"invalid literal for int(): {PHONE}"), "dead", "ValueError"),
        # the typed boundary reads an OverflowError as SQLite refusing an integer; on MariaDB it stays itself
        (OverflowError(PHONE), "dead", ("OverflowError", "DatabaseRejected (database_rejected)")),
        (KeyError(PHONE), "dead", "KeyError"),
        (AttributeError(PHONE), "dead", "AttributeError"),
        (InvalidPayload("invalid payload: call.duration_ms: greater_than_equal"), "dead", "InvalidPayload: invalid"),
        (DatabaseRejected(f"Data too long: {PHONE}"), "dead", "DatabaseRejected (database_rejected)"),
        (driver_error(DataError, 1406), "dead", "DatabaseRejected (database_rejected)"),
        (StripeUnavailable("Stripe did not answer"), "failed", "StripeUnavailable: Stripe did not answer"),
        (RetryLater("the payment is not settled yet"), "failed", "waiting: the payment is not settled yet"),
        (RuntimeError(PHONE), "failed", "RuntimeError"),
    ],
)
def test_failures_no_retry_can_fix_are_dead_at_once_and_described_without_data(
    services: Services, error: BaseException, status: str, described: str | tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
):
    outcome = receive(services, error, f"call_ended:{type(error).__name__}")

    assert outcome.status == status
    row = services.db.read(lambda conn: conn.execute(select(webhook_events)).mappings().one())
    assert (row["status"], row["attempts"]) == (status, 1)
    assert row["last_error"].startswith(described if isinstance(described, tuple) else (described,))
    assert PHONE not in row["last_error"] and "INSERT" not in row["last_error"]
    assert all(PHONE not in record.getMessage() + str(record.__dict__) for record in caplog.records)
    alerts = services.db.read(lambda conn: conn.execute(
        select(notifications.c.kind, notifications.c.recipient).where(notifications.c.kind == "webhook_dead_letter")
    ).all())
    assert alerts == ([("webhook_dead_letter", "admin")] if status == "dead" else [])


def test_a_lock_timeout_is_retried_and_then_answered_as_database_unavailable_storing_nothing(services: Services):
    with pytest.raises(DatabaseUnavailable):
        receive(services, driver_error(OperationalError, 1205), "call_ended:locked")
    assert services.db.read(lambda conn: conn.execute(select(webhook_events)).all()) == []


def test_a_session_that_reports_another_payment_intent_never_overwrites_the_stored_one(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 5000, key="pi-kept", source="checkout", session_id="cs_kept",
                          intent_id="pi_ours")

    outcome = deliver(services, "checkout.session.completed",
                      checkout_session(topup, "cs_kept", "paid", intent_id="pi_someone_elses"), "evt_pi_swap")

    assert outcome.status == "dead"
    current = services.topups.get(topup.id)
    assert (current.status, current.stripe_payment_intent_id) == ("pending", "pi_ours")
    assert money(services, company.id) == (0, 0, 0)


def test_a_payment_we_never_created_settles_nothing_through_metadata(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 1200, key="meta-only", source="checkout", session_id="cs_meta")
    outcome = deliver(services, "payment_intent.succeeded", payment_intent(topup, "pi_forged", "succeeded"),
                      "evt_forged")

    assert (outcome.status, outcome.note) == ("ignored", "not one of our PaymentIntents")
    current = services.topups.get(topup.id)
    assert (current.status, current.stripe_payment_intent_id) == ("pending", None)
    assert stored(services, "evt_forged")["status"] == "ignored"


def test_ledger_check_flags_a_negative_reserved_amount(services: Services):
    company = new_company(services, funded="10.00")
    services.db.write(lambda conn: conn.execute(
        update(balances).where(balances.c.company_id == company.id).values(reserved_balance=-5000)))

    report = services.balances.check_ledger()

    problems = [p for c in report.failing for p in c.problems]
    assert any("reserved -5000 is negative" in p for p in problems), problems
    assert Money(-5000, "EUR") == services.balances.get(company.id).reserved
