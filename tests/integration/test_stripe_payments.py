"""API payments with saved methods against the localstripe emulator: credited once, whatever is repeated.

Also customers (one per company) and saved payment methods (list, choose for auto top-up, detach).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import stripe
from sqlalchemy import select

from billing_core.db.tables import audit_log, balances
from billing_core.errors import InvalidInput, PaymentDeclined, StripeUnavailable
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur, new_company
from tests.integration.stripe_faults import (
    CONFIRM_PAYMENT_INTENT,
    emulator_payment_intents,
    services_with_faults,
)
from tests.integration.stripe_helpers import (
    CARD_DECLINED_ON_ATTACH,
    CARD_DECLINED_ON_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    company_with_method,
    create_card,
    create_sepa,
)
from tests.support.localstripe import SECRET_KEY

IBAN_BOUNCES = "DE62370400440532013001"  # the emulator fails debits from this IBAN a moment after confirming


def saved_card(services, company_id, number=CARD_OK):
    method = create_card(services, number)
    services.stripe.payments.attach_payment_method(company_id, method, actor="test")
    return method


def pay(services, company_id, method, amount="50.00", key="pay-1", **kwargs):
    return services.stripe.payments.pay_with_saved_method(
        company_id=company_id, amount=eur(amount), payment_method_id=method, initiated_by="api:client",
        idempotency_key=key, **kwargs,
    )


def topup_entries(services, company_id):
    return services.balances.history(company_id, types=["topup", "bonus"]).entries


def emulator_customer(services, customer_id):
    http = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": services.stripe.gateway.api_base},
                                     http_client=http)
        return client.v1.customers.retrieve(customer_id)
    finally:
        http.close()


# -- API payments with a saved card ------------------------------------------------------------------------


def test_payment_with_a_saved_card_credits_the_topup_once_and_records_the_stripe_ids(stripe_services):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id)

    outcome = pay(stripe_services, company.id, method, "50.00")

    topup = outcome.topup
    assert outcome.stripe_status == "succeeded"
    assert topup.status == "succeeded"
    assert topup.amount == eur("50.00")
    assert topup.source == "payment_intent"
    assert topup.stripe_payment_intent_id and topup.stripe_payment_intent_id.startswith("pi_")
    assert topup.stripe_charge_id and topup.stripe_charge_id.startswith("ch_")
    assert topup.stripe_payment_method_id == method
    assert topup.payment_method_type == "card"
    assert balance_cents(stripe_services, company.id) == 5000
    [entry] = topup_entries(stripe_services, company.id)
    assert (entry.type, entry.amount.cents, entry.reference_id) == ("topup", 5000, str(topup.id))
    customer_id = stripe_services.companies.show(company.id).stripe_customer_id
    [intent] = emulator_payment_intents(stripe_services, customer_id)
    assert intent.id == topup.stripe_payment_intent_id
    assert (intent.amount, intent.currency, intent.status) == (5000, "eur", "succeeded")
    assert intent.metadata["topup_id"] == str(topup.id)
    assert intent.metadata["company_id"] == str(company.id)
    assert_ledger_ok(stripe_services)


def test_repeating_a_payment_with_the_same_idempotency_key_makes_one_payment_intent_and_one_credit(stripe_services):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id)

    first = pay(stripe_services, company.id, method, "50.00", key="order-17")
    second = pay(stripe_services, company.id, method, "50.00", key="order-17")

    assert second.topup.id == first.topup.id
    assert second.topup.status == "succeeded"
    assert second.topup.stripe_payment_intent_id == first.topup.stripe_payment_intent_id
    assert len(stripe_services.topups.list(company_id=company.id)) == 1
    assert [e.amount.cents for e in topup_entries(stripe_services, company.id)] == [5000]
    assert balance_cents(stripe_services, company.id) == 5000
    customer_id = stripe_services.companies.show(company.id).stripe_customer_id
    assert [pi.id for pi in emulator_payment_intents(stripe_services, customer_id)] == [
        first.topup.stripe_payment_intent_id
    ]
    assert_ledger_ok(stripe_services)


def test_a_different_idempotency_key_is_a_second_payment(stripe_services):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id)
    pay(stripe_services, company.id, method, "50.00", key="order-1")
    pay(stripe_services, company.id, method, "20.00", key="order-2")
    assert balance_cents(stripe_services, company.id) == 7000
    customer_id = stripe_services.companies.show(company.id).stripe_customer_id
    assert len(emulator_payment_intents(stripe_services, customer_id)) == 2


def test_retry_after_the_confirm_answer_was_lost_credits_once_without_a_second_payment_intent(
    stripe_services, settings, clock, localstripe
):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id)
    with services_with_faults(settings, clock, localstripe.url, lose_answer=(CONFIRM_PAYMENT_INTENT,)) as (faulty, _):
        with pytest.raises(StripeUnavailable):
            pay(faulty, company.id, method, "50.00", key="order-9")
    [pending] = stripe_services.topups.list(company_id=company.id)
    assert pending.status == "pending" and pending.stripe_payment_intent_id
    assert balance_cents(stripe_services, company.id) == 0

    retried = pay(stripe_services, company.id, method, "50.00", key="order-9")

    assert retried.topup.id == pending.id
    assert retried.topup.status == "succeeded"
    assert balance_cents(stripe_services, company.id) == 5000
    customer_id = stripe_services.companies.show(company.id).stripe_customer_id
    assert len(emulator_payment_intents(stripe_services, customer_id)) == 1
    assert_ledger_ok(stripe_services)


def test_retry_after_the_confirm_never_reached_stripe_completes_the_payment(
    stripe_services, settings, clock, localstripe
):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id)
    with services_with_faults(settings, clock, localstripe.url, unreachable=(CONFIRM_PAYMENT_INTENT,)) as (faulty, _):
        with pytest.raises(StripeUnavailable):  # its message says the request is safe to retry
            pay(faulty, company.id, method, "50.00", key="order-10")

    retried = pay(stripe_services, company.id, method, "50.00", key="order-10")

    assert retried.topup.status == "succeeded"
    assert balance_cents(stripe_services, company.id) == 5000


def test_card_declined_at_charge_fails_the_topup_with_the_decline_code_and_no_credit(stripe_services):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id, CARD_DECLINED_ON_CHARGE)

    outcome = pay(stripe_services, company.id, method, "50.00")

    assert outcome.topup.status == "failed"
    assert outcome.topup.failure_code == "card_declined"
    assert "declined" in (outcome.topup.failure_reason or "")
    assert outcome.topup.stripe_payment_intent_id
    assert balance_cents(stripe_services, company.id) == 0
    assert topup_entries(stripe_services, company.id) == []


def test_card_declined_at_attach_is_rejected_with_its_decline_code_and_nothing_is_saved(stripe_services):
    company = new_company(stripe_services)
    method = create_card(stripe_services, CARD_DECLINED_ON_ATTACH)

    with pytest.raises(PaymentDeclined) as declined:
        stripe_services.stripe.payments.attach_payment_method(company.id, method, actor="test")

    assert declined.value.decline_code == "card_declined"
    assert CARD_DECLINED_ON_ATTACH not in declined.value.message
    assert stripe_services.stripe.payments.list_payment_methods(company.id) == []
    assert stripe_services.stripe.gateway.retrieve_payment_method(method).customer is None
    with pytest.raises(InvalidInput, match="does not belong"):
        stripe_services.stripe.payments.use_for_auto_topup(company.id, method, actor="test")
    assert stripe_services.companies.show(company.id).stripe_payment_method_id is None


def test_card_needing_authentication_on_session_returns_the_client_secret_without_credit(stripe_services):
    company = new_company(stripe_services)
    method = saved_card(stripe_services, company.id, CARD_NEEDS_AUTHENTICATION)

    outcome = pay(stripe_services, company.id, method, "50.00")

    assert outcome.stripe_status == "requires_action"
    assert outcome.client_secret and outcome.client_secret.startswith(outcome.topup.stripe_payment_intent_id)
    assert outcome.topup.status == "pending"
    assert balance_cents(stripe_services, company.id) == 0
    # the customer has not authenticated yet: the reconciler leaves it waiting, uncredited
    report = stripe_services.stripe.reconcile.run(min_age=timedelta(0))
    assert report.changes == [] and report.errors == []
    assert stripe_services.topups.get(outcome.topup.id).status == "pending"
    assert balance_cents(stripe_services, company.id) == 0


# -- SEPA Direct Debit ---------------------------------------------------------------------------------------


def sepa_company(services):
    company = new_company(services)
    method = create_sepa(services)
    attached = services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    assert (attached.type, attached.last4, attached.country) == ("sepa_debit", "3000", "DE")
    return company, method


def test_sepa_debit_topup_is_credited_exactly_once(stripe_services):
    company, method = sepa_company(stripe_services)

    outcome = pay(stripe_services, company.id, method, "80.00")

    topup = outcome.topup
    assert topup.status == "succeeded"
    assert topup.payment_method_type == "sepa_debit"
    assert balance_cents(stripe_services, company.id) == 8000
    # a late report of the same success (webhook, reconciler) finds it settled
    intent = stripe_services.stripe.gateway.retrieve_payment_intent(topup.stripe_payment_intent_id)
    again = stripe_services.stripe.payments.record_intent(topup.id, intent)
    assert again.topup.status == "succeeded"
    report = stripe_services.stripe.reconcile.run(min_age=timedelta(0))
    assert report.changes == []
    assert [e.amount.cents for e in topup_entries(stripe_services, company.id)] == [8000]
    assert_ledger_ok(stripe_services)


def test_sepa_debit_stays_processing_without_credit_until_stripe_confirms_it(stripe_services):
    company, method = sepa_company(stripe_services)
    pending = stripe_services.topups.create_pending(
        company_id=company.id, amount=eur("80.00"), source="payment_intent", initiated_by="api:client",
        idempotency_key="sepa-1",
    )
    gateway = stripe_services.stripe.gateway
    intent = gateway.create_payment_intent(
        amount=8000, currency="EUR", customer_id=stripe_services.stripe.payments.ensure_customer(company.id),
        metadata={"topup_id": str(pending.id)}, idempotency_key=f"topup:{pending.id}:payment_intent",
        payment_method=method,
    )
    confirmed = gateway.confirm_payment_intent(intent.id, off_session=False, idempotency_key="c")
    assert confirmed.status == "succeeded"  # the emulator confirms SEPA at once; Stripe says processing first
    payments = stripe_services.stripe.payments

    processing = payments.record_intent(pending.id, dataclasses.replace(confirmed, status="processing"))
    assert processing.topup.status == "processing"
    assert processing.topup.stripe_payment_intent_id == intent.id
    assert balance_cents(stripe_services, company.id) == 0

    succeeded = payments.record_intent(pending.id, confirmed)
    late_processing = payments.record_intent(pending.id, dataclasses.replace(confirmed, status="processing"))
    replayed = payments.record_intent(pending.id, confirmed)

    assert succeeded.topup.status == late_processing.topup.status == replayed.topup.status == "succeeded"
    assert balance_cents(stripe_services, company.id) == 8000
    assert len(topup_entries(stripe_services, company.id)) == 1
    assert_ledger_ok(stripe_services)


def test_bounced_sepa_debit_stays_processing_and_reconcile_fails_it_without_credit(stripe_services):
    company = new_company(stripe_services)
    method = create_sepa(stripe_services, IBAN_BOUNCES)
    stripe_services.stripe.payments.attach_payment_method(company.id, method, actor="test")

    outcome = pay(stripe_services, company.id, method, "80.00")
    assert outcome.stripe_status == "processing"
    assert outcome.topup.status == "processing"
    assert balance_cents(stripe_services, company.id) == 0

    deadline = time.monotonic() + 10
    while stripe_services.stripe.gateway.retrieve_payment_intent(
        outcome.topup.stripe_payment_intent_id
    ).status == "processing":
        assert time.monotonic() < deadline, "the emulator never failed the debit"
        time.sleep(0.1)
    report = stripe_services.stripe.reconcile.run(min_age=timedelta(0))

    assert report.changes == [f"top-up {outcome.topup.id}: processing -> failed"]
    failed = stripe_services.topups.get(outcome.topup.id)
    assert failed.status == "failed" and failed.failure_code == "card_declined"
    assert balance_cents(stripe_services, company.id) == 0
    assert_ledger_ok(stripe_services)


# -- saved payment methods -----------------------------------------------------------------------------------


def test_saved_cards_are_listed_with_the_one_used_for_auto_topup_marked(stripe_services):
    company_id, auto_method = company_with_method(stripe_services)
    other = saved_card(stripe_services, company_id)

    listed = {m.method.id: m for m in stripe_services.stripe.payments.list_payment_methods(company_id)}

    assert set(listed) == {auto_method, other}
    assert listed[auto_method].used_for_auto_topup and not listed[other].used_for_auto_topup
    shown = listed[other].as_json()
    assert shown["type"] == "card" and shown["brand"] == "visa" and shown["last4"] == "4242"
    assert CARD_OK not in str(shown)
    assert stripe_services.companies.show(company_id).stripe_payment_method_id == auto_method


def test_choosing_another_saved_method_for_auto_topup_moves_the_mark(stripe_services):
    company_id, first = company_with_method(stripe_services)
    second = saved_card(stripe_services, company_id)

    stripe_services.stripe.payments.use_for_auto_topup(company_id, second, actor="support:anna")

    listed = stripe_services.stripe.payments.list_payment_methods(company_id)
    marks = {m.method.id: m.used_for_auto_topup for m in listed}
    assert marks == {first: False, second: True}
    assert stripe_services.companies.show(company_id).stripe_payment_method_id == second


def test_detaching_the_auto_topup_method_switches_auto_topup_off_with_a_reason(stripe_services):
    company_id, method = company_with_method(stripe_services)
    assert stripe_services.companies.show(company_id).auto_topup_enabled

    lost = stripe_services.stripe.payments.detach_payment_method(company_id, method, actor="support:anna")

    assert lost is True
    company = stripe_services.companies.show(company_id)
    assert not company.auto_topup_enabled
    assert company.stripe_payment_method_id is None
    assert stripe_services.stripe.payments.list_payment_methods(company_id) == []
    assert stripe_services.stripe.gateway.retrieve_payment_method(method).customer is None
    reason = stripe_services.db.read(
        lambda conn: conn.execute(
            select(balances.c.auto_topup_disabled_reason).where(balances.c.company_id == company_id)
        ).scalar_one()
    )
    assert reason and "payment method was removed" in reason
    removals = stripe_services.db.read(
        lambda conn: conn.execute(
            select(audit_log.c.actor).where(audit_log.c.company_id == company_id,
                                            audit_log.c.action == "auto_topup.payment_method_removed")
        ).scalars().all()
    )
    assert removals == ["support:anna"]
    assert not stripe_services.stripe.auto_topup.trigger(company_id).triggered


def test_detaching_a_method_auto_topup_does_not_use_leaves_auto_topup_on(stripe_services):
    company_id, auto_method = company_with_method(stripe_services)
    spare = saved_card(stripe_services, company_id)

    lost = stripe_services.stripe.payments.detach_payment_method(company_id, spare, actor="support:anna")

    assert lost is False
    company = stripe_services.companies.show(company_id)
    assert company.auto_topup_enabled and company.stripe_payment_method_id == auto_method
    assert [m.method.id for m in stripe_services.stripe.payments.list_payment_methods(company_id)] == [auto_method]


def test_a_payment_method_of_another_company_is_refused_everywhere(stripe_services):
    owner_id, foreign = company_with_method(stripe_services, name="Autohaus Berger")
    company_id, own = company_with_method(stripe_services, name="Praxis Weber")
    payments = stripe_services.stripe.payments

    with pytest.raises(InvalidInput, match="does not belong"):
        payments.use_for_auto_topup(company_id, foreign, actor="support:anna")
    with pytest.raises(InvalidInput, match="does not belong"):
        payments.detach_payment_method(company_id, foreign, actor="support:anna")
    with pytest.raises(InvalidInput, match="does not belong"):
        pay(stripe_services, company_id, foreign, "50.00")

    assert stripe_services.companies.show(company_id).stripe_payment_method_id == own
    owner = stripe_services.companies.show(owner_id)
    assert owner.auto_topup_enabled and owner.stripe_payment_method_id == foreign
    assert stripe_services.stripe.gateway.retrieve_payment_method(foreign).customer == owner.stripe_customer_id
    assert stripe_services.topups.list(company_id=company_id, status="pending") == []
    assert balance_cents(stripe_services, company_id) == 500


# -- customers -----------------------------------------------------------------------------------------------


def test_ensure_customer_creates_one_customer_per_company_and_reuses_it(stripe_services):
    weber = new_company(stripe_services, name="Praxis Weber")
    berger = new_company(stripe_services, name="Autohaus Berger")
    payments = stripe_services.stripe.payments

    first = payments.ensure_customer(weber.id)
    again = payments.ensure_customer(weber.id)
    other = payments.ensure_customer(berger.id)

    assert first.startswith("cus_") and again == first
    assert other != first
    assert stripe_services.companies.show(weber.id).stripe_customer_id == first
    assert stripe_services.companies.show(berger.id).stripe_customer_id == other
    customer = emulator_customer(stripe_services, first)
    assert customer.metadata["company_id"] == str(weber.id)
    assert customer.name == "Praxis Weber" and customer.email == "billing@example.com"
    assert emulator_customer(stripe_services, other).metadata["company_id"] == str(berger.id)


def test_concurrent_ensure_customer_calls_agree_on_one_customer(stripe_services):
    company = new_company(stripe_services)
    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: stripe_services.stripe.payments.ensure_customer(company.id), range(4)))
    assert len(ids) == 1
    assert stripe_services.companies.show(company.id).stripe_customer_id in ids
