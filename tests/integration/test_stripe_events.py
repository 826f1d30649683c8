"""Stripe events through the inbox into the ledger, on SQLite and MariaDB.

Every object is one of Stripe's own example objects (reference/stripe-api-fixtures.json) with its ids,
amounts, metadata and statuses set for the case at hand. Events are delivered with
``services.webhooks.receive`` exactly as the HTTP layer hands them over (parsed event plus raw bytes).
"""

from __future__ import annotations

import copy
import itertools
import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from billing_core.adapters.stripe_objects import RefundView
from billing_core.bootstrap import Services
from billing_core.db.tables import balances, disputes, notifications, webhook_events
from billing_core.money import Money
from billing_core.services.topup_refunds import TopupRefundService
from billing_core.services.topups import Topup
from billing_core.services.webhooks.inbox import EventOutcome, InboundEvent
from tests.conftest import Clock
from tests.integration.helpers import assert_ledger_ok, eur, new_company
from tests.integration.webhook_helpers import stripe_event, stripe_fixtures

FIXTURES = stripe_fixtures()


# -- Stripe objects, built from Stripe's own examples --------------------------------------------------


def _metadata(topup: Topup) -> dict[str, str]:
    return {"topup_id": str(topup.id), "company_id": str(topup.company_id), "source": topup.source}


def payment_intent(
    topup: Topup,
    intent_id: str,
    status: str,
    *,
    amount: int | None = None,
    charge: str | None = None,
    error: dict[str, Any] | None = None,
    cancellation_reason: str | None = None,
) -> dict[str, Any]:
    obj = copy.deepcopy(FIXTURES["payment_intent"])
    cents = topup.amount.cents if amount is None else amount
    obj.update(
        id=intent_id,
        status=status,
        amount=cents,
        amount_received=cents if status == "succeeded" else 0,
        currency="eur",
        metadata=_metadata(topup),
        latest_charge=charge,
        last_payment_error=error,
        cancellation_reason=cancellation_reason,
        canceled_at=None if status != "canceled" else 1793610000,
        next_action=None,
        processing=None,
    )
    return obj


DECLINE = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
}


