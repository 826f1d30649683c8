"""Top-ups credited exactly once, with their bonus as a separate ledger entry, on SQLite and MariaDB."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from billing_core.db.tables import audit_log, balances, ledger, topups
from billing_core.errors import (
    CompanyNotFound,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvalidAmount,
    InvalidInput,
    InvalidTopupState,
    TopupNotFound,
)
from billing_core.money import Money
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur, new_company


def state(services):
    """Every row a top-up may touch, to prove that a rejected one changed nothing."""
    return services.db.read(
        lambda conn: {
            t.name: conn.execute(select(t).order_by(t.c.id)).all() for t in (balances, ledger, topups, audit_log)
        }
    )


def entries(services, company_id, *types):
    return services.balances.history(company_id, types=list(types) or None).entries


def set_topup_status(services, topup_id, status, failure_reason=None):
    with services.db.engine.begin() as conn:
        conn.execute(update(topups).where(topups.c.id == topup_id).values(status=status, failure_reason=failure_reason))


def pay(services, company_id, amount, reference="TR-1", **kwargs):
    return services.topups.record_payment(
        company_id=company_id, amount=eur(amount), reference=reference, actor="finance:eva", **kwargs
    )


def usd_company(services):
    return services.companies.add(name="US Dental", email="ap@us-dental.example", actor="test", currency="USD")


@pytest.fixture
def company(services):
    return new_company(services)


# -- recorded payments ---------------------------------------------------------------------------------


def test_recorded_payment_is_credited_as_a_succeeded_topup(services, company, clock):
    result = pay(services, company.id, "100.00", reference="SEPA-2026-001")
    assert result.credited_now
    assert result.balance_after == eur("100.00")
    topup = result.topup
    assert topup.company_id == company.id
    assert topup.amount == eur("100.00")
    assert topup.bonus == eur("0.00")
    assert topup.status == "succeeded"
    assert topup.source == "bank_transfer"
    assert topup.reference == "SEPA-2026-001"
    assert topup.initiated_by == "finance:eva"
    assert topup.succeeded_at == clock()
    assert balance_cents(services, company.id) == 10000
    [entry] = entries(services, company.id)
    assert entry.type == "topup"
    assert entry.amount == eur("100.00")
    assert (entry.reference_type, entry.reference_id) == ("balance_topup", str(topup.id))
    assert entry.actor == "finance:eva"
    assert_ledger_ok(services)


def test_recording_the_same_reference_again_credits_nothing(services, company):
    first = pay(services, company.id, "100.00", reference="SEPA-2026-001")
    after_first = state(services)
    again = pay(services, company.id, "100.00", reference="SEPA-2026-001")
    assert first.credited_now and not again.credited_now
    assert again.topup.id == first.topup.id
    assert again.topup.status == "succeeded"
    assert again.balance_after == eur("100.00")
    assert state(services) == after_first


def test_same_reference_with_a_different_amount_is_rejected_and_changes_nothing(services, company):
    pay(services, company.id, "100.00", reference="SEPA-2026-001")
    before = state(services)
    with pytest.raises(IdempotencyKeyReused):
        pay(services, company.id, "100.01", reference="SEPA-2026-001")
    assert state(services) == before


def test_payments_with_different_references_are_both_credited(services, company):
    pay(services, company.id, "100.00", reference="SEPA-1")
    pay(services, company.id, "100.00", reference="SEPA-2")
    assert balance_cents(services, company.id) == 20000
    assert len(entries(services, company.id, "topup")) == 2


def test_the_same_reference_for_two_companies_is_two_payments(services, company):
    other = new_company(services, name="Other")
    pay(services, company.id, "10.00", reference="SEPA-1")
    pay(services, other.id, "20.00", reference="SEPA-1")
    assert (balance_cents(services, company.id), balance_cents(services, other.id)) == (1000, 2000)


def test_recorded_payment_writes_an_audit_row(services, company, clock):
    result = pay(services, company.id, "100.00", reference="SEPA-2026-001")
    pay(services, company.id, "100.00", reference="SEPA-2026-001")
    rows = services.db.read(
        lambda conn: conn.execute(select(audit_log).where(audit_log.c.action == "topup.recorded")).mappings().all()
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "finance:eva"
    assert (row["entity_type"], row["entity_id"], row["company_id"]) == (
        "balance_topup",
        str(result.topup.id),
        company.id,
    )
    assert row["created_at"] == clock()
    assert json.loads(row["details"]) == {
        "amount": 10000,
        "currency": "EUR",
        "reference": "SEPA-2026-001",
        "source": "bank_transfer",
    }


def test_bank_reference_with_spaces_can_be_recorded(services, company):
    result = pay(services, company.id, "100.00", reference="RF18 5390 0754 7034")
    assert result.credited_now
    assert not pay(services, company.id, "100.00", reference="RF18 5390 0754 7034").credited_now
    assert balance_cents(services, company.id) == 10000


def test_long_bank_reference_can_be_recorded(services, company):
    assert pay(services, company.id, "100.00", reference="R" * 190).credited_now


def test_recorded_payment_in_another_currency_is_rejected_and_changes_nothing(services, company):
    before = state(services)
    with pytest.raises(CurrencyMismatch):
        services.topups.record_payment(company_id=company.id, amount=Money(10000, "USD"), reference="TR-1", actor="a")
    assert state(services) == before


def test_recorded_payment_for_an_unknown_company_is_rejected(services, company):
    before = state(services)
    with pytest.raises(CompanyNotFound):
        pay(services, company.id + 1000, "100.00")
    assert state(services) == before


@pytest.mark.parametrize("amount", ["0.00", "-5.00"])
def test_recorded_payment_of_zero_or_less_is_rejected(services, company, amount):
    with pytest.raises(InvalidAmount):
        pay(services, company.id, amount)
    assert balance_cents(services, company.id) == 0


@pytest.mark.parametrize(("reference", "actor"), [("", "a"), ("  ", "a"), ("TR-1", ""), ("TR-1", None)])
def test_recorded_payment_without_reference_or_actor_is_rejected(services, company, reference, actor):
    with pytest.raises(InvalidInput):
        services.topups.record_payment(company_id=company.id, amount=eur("10.00"), reference=reference, actor=actor)
    assert balance_cents(services, company.id) == 0


# -- bonus rules ---------------------------------------------------------------------------------------


def add_rule(services, name, min_topup, percent="0", **kwargs):
    return services.bonus_rules.add(
        name=name, min_topup=eur(min_topup), bonus_percent=Decimal(percent), actor="test", **kwargs
    )


@pytest.fixture
def tiers(services):
    add_rule(services, "5% from 100", "100.00", "5")
    add_rule(services, "10% from 500", "500.00", "10")


def test_global_tier_bonus_is_posted_as_a_separate_bonus_entry(services, company, tiers):
    result = pay(services, company.id, "500.00")
    assert result.topup.bonus == eur("50.00")
    assert result.balance_after == eur("550.00")
    topup_entry, bonus_entry = sorted(entries(services, company.id), key=lambda e: e.id)
    assert (topup_entry.type, topup_entry.amount) == ("topup", eur("500.00"))
    assert (bonus_entry.type, bonus_entry.amount) == ("bonus", eur("50.00"))
    assert (bonus_entry.balance_before, bonus_entry.balance_after) == (eur("500.00"), eur("550.00"))
    assert (bonus_entry.reference_type, bonus_entry.reference_id) == ("balance_topup", str(result.topup.id))
    assert bonus_entry.description == f"Bonus '10% from 500' on top-up {result.topup.id}"
    assert services.topups.get(result.topup.id).bonus == eur("50.00")
    assert_ledger_ok(services)


def test_lower_tier_applies_below_the_higher_one_rounding_half_up(services, company, tiers):
    result = pay(services, company.id, "499.99")  # 5% = 24.9995
    assert result.topup.bonus == eur("25.00")
    assert balance_cents(services, company.id) == 49999 + 2500


def test_topup_below_every_tier_gets_no_bonus_entry(services, company, tiers):
    result = pay(services, company.id, "99.99")
    assert result.topup.bonus == eur("0.00")
    assert entries(services, company.id, "bonus") == []
    assert balance_cents(services, company.id) == 9999


def test_bonus_is_credited_once_when_the_payment_is_recorded_again(services, company, tiers):
    pay(services, company.id, "500.00")
    pay(services, company.id, "500.00")
    assert len(entries(services, company.id, "bonus")) == 1
    assert balance_cents(services, company.id) == 55000


def test_company_rule_beats_a_global_rule_giving_the_same_bonus(services, company, tiers):
    other = new_company(services, name="Other")
    add_rule(services, "Weber special", "500.00", "10", company_id=company.id)
    add_rule(services, "Global twin", "500.00", "10")
    pay(services, company.id, "500.00")
    pay(services, other.id, "500.00")
    [own] = entries(services, company.id, "bonus")
    [theirs] = entries(services, other.id, "bonus")
    assert own.amount == theirs.amount == eur("50.00")
    assert "'Weber special'" in own.description
    assert "'10% from 500'" in theirs.description


def test_the_rule_giving_the_most_credit_wins(services, company, tiers):
    add_rule(services, "Weber small", "500.00", "2", company_id=company.id)
    result = pay(services, company.id, "500.00")
    assert result.topup.bonus == eur("50.00")
    assert "'10% from 500'" in entries(services, company.id, "bonus")[0].description


def test_rule_applies_only_inside_its_validity_window(services, company, clock):
    start = clock() + timedelta(days=1)
    add_rule(services, "Black week", "10.00", "20", valid_from=start, valid_until=start + timedelta(days=7))
    assert pay(services, company.id, "10.00", reference="before").topup.bonus == eur("0.00")
    clock.now = start
    assert pay(services, company.id, "10.00", reference="first-day").topup.bonus == eur("2.00")
    clock.now = start + timedelta(days=7) - timedelta(microseconds=1)
    assert pay(services, company.id, "10.00", reference="last-moment").topup.bonus == eur("2.00")
    clock.now = start + timedelta(days=7)
    assert pay(services, company.id, "10.00", reference="after").topup.bonus == eur("0.00")
    assert balance_cents(services, company.id) == 4000 + 400


def test_bonus_is_capped_at_the_rule_maximum(services, company):
    add_rule(services, "10% up to 20", "100.00", "10", max_bonus=eur("20.00"))
    assert pay(services, company.id, "150.00", reference="a").topup.bonus == eur("15.00")
    assert pay(services, company.id, "1000.00", reference="b").topup.bonus == eur("20.00")


def test_rule_with_a_maximum_top_up_does_not_apply_above_it(services, company):
    add_rule(services, "small tier", "100.00", "5", max_topup=eur("199.99"))
    assert pay(services, company.id, "199.99", reference="a").topup.bonus == eur("10.00")
    assert pay(services, company.id, "200.00", reference="b").topup.bonus == eur("0.00")


def test_fixed_bonus_is_added_to_the_percentage(services, company):
    add_rule(services, "5% plus 3", "100.00", "5", bonus_fixed=eur("3.00"))
    assert pay(services, company.id, "100.00").topup.bonus == eur("8.00")


def test_rule_in_another_currency_is_ignored(services, company):
    services.bonus_rules.add(name="USD promo", min_topup=Money(100, "USD"), bonus_percent=Decimal(50), actor="t")
    add_rule(services, "EUR promo", "1000.00", "10")
    assert pay(services, company.id, "100.00").topup.bonus == eur("0.00")
    us = usd_company(services)
    result = services.topups.record_payment(company_id=us.id, amount=Money(10000, "USD"), reference="W-1", actor="a")
    assert result.topup.bonus == Money(5000, "USD")
    assert result.balance_after == Money(15000, "USD")
    assert_ledger_ok(services)


def test_deactivated_rule_is_ignored(services, company):
    rule = add_rule(services, "gone", "10.00", "10")
    services.bonus_rules.deactivate(rule["id"], actor="test")
    assert pay(services, company.id, "100.00").topup.bonus == eur("0.00")


def test_rule_of_another_company_is_ignored(services, company):
    other = new_company(services, name="Other")
    add_rule(services, "Other's deal", "10.00", "10", company_id=other.id)
    assert pay(services, company.id, "100.00").topup.bonus == eur("0.00")
    assert pay(services, other.id, "100.00").topup.bonus == eur("10.00")


# -- pending top-ups and settlement ---------------------------------------------------------------------


def pending(services, company_id, amount="50.00", key="pi-key-1", **kwargs):
    return services.topups.create_pending(
        company_id=company_id,
        amount=eur(amount),
        source="payment_intent",
        initiated_by="mcp:assistant",
        idempotency_key=key,
        **kwargs,
    )


def test_pending_topup_moves_no_money_until_settled(services, company, clock):
    topup = pending(services, company.id)
    assert topup.status == "pending"
    assert topup.amount == eur("50.00")
    assert topup.succeeded_at is None
    assert balance_cents(services, company.id) == 0
    assert entries(services, company.id) == []
    clock.advance(seconds=30)
    result = services.topups.settle(topup.id, stripe_payment_intent_id="pi_123")
    assert result.credited_now
    assert result.balance_after == eur("50.00")
    assert result.topup.status == "succeeded"
    assert result.topup.succeeded_at == clock()
    assert result.topup.stripe_payment_intent_id == "pi_123"
    assert balance_cents(services, company.id) == 5000
    assert_ledger_ok(services)


def test_settling_twice_credits_exactly_once(services, company, tiers):
    topup = pending(services, company.id, amount="100.00")
    first = services.topups.settle(topup.id)
    after_first = state(services)
    second = services.topups.settle(topup.id)
    assert first.credited_now and not second.credited_now
    assert second.topup == first.topup
    assert second.balance_after == eur("105.00")
    assert state(services) == after_first
    assert len(entries(services, company.id, "topup")) == 1
    assert len(entries(services, company.id, "bonus")) == 1


def test_creating_the_same_pending_topup_again_returns_the_same_row(services, company):
    first = pending(services, company.id)
    again = pending(services, company.id)
    assert again == first
    assert services.db.read(lambda conn: len(conn.execute(select(topups)).all())) == 1


@pytest.mark.parametrize("amount", ["50.01", "49.99"])
def test_same_pending_key_with_a_different_amount_is_rejected(services, company, amount):
    pending(services, company.id)
    before = state(services)
    with pytest.raises(IdempotencyKeyReused):
        pending(services, company.id, amount=amount)
    assert state(services) == before


def test_same_pending_key_for_another_company_is_rejected(services, company):
    other = new_company(services, name="Other")
    pending(services, company.id)
    with pytest.raises(IdempotencyKeyReused):
        pending(services, other.id)


def test_failed_topup_can_still_be_settled(services, company):
    topup = pending(services, company.id)
    set_topup_status(services, topup.id, "failed", "card_declined")
    assert services.topups.get(topup.id).failure_reason == "card_declined"
    result = services.topups.settle(topup.id)
    assert result.credited_now
    assert result.topup.status == "succeeded"
    assert result.topup.failure_reason is None
    assert balance_cents(services, company.id) == 5000
    assert_ledger_ok(services)


@pytest.mark.parametrize("status", ["canceled", "expired"])
def test_topup_in_a_final_state_cannot_be_settled(services, company, status):
    topup = pending(services, company.id)
    set_topup_status(services, topup.id, status)
    before = state(services)
    with pytest.raises(InvalidTopupState, match=status):
        services.topups.settle(topup.id)
    assert state(services) == before


def test_pending_topup_in_another_currency_is_rejected(services, company):
    before = state(services)
    with pytest.raises(CurrencyMismatch) as caught:
        services.topups.create_pending(
            company_id=company.id, amount=Money(5000, "USD"), source="checkout", initiated_by=None, idempotency_key="k"
        )
    assert (caught.value.expected, caught.value.got) == ("EUR", "USD")
    assert state(services) == before


def test_pending_topup_for_an_unknown_company_is_rejected(services, company):
    before = state(services)
    with pytest.raises(CompanyNotFound):
        pending(services, company.id + 1000)
    assert state(services) == before


def test_settling_an_unknown_topup_is_rejected(services, company):
    with pytest.raises(TopupNotFound) as caught:
        services.topups.settle(424242)
    assert caught.value.topup_id == 424242
    with pytest.raises(TopupNotFound):
        services.topups.get(424242)


def test_settle_result_serializes_money_as_minor_units_with_currency(services, company, tiers):
    data = pay(services, company.id, "100.00").as_json()
    assert data["amount"] == {"cents": 10000, "currency": "EUR"}
    assert data["bonus"] == {"cents": 500, "currency": "EUR"}
    assert data["balance_after"] == {"cents": 10500, "currency": "EUR"}
    assert data["refunded"] == {"cents": 0, "currency": "EUR"}
    assert data["status"] == "succeeded" and data["credited_now"] is True
