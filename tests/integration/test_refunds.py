"""Refunds of call charges back to the prepaid balance, on SQLite and MariaDB."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing_core.db.tables import audit_log, balances, call_charges, ledger
from billing_core.errors import (
    CallChargeNotFound,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvalidAmount,
    InvalidInput,
    RefundExceedsCharge,
)
from billing_core.money import Money
from tests.integration.helpers import assert_ledger_ok, balance_cents, charge, eur, new_company


def state(services):
    """Every row that a refund may touch, to prove that a rejected one changed nothing."""
    tables = (balances, ledger, call_charges, audit_log)
    return services.db.read(lambda conn: {t.name: conn.execute(select(t).order_by(t.c.id)).all() for t in tables})


def charge_row(services, call_id):
    return services.db.read(
        lambda conn: conn.execute(select(call_charges).where(call_charges.c.call_id == call_id)).mappings().one()
    )


def refund_entries(services, company_id):
    return services.balances.history(company_id, types=["refund"]).entries


@pytest.fixture
def charged(services, clock):
    """A company funded with 10.00 EUR and one 300 s call charged 2.10 EUR (balance 7.90)."""
    company = new_company(services, funded="10.00")
    result = charge(services, company.id, "call-1", 300, clock())
    assert result.amount == eur("2.10")
    return company


def test_charge_starts_with_no_refund(services, charged):
    row = charge_row(services, "call-1")
    assert row["refund_status"] == "none"
    assert row["refunded_amount"] == 0


def test_full_refund_credits_the_whole_charge_back(services, charged):
    result = services.refunds.refund_call(call_id="call-1", amount=None, reason="caller hung up", actor="agent:anna")
    assert result.amount == eur("2.10")
    assert result.refunded_total == eur("2.10")
    assert result.charged == eur("2.10")
    assert result.refund_status == "full"
    assert result.balance_after == eur("10.00")
    assert result.company_id == charged.id
    assert not result.replayed
    assert balance_cents(services, charged.id) == 1000
    row = charge_row(services, "call-1")
    assert (row["refund_status"], row["refunded_amount"]) == ("full", 210)
    [entry] = refund_entries(services, charged.id)
    assert entry.id == result.ledger_entry_id
    assert entry.amount == eur("2.10")
    assert (entry.balance_before, entry.balance_after) == (eur("7.90"), eur("10.00"))
    assert (entry.reference_type, entry.reference_id) == ("call_charge", "call-1")
    assert entry.actor == "agent:anna"
    assert entry.description == "Refund for call call-1: caller hung up"
    assert_ledger_ok(services)


def test_explicit_amount_equal_to_the_charge_is_a_full_refund(services, charged):
    result = services.refunds.refund_call(call_id="call-1", amount=eur("2.10"), reason="r", actor="a")
    assert result.refund_status == "full"
    assert charge_row(services, "call-1")["refund_status"] == "full"


def test_partial_refunds_follow_status_and_refunded_amount_until_full(services, charged):
    first = services.refunds.refund_call(call_id="call-1", amount=eur("0.50"), reason="bad line", actor="a")
    assert first.amount == eur("0.50")
    assert first.refunded_total == eur("0.50")
    assert first.refund_status == "partial"
    assert first.balance_after == eur("8.40")
    row = charge_row(services, "call-1")
    assert (row["refund_status"], row["refunded_amount"]) == ("partial", 50)

    second = services.refunds.refund_call(call_id="call-1", amount=eur("1.00"), reason="bad line", actor="a")
    assert second.refunded_total == eur("1.50")
    assert second.refund_status == "partial"
    assert second.balance_after == eur("9.40")

    rest = services.refunds.refund_call(call_id="call-1", amount=None, reason="goodwill", actor="a")
    assert rest.amount == eur("0.60")
    assert rest.refunded_total == eur("2.10")
    assert rest.refund_status == "full"
    assert rest.balance_after == eur("10.00")
    row = charge_row(services, "call-1")
    assert (row["refund_status"], row["refunded_amount"]) == ("full", 210)
    assert [e.amount.cents for e in refund_entries(services, charged.id)] == [60, 100, 50]
    assert_ledger_ok(services)


def test_refund_beyond_the_remaining_amount_is_rejected_and_changes_nothing(services, charged):
    services.refunds.refund_call(call_id="call-1", amount=eur("2.00"), reason="r", actor="a")
    before = state(services)
    with pytest.raises(RefundExceedsCharge) as caught:
        services.refunds.refund_call(call_id="call-1", amount=eur("0.11"), reason="r", actor="a")
    assert (caught.value.requested, caught.value.refundable, caught.value.currency) == (11, 10, "EUR")
    assert state(services) == before
    assert balance_cents(services, charged.id) == 990


def test_refund_beyond_the_charge_is_rejected_and_changes_nothing(services, charged):
    before = state(services)
    with pytest.raises(RefundExceedsCharge) as caught:
        services.refunds.refund_call(call_id="call-1", amount=eur("2.11"), reason="r", actor="a")
    assert (caught.value.requested, caught.value.refundable) == (211, 210)
    assert state(services) == before


def test_refund_of_a_fully_refunded_charge_is_rejected(services, charged):
    services.refunds.refund_call(call_id="call-1", amount=None, reason="r", actor="a")
    before = state(services)
    with pytest.raises(RefundExceedsCharge) as caught:
        services.refunds.refund_call(call_id="call-1", amount=None, reason="again", actor="a")
    assert caught.value.refundable == 0
    with pytest.raises(RefundExceedsCharge):
        services.refunds.refund_call(call_id="call-1", amount=eur("0.01"), reason="again", actor="a")
    assert state(services) == before


def test_refund_of_a_call_that_cost_nothing_is_rejected(services, clock):
    company = new_company(services, funded="10.00")
    charge(services, company.id, "missed-call", 0, clock())
    before = state(services)
    with pytest.raises(RefundExceedsCharge):
        services.refunds.refund_call(call_id="missed-call", amount=None, reason="r", actor="a")
    assert state(services) == before


def test_repeat_with_the_same_idempotency_key_is_replayed_and_moves_no_money(services, charged):
    first = services.refunds.refund_call(
        call_id="call-1", amount=eur("0.70"), reason="r", actor="a", idempotency_key="ticket-42"
    )
    after_first = state(services)
    again = services.refunds.refund_call(
        call_id="call-1", amount=eur("0.70"), reason="r", actor="a", idempotency_key="ticket-42"
    )
    assert again.replayed and not first.replayed
    assert again.ledger_entry_id == first.ledger_entry_id
    assert again.amount == first.amount == eur("0.70")
    assert again.refunded_total == eur("0.70")
    assert again.refund_status == "partial"
    assert again.balance_after == first.balance_after == eur("8.60")
    assert state(services) == after_first
    assert len(refund_entries(services, charged.id)) == 1


def test_replay_without_an_amount_returns_the_recorded_refund(services, charged):
    first = services.refunds.refund_call(
        call_id="call-1", amount=eur("0.70"), reason="r", actor="a", idempotency_key="ticket-42"
    )
    again = services.refunds.refund_call(
        call_id="call-1", amount=None, reason="r", actor="a", idempotency_key="ticket-42"
    )
    assert again.replayed
    assert again.amount == eur("0.70")
    assert again.ledger_entry_id == first.ledger_entry_id
    assert balance_cents(services, charged.id) == 860


def test_replay_reports_the_refund_total_as_it_is_now(services, charged):
    services.refunds.refund_call(call_id="call-1", amount=eur("0.70"), reason="r", actor="a", idempotency_key="k1")
    services.refunds.refund_call(call_id="call-1", amount=None, reason="r", actor="a", idempotency_key="k2")
    again = services.refunds.refund_call(
        call_id="call-1", amount=eur("0.70"), reason="r", actor="a", idempotency_key="k1"
    )
    assert again.replayed
    assert again.amount == eur("0.70")
    assert again.refunded_total == eur("2.10")
    assert again.refund_status == "full"
    assert balance_cents(services, charged.id) == 1000


def test_same_key_with_a_different_amount_is_rejected_and_changes_nothing(services, charged):
    services.refunds.refund_call(call_id="call-1", amount=eur("0.70"), reason="r", actor="a", idempotency_key="k")
    before = state(services)
    with pytest.raises(IdempotencyKeyReused) as caught:
        services.refunds.refund_call(call_id="call-1", amount=eur("0.80"), reason="r", actor="a", idempotency_key="k")
    assert caught.value.key == "k"
    assert state(services) == before


def test_same_key_for_another_call_is_rejected_and_changes_nothing(services, charged, clock):
    charge(services, charged.id, "call-2", 60, clock())
    services.refunds.refund_call(call_id="call-1", amount=eur("0.42"), reason="r", actor="a", idempotency_key="k")
    before = state(services)
    with pytest.raises(IdempotencyKeyReused):
        services.refunds.refund_call(call_id="call-2", amount=eur("0.42"), reason="r", actor="a", idempotency_key="k")
    assert state(services) == before
    assert charge_row(services, "call-2")["refund_status"] == "none"


def test_refund_in_another_currency_is_rejected_and_changes_nothing(services, charged):
    before = state(services)
    with pytest.raises(CurrencyMismatch) as caught:
        services.refunds.refund_call(call_id="call-1", amount=Money(50, "USD"), reason="r", actor="a")
    assert (caught.value.expected, caught.value.got) == ("EUR", "USD")
    assert state(services) == before


def test_refund_of_an_unknown_call_is_rejected(services, charged):
    before = state(services)
    with pytest.raises(CallChargeNotFound) as caught:
        services.refunds.refund_call(call_id="no-such-call", amount=None, reason="r", actor="a")
    assert caught.value.reference == "no-such-call"
    assert state(services) == before


@pytest.mark.parametrize("amount", [Money(0, "EUR"), Money(-50, "EUR")])
def test_refund_of_a_zero_or_negative_amount_is_rejected(services, charged, amount):
    before = state(services)
    with pytest.raises(InvalidAmount):
        services.refunds.refund_call(call_id="call-1", amount=amount, reason="r", actor="a")
    assert state(services) == before


@pytest.mark.parametrize(
    ("reason", "actor", "message"),
    [
        ("", "agent", "reason is required"),
        ("   ", "agent", "reason is required"),
        (None, "agent", "reason"),
        ("r", "", "actor is required"),
        ("r", "  ", "actor is required"),
        ("r", None, "actor"),
    ],
)
def test_refund_without_reason_or_actor_is_rejected(services, charged, reason, actor, message):
    before = state(services)
    with pytest.raises(InvalidInput, match=message):
        services.refunds.refund_call(call_id="call-1", amount=eur("0.10"), reason=reason, actor=actor)
    assert state(services) == before


def test_refund_writes_an_audit_row(services, charged, clock):
    clock.advance(minutes=5)
    result = services.refunds.refund_call(
        call_id="call-1", amount=eur("0.30"), reason="echo on line", actor="agent:anna"
    )
    rows = services.db.read(
        lambda conn: (
            conn.execute(select(audit_log).where(audit_log.c.action == "call_charge.refunded")).mappings().all()
        )
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "agent:anna"
    assert (row["entity_type"], row["entity_id"], row["company_id"]) == ("call_charge", "call-1", charged.id)
    assert row["created_at"] == clock()
    assert json.loads(row["details"]) == {
        "amount": 30,
        "currency": "EUR",
        "reason": "echo on line",
        "ledger_entry": result.ledger_entry_id,
    }


def test_refund_lifts_a_negative_balance_and_touches_no_other_company(services, clock):
    company = new_company(services, funded="1.00")
    other = new_company(services, name="Other", funded="5.00")
    charge(services, company.id, "long-call", 600, clock())
    assert balance_cents(services, company.id) == -320
    result = services.refunds.refund_call(call_id="long-call", amount=None, reason="outage", actor="a")
    assert result.balance_after == eur("1.00")
    assert balance_cents(services, other.id) == 500
    assert_ledger_ok(services)


def test_result_serializes_money_as_minor_units_with_currency(services, charged):
    result = services.refunds.refund_call(call_id="call-1", amount=eur("0.50"), reason="r", actor="a")
    data = result.as_json()
    assert data["amount"] == {"cents": 50, "currency": "EUR"}
    assert data["refunded_total"] == {"cents": 50, "currency": "EUR"}
    assert data["charged"] == {"cents": 210, "currency": "EUR"}
    assert data["balance_after"] == {"cents": 840, "currency": "EUR"}
    assert data["refund_status"] == "partial" and data["replayed"] is False
