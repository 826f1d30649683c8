"""Manual credits and debits of a prepaid balance, on SQLite and MariaDB."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing_core.db.tables import audit_log, balances, ledger
from billing_core.errors import (
    CompanyNotFound,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidAmount,
    InvalidInput,
)
from billing_core.money import Money
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur, new_company


def state(services):
    """Every row an adjustment may touch, to prove that a rejected one changed nothing."""
    return services.db.read(
        lambda conn: {t.name: conn.execute(select(t).order_by(t.c.id)).all() for t in (balances, ledger, audit_log)}
    )


def adjustment_entries(services, company_id):
    return services.balances.history(company_id, types=["adjustment"]).entries


@pytest.fixture
def company(services):
    return new_company(services, funded="10.00")


def test_credit_adds_to_the_balance_with_reason_and_actor(services, company):
    result = services.adjustments.adjust(
        company_id=company.id, amount=eur("5.00"), reason="goodwill for outage", actor="support:ben"
    )
    assert not result.replayed
    entry = result.entry
    assert entry.type == "adjustment"
    assert entry.company_id == company.id
    assert entry.amount == eur("5.00")
    assert (entry.balance_before, entry.balance_after) == (eur("10.00"), eur("15.00"))
    assert entry.description == "goodwill for outage"
    assert entry.actor == "support:ben"
    assert entry.reference_type == "admin_adjustment"
    assert balance_cents(services, company.id) == 1500
    assert [e.id for e in adjustment_entries(services, company.id)] == [entry.id]
    assert_ledger_ok(services)


def test_debit_takes_from_the_balance(services, company):
    result = services.adjustments.adjust(
        company_id=company.id, amount=eur("-3.25"), reason="double top-up", actor="finance:eva"
    )
    assert result.entry.amount == eur("-3.25")
    assert result.entry.balance_after == eur("6.75")
    assert balance_cents(services, company.id) == 675
    assert_ledger_ok(services)


def test_debit_of_the_whole_available_balance_is_allowed(services, company):
    result = services.adjustments.adjust(
        company_id=company.id, amount=eur("-10.00"), reason="close account", actor="finance"
    )
    assert result.entry.balance_after == eur("0.00")
    assert balance_cents(services, company.id) == 0


def test_debit_beyond_the_available_balance_is_rejected_and_changes_nothing(services, company):
    before = state(services)
    with pytest.raises(InsufficientBalance) as caught:
        services.adjustments.adjust(company_id=company.id, amount=eur("-10.01"), reason="r", actor="a")
    error = caught.value
    assert (error.company_id, error.requested, error.available, error.currency) == (company.id, 1001, 1000, "EUR")
    assert state(services) == before


def test_debit_cannot_take_balance_reserved_for_a_running_call(services, company, clock):
    services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())  # holds 2.10
    before = state(services)
    with pytest.raises(InsufficientBalance) as caught:
        services.adjustments.adjust(company_id=company.id, amount=eur("-7.91"), reason="r", actor="a")
    assert caught.value.available == 790
    assert state(services) == before
    result = services.adjustments.adjust(company_id=company.id, amount=eur("-7.90"), reason="r", actor="a")
    assert result.entry.balance_after == eur("2.10")
    view = services.balances.get(company.id)
    assert (view.balance, view.reserved, view.available) == (eur("2.10"), eur("2.10"), eur("0.00"))
    assert_ledger_ok(services)


def test_credit_is_allowed_on_a_negative_balance(services, clock):
    company = new_company(services, funded="1.00")
    services.charging.charge_call(call_id="long", company_id=company.id, duration_seconds=600, started_at=clock())
    with pytest.raises(InsufficientBalance):
        services.adjustments.adjust(company_id=company.id, amount=eur("-0.01"), reason="r", actor="a")
    result = services.adjustments.adjust(company_id=company.id, amount=eur("3.20"), reason="settle debt", actor="a")
    assert result.entry.balance_after == eur("0.00")


def test_zero_amount_is_rejected(services, company):
    before = state(services)
    with pytest.raises(InvalidAmount, match="non-zero"):
        services.adjustments.adjust(company_id=company.id, amount=eur("0.00"), reason="r", actor="a")
    assert state(services) == before


@pytest.mark.parametrize("amount", [500, "5.00", None])
def test_amount_that_is_not_money_is_rejected(services, company, amount):
    with pytest.raises(InvalidAmount):
        services.adjustments.adjust(company_id=company.id, amount=amount, reason="r", actor="a")
    assert balance_cents(services, company.id) == 1000


@pytest.mark.parametrize(
    ("reason", "actor", "message"),
    [
        ("", "a", "reason is required"),
        ("  ", "a", "reason is required"),
        (None, "a", "reason is required"),
        ("r", "", "actor is required"),
        ("r", None, "actor is required"),
        ("x" * 501, "a", "reason is longer"),
    ],
)
def test_adjustment_without_reason_or_actor_is_rejected(services, company, reason, actor, message):
    before = state(services)
    with pytest.raises(InvalidInput, match=message):
        services.adjustments.adjust(company_id=company.id, amount=eur("1.00"), reason=reason, actor=actor)
    assert state(services) == before


def test_adjustment_in_another_currency_is_rejected_and_changes_nothing(services, company):
    before = state(services)
    with pytest.raises(CurrencyMismatch) as caught:
        services.adjustments.adjust(company_id=company.id, amount=Money(100, "USD"), reason="r", actor="a")
    assert (caught.value.expected, caught.value.got) == ("EUR", "USD")
    assert state(services) == before


def test_adjustment_of_an_unknown_company_is_rejected(services, company):
    before = state(services)
    with pytest.raises(CompanyNotFound) as caught:
        services.adjustments.adjust(company_id=company.id + 1000, amount=eur("1.00"), reason="r", actor="a")
    assert caught.value.company_id == company.id + 1000
    assert state(services) == before


@pytest.mark.parametrize("company_id", [0, -1, True, "1"])
def test_adjustment_with_a_malformed_company_id_is_rejected(services, company, company_id):
    with pytest.raises(InvalidInput, match="company id"):
        services.adjustments.adjust(company_id=company_id, amount=eur("1.00"), reason="r", actor="a")


def test_repeat_with_the_same_idempotency_key_is_replayed_and_moves_no_money(services, company):
    first = services.adjustments.adjust(
        company_id=company.id, amount=eur("2.50"), reason="r", actor="a", idempotency_key="ticket-7"
    )
    after_first = state(services)
    again = services.adjustments.adjust(
        company_id=company.id, amount=eur("2.50"), reason="r", actor="a", idempotency_key="ticket-7"
    )
    assert again.replayed and not first.replayed
    assert again.entry == first.entry
    assert state(services) == after_first
    assert balance_cents(services, company.id) == 1250


def test_replayed_debit_is_not_rejected_for_the_balance_it_already_took(services, company):
    services.adjustments.adjust(
        company_id=company.id, amount=eur("-10.00"), reason="r", actor="a", idempotency_key="close-1"
    )
    again = services.adjustments.adjust(
        company_id=company.id, amount=eur("-10.00"), reason="r", actor="a", idempotency_key="close-1"
    )
    assert again.replayed
    assert again.entry.balance_after == eur("0.00")
    assert balance_cents(services, company.id) == 0


def test_adjustments_without_a_key_are_never_deduplicated(services, company):
    services.adjustments.adjust(company_id=company.id, amount=eur("1.00"), reason="r", actor="a")
    services.adjustments.adjust(company_id=company.id, amount=eur("1.00"), reason="r", actor="a")
    assert balance_cents(services, company.id) == 1200
    assert len(adjustment_entries(services, company.id)) == 2


@pytest.mark.parametrize("amount", ["2.51", "-2.50"])
def test_same_key_with_a_different_amount_is_rejected_and_changes_nothing(services, company, amount):
    services.adjustments.adjust(
        company_id=company.id, amount=eur("2.50"), reason="r", actor="a", idempotency_key="ticket-7"
    )
    before = state(services)
    with pytest.raises(IdempotencyKeyReused) as caught:
        services.adjustments.adjust(
            company_id=company.id, amount=eur(amount), reason="r", actor="a", idempotency_key="ticket-7"
        )
    assert caught.value.key == "ticket-7"
    assert state(services) == before


def test_same_key_for_another_company_is_rejected_and_changes_nothing(services, company):
    other = new_company(services, name="Other", funded="10.00")
    services.adjustments.adjust(
        company_id=company.id, amount=eur("2.50"), reason="r", actor="a", idempotency_key="ticket-7"
    )
    before = state(services)
    with pytest.raises(IdempotencyKeyReused):
        services.adjustments.adjust(
            company_id=other.id, amount=eur("2.50"), reason="r", actor="a", idempotency_key="ticket-7"
        )
    assert state(services) == before


def test_idempotency_key_with_whitespace_is_rejected(services, company):
    with pytest.raises(InvalidInput, match="whitespace"):
        services.adjustments.adjust(
            company_id=company.id, amount=eur("1.00"), reason="r", actor="a", idempotency_key="ticket 7"
        )


def test_adjustment_writes_an_audit_row(services, company, clock):
    clock.advance(hours=1)
    result = services.adjustments.adjust(
        company_id=company.id, amount=eur("-1.50"), reason="wrong top-up", actor="finance:eva", idempotency_key="fix-1"
    )
    services.adjustments.adjust(
        company_id=company.id, amount=eur("-1.50"), reason="wrong top-up", actor="finance:eva", idempotency_key="fix-1"
    )
    rows = services.db.read(
        lambda conn: conn.execute(select(audit_log).where(audit_log.c.action == "balance.adjusted")).mappings().all()
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "finance:eva"
    assert (row["entity_type"], row["entity_id"]) == ("balance_transaction", str(result.entry.id))
    assert row["company_id"] == company.id
    assert row["created_at"] == clock()
    assert json.loads(row["details"]) == {"amount": -150, "currency": "EUR", "reason": "wrong top-up"}


def test_result_serializes_money_as_minor_units_with_currency(services, company):
    data = services.adjustments.adjust(company_id=company.id, amount=eur("-1.50"), reason="r", actor="a").as_json()
    assert data["amount"] == {"cents": -150, "currency": "EUR"}
    assert data["balance_before"] == {"cents": 1000, "currency": "EUR"}
    assert data["balance_after"] == {"cents": 850, "currency": "EUR"}
    assert data["type"] == "adjustment" and data["replayed"] is False