def charge(
    charge_id: str,
    intent_id: str,
    cents: int,
    *,
    status: str = "succeeded",
    refunds: list[dict[str, Any]] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    obj = copy.deepcopy(FIXTURES["charge"])
    paid = status == "succeeded"
    refunded = sum(r["amount"] for r in refunds or [] if r["status"] == "succeeded")
    obj.update(
        id=charge_id,
        payment_intent=intent_id,
        amount=cents,
        amount_captured=cents if paid else 0,
        captured=paid,
        currency="eur",
        status=status,
        paid=paid,
        failure_code=None if paid else "card_declined",
        failure_message=None if paid else "Your card was declined.",
        amount_refunded=refunded,
        refunded=refunded >= cents,
        metadata=metadata or {},
    )
    obj["refunds"] = dict(obj["refunds"], data=refunds or [], url=f"/v1/charges/{charge_id}/refunds")
    return obj


def refund(
    refund_id: str, charge_id: str, intent_id: str, cents: int, *, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    obj = copy.deepcopy(FIXTURES["refund"])
    obj.update(
        id=refund_id,
        charge=charge_id,
        payment_intent=intent_id,
        amount=cents,
        currency="eur",
        status="succeeded",
        metadata=metadata or {},
    )
    return obj


def checkout_session(
    topup: Topup, session_id: str, payment_status: str, *, amount: int | None = None, intent_id: str | None = None
) -> dict[str, Any]:
    obj = copy.deepcopy(FIXTURES["checkout.session"])
    cents = topup.amount.cents if amount is None else amount
    obj.update(
        id=session_id,
        status="expired" if payment_status == "expired" else "complete",
        payment_status="unpaid" if payment_status == "expired" else payment_status,
        amount_total=cents,
        amount_subtotal=cents,
        currency="eur",
        client_reference_id=str(topup.id),
        metadata=_metadata(topup),
        payment_intent=intent_id,
    )
    return obj


def dispute(dispute_id: str, charge_id: str, intent_id: str, cents: int, status: str) -> dict[str, Any]:
    obj = copy.deepcopy(FIXTURES["dispute"])
    obj.update(
        id=dispute_id, charge=charge_id, payment_intent=intent_id, amount=cents, currency="eur", status=status,
        reason="fraudulent",
    )
    return obj


# -- delivery and inspection -------------------------------------------------------------------------


def deliver(services: Services, event_type: str, obj: dict[str, Any], event_id: str) -> EventOutcome:
    raw = stripe_event(event_type, obj, event_id=event_id)
    return services.webhooks.receive(InboundEvent("stripe", event_id, event_type, json.loads(raw)), raw)


def stored(services: Services, event_id: str) -> Any:
    query = select(webhook_events).where(webhook_events.c.provider == "stripe", webhook_events.c.event_id == event_id)
    return services.db.read(lambda conn: conn.execute(query).mappings().one())


def entries(services: Services, company_id: int) -> list[tuple[str, int]]:
    """(type, signed cents) of the company's ledger, oldest first."""
    page = services.balances.history(company_id, limit=500)
    return [(e.type, e.amount.cents) for e in reversed(page.entries)]


def queued(services: Services, kind: str) -> list[tuple[str, int | None, dict[str, Any]]]:
    query = select(notifications).where(notifications.c.kind == kind).order_by(notifications.c.id)
    rows = services.db.read(lambda conn: conn.execute(query).mappings().all())
    return [(r["recipient"], r["company_id"], json.loads(r["payload"])) for r in rows]


def money(services: Services, company_id: int) -> tuple[int, int, int]:
    """(balance, reserved, available) in cents."""
    view = services.balances.get(company_id)
    return view.balance.cents, view.reserved.cents, view.available.cents


def pending_topup(
    services: Services, company_id: int, cents: int, *, key: str, source: str = "payment_intent",
    intent_id: str | None = None, session_id: str | None = None,
) -> Topup:
    topup = services.topups.create_pending(
        company_id=company_id, amount=Money(cents, "EUR"), source=source, initiated_by="test",
        idempotency_key=key,
    )
    if intent_id is not None:  # what PaymentService does right after Stripe created the PaymentIntent
        topup = services.topups.attach_stripe_ids(topup.id, stripe_payment_intent_id=intent_id)
    if session_id is not None:  # ... or the Checkout Session
        topup = services.topups.attach_stripe_ids(topup.id, stripe_checkout_session_id=session_id)
    return topup


def paid_topup(services: Services, company_id: int, cents: int, *, key: str) -> tuple[Topup, str, str]:
    """A top-up paid through a PaymentIntent and credited by its webhook; returns it, the intent and charge ids."""
    intent_id, charge_id = f"pi_{key}", f"ch_{key}"
    topup = pending_topup(services, company_id, cents, key=key, intent_id=intent_id)
    outcome = deliver(
        services, "payment_intent.succeeded", payment_intent(topup, intent_id, "succeeded", charge=charge_id),
        f"evt_paid_{key}",
    )
    assert outcome.status == "processed" and outcome.note == "credited"
    return services.topups.get(topup.id), intent_id, charge_id


# -- Checkout Sessions ---------------------------------------------------------------------------------


def test_paid_checkout_session_credits_the_topup_once_however_often_it_is_reported(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 5000, key="co-1", source="checkout",
                          session_id="cs_test_paid")
    session = checkout_session(topup, "cs_test_paid", "paid", intent_id="pi_co_1")

    first = deliver(services, "checkout.session.completed", session, "evt_cs_paid")
    again = deliver(services, "checkout.session.completed", session, "evt_cs_paid")  # redelivery, same event
    async_paid = deliver(services, "checkout.session.async_payment_succeeded", session, "evt_cs_async")
    intent = deliver(
        services, "payment_intent.succeeded", payment_intent(topup, "pi_co_1", "succeeded", charge="ch_co_1"),
        "evt_pi_co_1",
    )

    assert (first.status, first.note) == ("processed", "credited")
    assert again.status == "duplicate"
    assert (async_paid.note, intent.note) == ("already credited", "already credited")
    settled = services.topups.get(topup.id)
    assert settled.status == "succeeded"
    assert (settled.stripe_checkout_session_id, settled.stripe_payment_intent_id) == ("cs_test_paid", "pi_co_1")
    assert entries(services, company.id) == [("topup", 5000)]
    assert money(services, company.id) == (5000, 0, 5000)
    assert_ledger_ok(services)


def test_unpaid_sepa_checkout_stays_processing_until_the_async_payment_succeeds(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 10000, key="sepa-ok", source="checkout",
                          session_id="cs_test_sepa_ok")
    session = checkout_session(topup, "cs_test_sepa_ok", "unpaid", intent_id="pi_sepa_ok")

    completed = deliver(services, "checkout.session.completed", session, "evt_sepa_completed")

    assert (completed.status, completed.note) == ("processed", "payment processing")
    assert services.topups.get(topup.id).status == "processing"
    assert money(services, company.id) == (0, 0, 0)

    paid = deliver(
        services, "checkout.session.async_payment_succeeded", dict(session, payment_status="paid"), "evt_sepa_paid"
    )

    assert (paid.status, paid.note) == ("processed", "credited")
    assert services.topups.get(topup.id).status == "succeeded"
    assert entries(services, company.id) == [("topup", 10000)]
    assert_ledger_ok(services)


def test_failed_sepa_debit_fails_the_topup_and_queues_payment_failed_mails_for_company_and_admin(
    services: Services,
):
    company = new_company(services)
    topup = pending_topup(services, company.id, 10000, key="sepa-fail", source="checkout",
                          session_id="cs_test_sepa_fail")
    session = checkout_session(topup, "cs_test_sepa_fail", "unpaid", intent_id="pi_sepa_fail")
    deliver(services, "checkout.session.completed", session, "evt_sepa_f_completed")

    failed = deliver(services, "checkout.session.async_payment_failed", session, "evt_sepa_f_failed")
    # the PaymentIntent's own failure report afterwards changes nothing and mails nobody again
    deliver(
        services, "payment_intent.payment_failed",
        payment_intent(topup, "pi_sepa_fail", "requires_payment_method", error=DECLINE), "evt_sepa_f_pi",
    )

    assert (failed.status, failed.note) == ("processed", "top-up failed")
    current = services.topups.get(topup.id)
    assert current.status == "failed"
    assert current.failure_reason == "the delayed payment (SEPA Direct Debit) failed"
    assert current.failure_code == "async_payment_failed"
    mails = queued(services, "payment_failed")
    assert sorted(recipient for recipient, _, _ in mails) == ["admin", "company"]
    assert {company_id for _, company_id, _ in mails} == {company.id}
    assert all(p["topup_id"] == topup.id and p["amount"] == {"cents": 10000, "currency": "EUR"} for _, _, p in mails)
    assert money(services, company.id) == (0, 0, 0)
    assert entries(services, company.id) == []


def test_expired_checkout_session_cancels_the_open_topup(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 2500, key="expire", source="checkout",
                          session_id="cs_exp")

    outcome = deliver(services, "checkout.session.expired", checkout_session(topup, "cs_exp", "expired"), "evt_exp")

    assert (outcome.status, outcome.note) == ("processed", "canceled")
    current = services.topups.get(topup.id)
    assert current.status == "canceled"
    assert current.failure_reason == "the Checkout Session expired unpaid"
    assert money(services, company.id) == (0, 0, 0)


def test_expired_event_for_a_paid_checkout_session_leaves_the_credit_alone(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 2500, key="paid-then-exp", source="checkout",
                          session_id="cs_pe")
    deliver(services, "checkout.session.completed", checkout_session(topup, "cs_pe", "paid"), "evt_pe_paid")

    deliver(services, "checkout.session.expired", checkout_session(topup, "cs_pe", "expired"), "evt_pe_exp")

    assert services.topups.get(topup.id).status == "succeeded"
    assert money(services, company.id) == (2500, 0, 2500)


@pytest.mark.parametrize("event_type", ["checkout.session.completed", "checkout.session.async_payment_succeeded"])
def test_checkout_amount_that_differs_from_the_topup_dead_letters_the_event_and_credits_nothing(
    services: Services, event_type: str
):
    company = new_company(services)
    topup = pending_topup(services, company.id, 5000, key="mismatch", source="checkout",
                          session_id="cs_mismatch")
    session = checkout_session(topup, "cs_mismatch", "paid", amount=500)

    outcome = deliver(services, event_type, session, "evt_mismatch")

    assert outcome.status == "dead"
    row = stored(services, "evt_mismatch")
    assert row["status"] == "dead" and row["attempts"] == 1
    assert row["last_error"].startswith("EventMismatch: Stripe reports 500 paid for top-up")
    assert services.topups.get(topup.id).status == "pending"
    assert money(services, company.id) == (0, 0, 0)
    assert entries(services, company.id) == []
    assert_ledger_ok(services)


def test_payment_intent_amount_that_differs_from_the_topup_is_dead_lettered(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 5000, key="pi-mismatch", intent_id="pi_mismatch")

    outcome = deliver(
        services, "payment_intent.succeeded", payment_intent(topup, "pi_mismatch", "succeeded", amount=4999),
        "evt_pi_mismatch",
    )

    assert outcome.status == "dead" and "4999" in outcome.note
    assert services.topups.get(topup.id).status == "pending"
    assert money(services, company.id) == (0, 0, 0)


# -- PaymentIntents and charges, in any order ------------------------------------------------------


def intent_events(topup: Topup, key: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """One payment's events: a first charge declined, then a second one that succeeds (or a cancel)."""
    pi, cs, cents = f"pi_{key}", f"cs_{key}", topup.amount.cents
    return {
        "session_unpaid": ("checkout.session.completed", checkout_session(topup, cs, "unpaid", intent_id=pi)),
        "session_paid": (
            "checkout.session.async_payment_succeeded", checkout_session(topup, cs, "paid", intent_id=pi)
        ),
        "processing": ("payment_intent.processing", payment_intent(topup, pi, "processing")),
        "declined": (
            "payment_intent.payment_failed",
            payment_intent(topup, pi, "requires_payment_method", charge=f"ch_{key}_1", error=DECLINE),
        ),
        "charge_failed": ("charge.failed", charge(f"ch_{key}_1", pi, cents, status="failed")),
        "succeeded": ("payment_intent.succeeded", payment_intent(topup, pi, "succeeded", charge=f"ch_{key}_2")),
        "charge_succeeded": ("charge.succeeded", charge(f"ch_{key}_2", pi, cents)),
        "canceled": (
            "payment_intent.canceled",
            payment_intent(topup, pi, "canceled", cancellation_reason="abandoned", error=DECLINE),
        ),
    }


SCENARIOS = {
    # name: (events, final status, credited)
    "declined_then_paid": (("processing", "declined", "succeeded", "charge_succeeded"), "succeeded", True),
    "declined_then_canceled": (("declined", "charge_failed", "canceled"), "canceled", False),
    "sepa_debit_bounced": (("processing", "declined", "charge_failed"), "failed", False),
    "sepa_checkout_paid": (("session_unpaid", "processing", "session_paid", "succeeded"), "succeeded", True),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_payment_events_reach_the_same_end_in_every_order_and_with_repeats(
    services: Services, scenario: str
):
    names, final_status, credited = SCENARIOS[scenario]
    company = new_company(services)
    cents = 3000
    orders = list(itertools.permutations(names))
    topups = []
    for n, order in enumerate(orders):
        key = f"{scenario}_{n}"
        if scenario.endswith("checkout_paid"):  # Checkout: only the session id is known before Stripe reports
            topup = pending_topup(services, company.id, cents, key=key, source="checkout")
            topup = services.topups.attach_stripe_ids(topup.id, stripe_checkout_session_id=f"cs_{key}")
        else:
            topup = pending_topup(services, company.id, cents, key=key, intent_id=f"pi_{key}")
        events = intent_events(topup, key)
        for name in order:
            event_type, obj = events[name]
            assert deliver(services, event_type, obj, f"evt_{key}_{name}").status in ("processed", "ignored")
        # Stripe delivers again: an event it already sent, and the first object once more in a new event
        assert deliver(services, *events[order[-1]], f"evt_{key}_{order[-1]}").status == "duplicate"
        assert deliver(services, *events[order[0]], f"evt_{key}_{order[0]}_again").status == "processed"
        topups.append(topup.id)

    statuses = {services.topups.get(topup_id).status for topup_id in topups}
    assert statuses == {final_status}
    expected = len(orders) * cents if credited else 0
    assert money(services, company.id) == (expected, 0, expected)
    assert entries(services, company.id) == ([("topup", cents)] * len(orders) if credited else [])
    assert services.webhooks.events(statuses=("dead", "failed"), limit=1000) == []
    assert_ledger_ok(services)


def test_charge_succeeded_alone_credits_a_card_payment(services: Services):
    company = new_company(services)
    topup = pending_topup(services, company.id, 1500, key="charge-only", intent_id="pi_charge_only")

    outcome = deliver(services, "charge.succeeded", charge("ch_only", "pi_charge_only", 1500), "evt_ch_only")

    assert (outcome.status, outcome.note) == ("processed", "credited")
    assert services.topups.get(topup.id).stripe_charge_id == "ch_only"
    assert money(services, company.id) == (1500, 0, 1500)


def test_events_about_payments_that_are_not_ours_are_ignored_and_change_nothing(services: Services):
    company = new_company(services, funded="10.00")
    stranger = copy.deepcopy(FIXTURES["payment_intent"])
    stranger.update(status="succeeded", amount=999, amount_received=999, currency="eur", last_payment_error=None)

    outcomes = [
        deliver(services, "payment_intent.succeeded", stranger, "evt_stranger_pi"),
        deliver(services, "charge.succeeded", copy.deepcopy(FIXTURES["charge"]), "evt_stranger_ch"),
        deliver(services, "charge.dispute.created", copy.deepcopy(FIXTURES["dispute"]), "evt_stranger_dp"),
    ]

    assert [o.status for o in outcomes] == ["ignored", "ignored", "ignored"]
    assert money(services, company.id) == (1000, 0, 1000)


def test_unknown_event_type_is_stored_as_ignored(services: Services):
    outcome = deliver(services, "invoice.paid", {"id": "in_1", "object": "invoice"}, "evt_invoice_paid")

    assert (outcome.status, outcome.note) == ("ignored", "event type invoice.paid is not used")
    row = stored(services, "evt_invoice_paid")
    assert (row["status"], row["event_type"], row["attempts"]) == ("ignored", "invoice.paid", 1)
    assert row["processed_at"] is not None
    assert services.webhooks.backlog() == {}


# -- refunds -------------------------------------------------------------------------------------------


def ten_percent_bonus(services: Services) -> None:
    services.bonus_rules.add(name="10 % from 100", min_topup=eur("100.00"), bonus_percent=Decimal(10), actor="test")


def test_dashboard_refunds_reduce_the_balance_once_and_take_the_bonus_back_in_proportion(services: Services):
    ten_percent_bonus(services)
    company = new_company(services)
    topup, pi, ch = paid_topup(services, company.id, 10000, key="dash")
    assert topup.bonus.cents == 1000
    assert money(services, company.id) == (11000, 0, 11000)
    re_1 = refund("re_dash_1", ch, pi, 3333)
    re_2 = refund("re_dash_2", ch, pi, 6667)

    first = deliver(services, "charge.refunded", charge(ch, pi, 10000, refunds=[re_1]), "evt_dash_1")
    again = deliver(services, "charge.refunded", charge(ch, pi, 10000, refunds=[re_1]), "evt_dash_1_again")

    assert (first.status, first.note) == ("processed", "succeeded")
    assert (again.status, again.note) == ("processed", "already recorded")
    assert money(services, company.id) == (11000 - 3333 - 333, 0, 11000 - 3333 - 333)
    assert services.topups.get(topup.id).status == "partially_refunded"

    # Stripe lists every refund of the charge, newest first
    rest = deliver(services, "charge.refunded", charge(ch, pi, 10000, refunds=[re_2, re_1]), "evt_dash_2")

    assert rest.note == "succeeded, already recorded"
    assert entries(services, company.id) == [
        ("topup", 10000), ("bonus", 1000),
        ("refund", -3333), ("reversal", -333),
        ("refund", -6667), ("reversal", -667),  # the last refund takes whatever bonus is left
    ]
    assert money(services, company.id) == (0, 0, 0)
    final = services.topups.get(topup.id)
    assert (final.status, final.refunded.cents) == ("refunded", 10000)
    assert_ledger_ok(services)


def refund_service(services: Services) -> TopupRefundService:
    return TopupRefundService(services.ctx, None, services.topups)  # no gateway: Stripe's answers are given here


def stripe_answer(refund_id: str, charge_id: str, intent_id: str, cents: int) -> RefundView:
    """What Stripe's API answers for a refund that went through (phase three records it)."""
    return RefundView(
        id=refund_id, status="succeeded", amount=cents, currency="EUR", payment_intent=intent_id, charge=charge_id,
        failure_reason=None, metadata={},
    )


def open_our_refund(services: Services, topup_id: int, cents: int, key: str) -> Any:
    """Phase one of TopupRefundService (the part before Stripe is called): a pending, held refund row."""
    refunds = refund_service(services)
    return services.db.write(
        lambda conn: refunds._open(conn, topup_id, Money(cents, "EUR"), "customer asked", "test",
                                   f"topup_refund:{key}")
    )


def test_charge_refunded_reporting_our_own_refund_settles_it_once(services: Services):
    ten_percent_bonus(services)
    company = new_company(services)
    topup, pi, ch = paid_topup(services, company.id, 20000, key="ours")
    pending = open_our_refund(services, topup.id, 5000, "ours-1")
    assert (pending.status, pending.bonus_reversed.cents) == ("pending", 500)
    assert money(services, company.id) == (22000, 5500, 16500)  # held while Stripe works
    assert_ledger_ok(services)
    ours = refund("re_ours_1", ch, pi, 5000, metadata={"topup_id": str(topup.id), "topup_refund_id": str(pending.id)})

    outcome = deliver(services, "charge.refunded", charge(ch, pi, 20000, refunds=[ours]), "evt_ours")
    # the same refund again, in a later event and with its metadata gone: known by its Stripe id
    bare = dict(ours, metadata={})
    later = deliver(services, "charge.refunded", charge(ch, pi, 20000, refunds=[bare]), "evt_ours_later")
    # and our own phase three, finishing after the webhook did
    closed = refund_service(services).record(pending.id, stripe_answer("re_ours_1", ch, pi, 5000))

    assert (outcome.status, outcome.note) == ("processed", "succeeded")
    assert (later.status, later.note) == ("processed", "already recorded")
    assert closed.status == "succeeded" and closed.stripe_refund_id == "re_ours_1"
    assert entries(services, company.id) == [("topup", 20000), ("bonus", 2000), ("refund", -5000), ("reversal", -500)]
    assert money(services, company.id) == (16500, 0, 16500)
    assert services.topups.get(topup.id).refunded.cents == 5000
    assert_ledger_ok(services)


def test_our_refund_settled_before_its_charge_refunded_event_is_not_counted_again(services: Services):
    company = new_company(services)
    topup, pi, ch = paid_topup(services, company.id, 4000, key="ours-first")
    pending = open_our_refund(services, topup.id, 4000, "ours-first")
    refund_service(services).record(pending.id, stripe_answer("re_ours_first", ch, pi, 4000))
    ours = refund("re_ours_first", ch, pi, 4000, metadata={"topup_refund_id": str(pending.id)})

    outcome = deliver(services, "charge.refunded", charge(ch, pi, 4000, refunds=[ours]), "evt_ours_first")

    assert outcome.status == "processed"
    assert entries(services, company.id) == [("topup", 4000), ("refund", -4000)]
    assert money(services, company.id) == (0, 0, 0)
    assert services.topups.get(topup.id).status == "refunded"
    assert_ledger_ok(services)


def test_charge_refunded_before_the_payment_settled_waits_and_is_applied_by_the_worker(
    services: Services, clock: Clock
):
    company = new_company(services)
    topup = pending_topup(services, company.id, 6000, key="early", intent_id="pi_early")
    early = charge("ch_early", "pi_early", 6000, refunds=[refund("re_early", "ch_early", "pi_early", 1000)])

    outcome = deliver(services, "charge.refunded", early, "evt_early_refund")

    assert outcome.status == "failed" and outcome.note.startswith("waiting: top-up")
    row = stored(services, "evt_early_refund")
    assert row["status"] == "failed" and row["attempts"] == 1
    assert row["next_attempt_at"] > clock.now
    assert services.webhooks.process_due() == []  # not due yet

    deliver(services, "payment_intent.succeeded", payment_intent(topup, "pi_early", "succeeded",
                                                                 charge="ch_early"), "evt_early_paid")
    assert money(services, company.id) == (6000, 0, 6000)
    clock.now = row["next_attempt_at"]
    [retried] = services.webhooks.process_due()

    assert (retried.event_id, retried.status) == ("evt_early_refund", "processed")
    assert stored(services, "evt_early_refund")["attempts"] == 2
    assert money(services, company.id) == (5000, 0, 5000)
    assert entries(services, company.id) == [("topup", 6000), ("refund", -1000)]
    assert_ledger_ok(services)


def test_dashboard_refund_reported_in_the_current_api_shape_reduces_the_balance_once(
    services: Services, clock: Clock
):
    company = new_company(services)
    topup, pi, ch = paid_topup(services, company.id, 5000, key="modern")
    modern = charge(ch, pi, 5000, refunds=[refund("re_modern", ch, pi, 2000)])
    del modern["refunds"]  # since 2022-11-15 a Charge no longer carries its refunds (not expandable in events)

    deliver(services, "charge.refunded", modern, "evt_modern")
    deliver(services, "refund.created", refund("re_modern", ch, pi, 2000), "evt_modern_refund")
    deliver(services, "refund.updated", refund("re_modern", ch, pi, 2000), "evt_modern_refund_updated")
    for _ in range(services.ctx.settings.webhook_max_attempts):
        clock.advance(hours=1)
        services.webhooks.process_due()

    assert money(services, company.id) == (3000, 0, 3000)


# -- disputes ------------------------------------------------------------------------------------------


def test_dispute_holds_the_amount_and_a_won_dispute_releases_it(services: Services):
    company = new_company(services, funded="50.00")
    topup, pi, ch = paid_topup(services, company.id, 5000, key="won")
    opened = dispute("dp_won", ch, pi, 5000, "needs_response")

    created = deliver(services, "charge.dispute.created", opened, "evt_dp_won_created")
    repeat = deliver(services, "charge.dispute.created", opened, "evt_dp_won_created_again")

    assert (created.status, created.note) == ("processed", "held")
    assert repeat.note == "already recorded"
    assert money(services, company.id) == (10000, 5000, 5000)
    [(recipient, company_id, payload)] = queued(services, "dispute_opened")
    assert (recipient, company_id) == ("admin", company.id)
    assert (payload["dispute"], payload["topup_id"], payload["amount"]) == ("dp_won", topup.id, 5000)
    assert_ledger_ok(services)

    closed = deliver(services, "charge.dispute.closed", dict(opened, status="won"), "evt_dp_won_closed")
    closed_again = deliver(services, "charge.dispute.closed", dict(opened, status="won"), "evt_dp_won_closed_2")

    assert (closed.note, closed_again.note) == ("released", "already closed")
    assert money(services, company.id) == (10000, 0, 10000)
    assert [kind for kind, _ in entries(services, company.id)] == ["topup", "topup"]
    assert_ledger_ok(services)


def test_lost_dispute_releases_the_hold_and_takes_the_amount_off_with_a_reversal(services: Services):
    company = new_company(services, funded="5.00")
    topup, pi, ch = paid_topup(services, company.id, 5000, key="lost")
    opened = dispute("dp_lost", ch, pi, 5000, "needs_response")
    deliver(services, "charge.dispute.created", opened, "evt_dp_lost_created")

    closed = deliver(services, "charge.dispute.closed", dict(opened, status="lost"), "evt_dp_lost_closed")
    deliver(services, "charge.dispute.closed", dict(opened, status="lost"), "evt_dp_lost_closed_again")
    deliver(services, "charge.dispute.created", opened, "evt_dp_lost_created_late")

    assert closed.note == "reversed"
    assert money(services, company.id) == (500, 0, 500)
    assert entries(services, company.id) == [("topup", 500), ("topup", 5000), ("reversal", -5000)]
    row = services.db.read(
        lambda conn: conn.execute(select(disputes).where(disputes.c.stripe_dispute_id == "dp_lost")).mappings().one()
    )
    assert (row["status"], row["topup_id"], row["amount"]) == ("lost", topup.id, 5000)
    assert_ledger_ok(services)


def test_lost_dispute_on_part_of_a_bonus_topup_takes_back_that_part_of_the_bonus(services: Services):
    ten_percent_bonus(services)
    company = new_company(services)
    topup, pi, ch = paid_topup(services, company.id, 20000, key="lost_bonus")  # 200.00 + 20.00 bonus
    opened = dispute("dp_lost_bonus", ch, pi, 5000, "needs_response")  # a quarter of the payment
    deliver(services, "charge.dispute.created", opened, "evt_dp_lost_bonus_created")

    deliver(services, "charge.dispute.closed", dict(opened, status="lost"), "evt_dp_lost_bonus_closed")

    assert money(services, company.id) == (22000 - 5000 - 500, 0, 16500)
    assert entries(services, company.id)[-2:] == [("reversal", -500), ("reversal", -5000)]
    assert_ledger_ok(services)


@pytest.mark.parametrize(("status", "balance"), [("won", 5000), ("lost", 0)])
def test_dispute_closed_before_it_was_seen_opening_holds_nothing(services: Services, status: str, balance: int):
    company = new_company(services)
    _, pi, ch = paid_topup(services, company.id, 5000, key=f"closed-first-{status}")
    opened = dispute(f"dp_cf_{status}", ch, pi, 5000, "needs_response")

    deliver(services, "charge.dispute.closed", dict(opened, status=status), f"evt_cf_{status}_closed")
    late = deliver(services, "charge.dispute.created", opened, f"evt_cf_{status}_created")

    assert late.note == "already recorded"
    assert money(services, company.id) == (balance, 0, balance)
    assert queued(services, "dispute_opened") == []
    assert_ledger_ok(services)


def test_dispute_that_overtakes_its_payment_waits_for_it(services: Services, clock: Clock):
    company = new_company(services)
    topup = pending_topup(services, company.id, 5000, key="dp-early", intent_id="pi_dp_early")
    opened = dispute("dp_early", "ch_dp_early", "pi_dp_early", 5000, "needs_response")

    assert deliver(services, "charge.dispute.created", opened, "evt_dp_early").status == "failed"
    deliver(services, "charge.succeeded", charge("ch_dp_early", "pi_dp_early", 5000), "evt_dp_early_paid")
    clock.advance(minutes=1)
    [retried] = services.webhooks.process_due()

    assert (retried.event_id, retried.status, retried.note) == ("evt_dp_early", "processed", "held")
    assert money(services, company.id) == (5000, 5000, 0)
    assert services.topups.get(topup.id).status == "succeeded"
    assert_ledger_ok(services)


# -- payment methods -----------------------------------------------------------------------------------


def auto_topup_state(services: Services, company_id: int) -> tuple[str | None, bool, str | None]:
    query = select(
        balances.c.stripe_payment_method_id, balances.c.auto_topup_enabled, balances.c.auto_topup_disabled_reason
    ).where(balances.c.company_id == company_id)
    row = services.db.read(lambda conn: conn.execute(query).one())
    return row[0], bool(row[1]), row[2]


def test_detaching_the_auto_topup_payment_method_switches_auto_topup_off_with_a_reason(services: Services):
    company = new_company(services)
    other = new_company(services, name="Autohaus Berger")
    for c, pm in ((company, "pm_x"), (other, "pm_other")):
        services.companies.set(c.id, actor="test", stripe_payment_method_id=pm, auto_topup_enabled=True)
    method = dict(copy.deepcopy(FIXTURES["payment_method"]), id="pm_x", customer=None)

    outcome = deliver(services, "payment_method.detached", method, "evt_pm_detached")
    repeat = deliver(services, "payment_method.detached", method, "evt_pm_detached_again")

    assert (outcome.status, outcome.note) == ("processed", "auto top-up lost its payment method")
    assert repeat.note == "not used for auto top-up"
    pm, enabled, reason = auto_topup_state(services, company.id)
    assert (pm, enabled) == (None, False)
    assert reason is not None and "payment method was removed" in reason
    assert auto_topup_state(services, other.id) == ("pm_other", True, None)
    shown = services.companies.show(company.id)
    assert (shown.stripe_payment_method_id, shown.auto_topup_enabled) == (None, False)


def test_detaching_the_auto_topup_payment_method_tells_the_company(services: Services):
    company = new_company(services)
    services.companies.set(company.id, actor="test", stripe_payment_method_id="pm_told", auto_topup_enabled=True)
    method = dict(copy.deepcopy(FIXTURES["payment_method"]), id="pm_told", customer=None)

    deliver(services, "payment_method.detached", method, "evt_pm_told")

    assert [(r, c) for r, c, _ in queued(services, "payment_method_detached")] == [("company", company.id)]
