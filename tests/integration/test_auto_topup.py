from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from billing_core.db.tables import notifications
from tests.integration.helpers import assert_ledger_ok, eur
from tests.integration.stripe_helpers import (
    CARD_DECLINED_ON_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    company_with_method,
    money,
)


def queued_kinds(services, company_id):
    return services.db.read(lambda conn: sorted(
        conn.execute(select(notifications.c.kind).where(notifications.c.company_id == company_id)).scalars()
    ))


def test_auto_topup_charges_the_saved_card_once_below_threshold(stripe_services):
    company_id, _ = company_with_method(stripe_services)
    outcome = stripe_services.stripe.auto_topup.trigger(company_id)
    assert outcome.triggered and outcome.topup is not None
    assert outcome.topup.status == "succeeded" and outcome.topup.stripe_payment_intent_id
    assert money(stripe_services, company_id) == eur("55.00")
    again = stripe_services.stripe.auto_topup.trigger(company_id)
    assert not again.triggered and "not below the threshold" in again.reason
    assert "auto_topup_succeeded" in queued_kinds(stripe_services, company_id)
    assert_ledger_ok(stripe_services)


def test_declined_card_fails_the_attempt_without_credit_and_notifies(stripe_services):
    company_id, _ = company_with_method(stripe_services, card=CARD_DECLINED_ON_CHARGE)
    outcome = stripe_services.stripe.auto_topup.trigger(company_id)
    assert outcome.topup is not None and outcome.topup.status == "failed"
    assert outcome.topup.failure_code == "card_declined"
    assert money(stripe_services, company_id) == eur("5.00")
    assert {"auto_topup_failed", "payment_failed"} <= set(queued_kinds(stripe_services, company_id))


def test_card_needing_authentication_fails_and_asks_for_a_new_method(stripe_services):
    company_id, _ = company_with_method(stripe_services, card=CARD_NEEDS_AUTHENTICATION)
    outcome = stripe_services.stripe.auto_topup.trigger(company_id)
    assert outcome.topup is not None and outcome.topup.status == "failed"
    assert outcome.topup.failure_code == "authentication_required"
    assert "update the payment method" in (outcome.topup.failure_reason or "")
    assert money(stripe_services, company_id) == eur("5.00")


def test_third_trigger_on_one_day_does_nothing_and_says_why(stripe_services, clock):
    company_id, _ = company_with_method(stripe_services, card=CARD_DECLINED_ON_CHARGE)
    stripe_services.companies.set(company_id, actor="test", auto_topup_daily_limit=2)
    first = stripe_services.stripe.auto_topup.trigger(company_id)
    second = stripe_services.stripe.auto_topup.trigger(company_id)
    third = stripe_services.stripe.auto_topup.trigger(company_id)
    assert first.triggered and second.triggered
    assert not third.triggered and "daily limit of 2" in third.reason
    clock.advance(days=1)
    assert stripe_services.stripe.auto_topup.trigger(company_id).triggered


def test_consecutive_failures_switch_auto_topup_off(stripe_services, clock):
    company_id, _ = company_with_method(stripe_services, card=CARD_DECLINED_ON_CHARGE)
    outcomes = []
    for _ in range(3):
        outcomes.append(stripe_services.stripe.auto_topup.trigger(company_id))
        clock.advance(days=1)
    assert outcomes[-1].disabled and "switched off after 3" in outcomes[-1].reason
    company = stripe_services.companies.show(company_id)
    assert not company.auto_topup_enabled
    assert "auto_topup_disabled" in queued_kinds(stripe_services, company_id)
    assert not stripe_services.stripe.auto_topup.trigger(company_id).triggered


def test_two_concurrent_triggers_make_one_attempt(stripe_services):
    company_id, _ = company_with_method(stripe_services)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: stripe_services.stripe.auto_topup.trigger(company_id), range(2)))
    assert sorted(o.triggered for o in outcomes) == [False, True]
    assert money(stripe_services, company_id) == eur("55.00")
    assert len(stripe_services.topups.list(company_id=company_id, status="succeeded")) == 2  # seed + auto


def test_monthly_cap_blocks_an_auto_topup_that_would_exceed_it(stripe_services):
    company_id, _ = company_with_method(stripe_services)
    stripe_services.companies.set(company_id, actor="test", auto_topup_monthly_limit=eur("40.00"))
    outcome = stripe_services.stripe.auto_topup.trigger(company_id)
    assert not outcome.triggered and "monthly cap" in outcome.reason
