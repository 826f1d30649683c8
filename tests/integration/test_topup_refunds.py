"""Refunds of Stripe top-ups against the localstripe emulator: ledger, bonus taken back in proportion, limits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from billing_core.db.tables import balances, ledger, topup_refunds, topups
from billing_core.errors import (
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidTopupState,
    RefundExceedsCharge,
)
from tests.integration.helpers import assert_ledger_ok, balance_cents, charge, eur, new_company
from tests.integration.stripe_faults import CREATE_REFUND, emulator_refunds, services_with_faults
from tests.integration.stripe_helpers import CARD_DECLINED_ON_CHARGE, create_card


def stripe_topup(services, amount, *, card=None, company=None):
    """A company that paid ``amount`` by card through Stripe; returns (company id, top-up)."""
    company = company or new_company(services)
    method = create_card(services, card) if card else create_card(services, "4242424242424242")
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    outcome = services.stripe.payments.pay_with_saved_method(
        company_id=company.id, amount=eur(amount), payment_method_id=method, initiated_by="api:client",
        idempotency_key=f"pay-{company.id}-{amount}",
    )
    return company.id, outcome.topup


def ten_percent_from_100(services):
    services.bonus_rules.add(name="10 % ab 100 €", min_topup=eur("100.00"), bonus_percent=Decimal("10"), actor="test")


def refund(services, topup_id, amount=None, key="refund-1"):
    return services.stripe.topup_refunds.refund(
        topup_id=topup_id, amount=None if amount is None else eur(amount), reason="customer cancelled",
        actor="support:anna", idempotency_key=key,
    )


def refund_entries(services, company_id):
    """(type, signed cents, reference id) of the refund-side ledger entries, oldest first."""
    rows = services.balances.history(company_id, types=["refund", "reversal"]).entries
    return [(e.type, e.amount.cents, e.reference_id) for e in reversed(rows)]


def state(services):
    """Every row a refund may touch, to prove that a rejected one changed nothing."""
    return services.db.read(
        lambda conn: {t.name: conn.execute(select(t).order_by(t.c.id)).all()
                      for t in (balances, ledger, topups, topup_refunds)}
    )


# -- full and partial refunds --------------------------------------------------------------------------------


def test_full_refund_returns_the_payment_and_takes_back_the_whole_bonus(stripe_services):
    ten_percent_from_100(stripe_services)
    company_id, topup = stripe_topup(stripe_services, "150.00")
    assert topup.bonus == eur("15.00")
    assert balance_cents(stripe_services, company_id) == 16500

    result = refund(stripe_services, topup.id)

    assert result.status == "succeeded"
    assert result.amount == eur("150.00")
    assert result.bonus_reversed == eur("15.00")
    assert result.stripe_refund_id and result.stripe_refund_id.startswith("re_")
    assert refund_entries(stripe_services, company_id) == [
        ("refund", -15000, str(result.id)),
        ("reversal", -1500, str(result.id)),
    ]
    after = stripe_services.topups.get(topup.id)
    assert after.status == "refunded"
    assert after.refunded == eur("150.00")
    view = stripe_services.balances.get(company_id)
    assert (view.balance.cents, view.reserved.cents) == (0, 0)
    [at_stripe] = emulator_refunds(stripe_services, topup.stripe_payment_intent_id)
    assert (at_stripe.id, at_stripe.amount, at_stripe.status) == (result.stripe_refund_id, 15000, "succeeded")
    assert at_stripe.metadata["topup_refund_id"] == str(result.id)
    assert_ledger_ok(stripe_services)


def test_partial_refunds_take_back_the_bonus_in_proportion_and_the_last_one_takes_the_rest(stripe_services):
    ten_percent_from_100(stripe_services)
    company_id, topup = stripe_topup(stripe_services, "150.00")

    first = refund(stripe_services, topup.id, "33.33", key="r-1")

    assert first.bonus_reversed == eur("3.33")  # 15.00 * 33.33 / 150.00 = 3.333, rounded down
    partly = stripe_services.topups.get(topup.id)
    assert partly.status == "partially_refunded"
    assert partly.refunded == eur("33.33")
    assert balance_cents(stripe_services, company_id) == 16500 - 3333 - 333
    assert_ledger_ok(stripe_services)

    rest = refund(stripe_services, topup.id, key="r-2")

    assert rest.amount == eur("116.67")
    assert rest.bonus_reversed == eur("11.67")  # what is left of the bonus, so nothing drifts
    assert refund_entries(stripe_services, company_id) == [
        ("refund", -3333, str(first.id)),
        ("reversal", -333, str(first.id)),
        ("refund", -11667, str(rest.id)),
        ("reversal", -1167, str(rest.id)),
    ]
    done = stripe_services.topups.get(topup.id)
    assert done.status == "refunded" and done.refunded == eur("150.00")
    assert balance_cents(stripe_services, company_id) == 0
    assert sorted(r.amount for r in emulator_refunds(stripe_services, topup.stripe_payment_intent_id)) == [3333, 11667]
    assert_ledger_ok(stripe_services)


def test_partial_refund_of_a_topup_without_bonus_posts_only_the_refund(stripe_services):
    company_id, topup = stripe_topup(stripe_services, "50.00")

    result = refund(stripe_services, topup.id, "20.00")

    assert result.bonus_reversed == eur("0.00")
    assert refund_entries(stripe_services, company_id) == [("refund", -2000, str(result.id))]
    after = stripe_services.topups.get(topup.id)
    assert (after.status, after.refunded.cents) == ("partially_refunded", 2000)
    assert balance_cents(stripe_services, company_id) == 3000
    assert_ledger_ok(stripe_services)


# -- limits ----------------------------------------------------------------------------------------------


def test_refund_beyond_what_was_paid_minus_refunded_is_rejected_and_changes_nothing(stripe_services):
    company_id, topup = stripe_topup(stripe_services, "50.00")
    refund(stripe_services, topup.id, "30.00", key="r-1")
    before = state(stripe_services)

    with pytest.raises(RefundExceedsCharge) as exceeded:
        refund(stripe_services, topup.id, "20.01", key="r-2")

    assert (exceeded.value.requested, exceeded.value.refundable) == (2001, 2000)
    assert state(stripe_services) == before
    assert len(emulator_refunds(stripe_services, topup.stripe_payment_intent_id)) == 1
    refund(stripe_services, topup.id, "20.00", key="r-3")
    with pytest.raises(RefundExceedsCharge):
        refund(stripe_services, topup.id, key="r-4")
    assert stripe_services.topups.get(topup.id).refunded == eur("50.00")
    assert balance_cents(stripe_services, company_id) == 0
    assert_ledger_ok(stripe_services)


def test_refund_beyond_the_available_balance_is_rejected_and_changes_nothing(stripe_services, clock):
    company_id, topup = stripe_topup(stripe_services, "50.00")
    charge(stripe_services, company_id, "call-1", 1800, clock())  # 30 min at 0.42 = 12.60
    assert balance_cents(stripe_services, company_id) == 3740
    before = state(stripe_services)

    with pytest.raises(InsufficientBalance) as short:
        refund(stripe_services, topup.id)

    assert (short.value.requested, short.value.available) == (5000, 3740)
    assert state(stripe_services) == before
    assert emulator_refunds(stripe_services, topup.stripe_payment_intent_id) == []
    assert refund(stripe_services, topup.id, "37.40", key="r-2").status == "succeeded"
    assert balance_cents(stripe_services, company_id) == 0
    assert_ledger_ok(stripe_services)


def test_the_bonus_to_take_back_counts_against_the_available_balance(stripe_services, clock):
    ten_percent_from_100(stripe_services)
    company_id, topup = stripe_topup(stripe_services, "100.00")  # + 10.00 bonus
    charge(stripe_services, company_id, "call-1", 1429, clock())  # 10.00 (1429 s at 0.42/min, half up)
    assert balance_cents(stripe_services, company_id) == 10000
    before = state(stripe_services)

    with pytest.raises(InsufficientBalance) as short:
        refund(stripe_services, topup.id)

    assert (short.value.requested, short.value.available) == (11000, 10000)
    assert state(stripe_services) == before


def test_the_same_idempotency_key_twice_refunds_once(stripe_services):
    company_id, topup = stripe_topup(stripe_services, "50.00")

    first = refund(stripe_services, topup.id, "20.00", key="ticket-4711")
    second = refund(stripe_services, topup.id, "20.00", key="ticket-4711")
    unspecified = refund(stripe_services, topup.id, None, key="ticket-4711")

    assert second == first and unspecified == first
    assert refund_entries(stripe_services, company_id) == [("refund", -2000, str(first.id))]
    assert stripe_services.topups.get(topup.id).refunded == eur("20.00")
    assert len(emulator_refunds(stripe_services, topup.stripe_payment_intent_id)) == 1
    with pytest.raises(IdempotencyKeyReused):
        refund(stripe_services, topup.id, "25.00", key="ticket-4711")
    assert balance_cents(stripe_services, company_id) == 3000
    assert_ledger_ok(stripe_services)


# -- what cannot be refunded through Stripe --------------------------------------------------------------


def test_a_topup_recorded_by_bank_transfer_cannot_be_refunded_through_stripe(stripe_services):
    company = new_company(stripe_services, funded="100.00")
    [topup] = stripe_services.topups.list(company_id=company.id)
    assert topup.source == "bank_transfer"
    before = state(stripe_services)

    with pytest.raises(InvalidTopupState, match="not paid through Stripe"):
        refund(stripe_services, topup.id, "10.00")

    assert state(stripe_services) == before
    assert_ledger_ok(stripe_services)


def test_a_failed_stripe_topup_cannot_be_refunded(stripe_services):
    company_id, topup = stripe_topup(stripe_services, "50.00", card=CARD_DECLINED_ON_CHARGE)
    assert topup.status == "failed"
    before = state(stripe_services)

    with pytest.raises(InvalidTopupState, match="is failed"):
        refund(stripe_services, topup.id)

    assert state(stripe_services) == before


# -- two phases ------------------------------------------------------------------------------------------


def test_a_refund_waiting_for_stripe_holds_its_amount_and_counts_against_the_next_one(
    stripe_services, settings, clock, localstripe
):
    ten_percent_from_100(stripe_services)
    company_id, topup = stripe_topup(stripe_services, "100.00")  # balance 110.00
    with services_with_faults(settings, clock, localstripe.url, unreachable=(CREATE_REFUND,)) as (faulty, _):
        pending = refund(faulty, topup.id, "60.00", key="r-1")

    assert pending.status == "pending" and pending.stripe_refund_id is None
    assert pending.bonus_reversed == eur("6.00")
    view = stripe_services.balances.get(company_id)
    assert (view.balance.cents, view.reserved.cents, view.available.cents) == (11000, 6600, 4400)
    assert refund_entries(stripe_services, company_id) == []
    with pytest.raises(RefundExceedsCharge) as exceeded:
        refund(stripe_services, topup.id, "40.01", key="r-2")
    assert exceeded.value.refundable == 4000
    assert emulator_refunds(stripe_services, topup.stripe_payment_intent_id) == []
    assert_ledger_ok(stripe_services)


def test_a_refund_stripe_refuses_releases_its_hold_and_changes_nothing_else(
    stripe_services, settings, clock, localstripe
):
    company_id, topup = stripe_topup(stripe_services, "50.00")
    with services_with_faults(settings, clock, localstripe.url, reject=(CREATE_REFUND,)) as (faulty, _):
        failed = refund(faulty, topup.id, "20.00")

    assert failed.status == "failed"
    assert "already been refunded" in (failed.failure_reason or "")
    view = stripe_services.balances.get(company_id)
    assert (view.balance.cents, view.reserved.cents) == (5000, 0)
    after = stripe_services.topups.get(topup.id)
    assert (after.status, after.refunded.cents) == ("succeeded", 0)
    assert refund_entries(stripe_services, company_id) == []
    assert refund(stripe_services, topup.id, "50.00", key="r-2").status == "succeeded"
    assert_ledger_ok(stripe_services)
