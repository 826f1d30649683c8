"""``billing reconcile`` against the localstripe emulator: what a crash left pending is settled exactly once.

The crashes are real: either the phases of a payment are run by hand and the settle step is never reached
(the process died), or a transport forwards the request to the emulator and loses Stripe's answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing_core.db.tables import notifications
from billing_core.errors import StripeUnavailable
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur, new_company
from tests.integration.stripe_faults import (
    CONFIRM_PAYMENT_INTENT,
    CREATE_PAYMENT_INTENT,
    CREATE_REFUND,
    emulator_payment_intents,
    emulator_refunds,
    services_with_faults,
)
from tests.integration.stripe_helpers import company_with_method, create_card
from tests.support.localstripe import SECRET_KEY

NOW = timedelta(0)


def card_company(services):
    company = new_company(services)
    method = create_card(services, "4242424242424242")
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    return company.id, method


def crash_after_stripe_succeeded(services, company_id, method, amount="50.00", key="order-1"):
    """The payment's phases as PaymentService runs them (same ids and keys), then the process dies."""
    topups = services.topups
    gateway = services.stripe.gateway
    topup = topups.create_pending(company_id=company_id, amount=eur(amount), source="payment_intent",
                                  initiated_by="api:client", idempotency_key=key)
    topups.attach_stripe_ids(topup.id, stripe_payment_method_id=method, payment_method_type="card")
    intent = gateway.create_payment_intent(
        amount=topup.amount.cents, currency="EUR", customer_id=services.stripe.payments.ensure_customer(company_id),
        metadata={"topup_id": str(topup.id), "company_id": str(company_id), "source": "payment_intent"},
        idempotency_key=f"topup:{topup.id}:payment_intent", payment_method=method,
    )
    topups.attach_stripe_ids(topup.id, stripe_payment_intent_id=intent.id)
    confirmed = gateway.confirm_payment_intent(
        intent.id, off_session=False, idempotency_key=f"topup:{topup.id}:confirm"
    )
    assert confirmed.status == "succeeded"
    return topups.get(topup.id)


def answer_lost_after_stripe_succeeded(services, company_id, method, settings, clock, api_base):
    with services_with_faults(settings, clock, api_base, lose_answer=(CONFIRM_PAYMENT_INTENT,)) as (faulty, _):
        with pytest.raises(StripeUnavailable):
            faulty.stripe.payments.pay_with_saved_method(
                company_id=company_id, amount=eur("50.00"), payment_method_id=method, initiated_by="api:client",
                idempotency_key="order-1",
            )
    [topup] = services.topups.list(company_id=company_id)
    return topup


def notification_count(services, company_id, kind):
    return services.db.read(lambda conn: conn.execute(
        select(func.count()).where(notifications.c.company_id == company_id, notifications.c.kind == kind)
    ).scalar_one())


# -- payments that succeeded at Stripe but were never settled here ---------------------------------------


@pytest.mark.parametrize("crash", ["process_died_before_settling", "answer_lost_after_confirm"])
def test_a_payment_stripe_took_but_we_never_settled_is_credited_once_by_reconcile(
    stripe_services, settings, clock, localstripe, crash
):
    company_id, method = card_company(stripe_services)
    if crash == "process_died_before_settling":
        topup = crash_after_stripe_succeeded(stripe_services, company_id, method)
    else:
        topup = answer_lost_after_stripe_succeeded(stripe_services, company_id, method, settings, clock,
                                                   localstripe.url)
    assert topup.status == "pending" and topup.stripe_payment_intent_id
    assert balance_cents(stripe_services, company_id) == 0

    report = stripe_services.stripe.reconcile.run(min_age=NOW)

    assert report.changes == [f"top-up {topup.id}: pending -> succeeded"]
    assert report.errors == []
    settled = stripe_services.topups.get(topup.id)
    assert settled.status == "succeeded"
    assert settled.stripe_charge_id and settled.stripe_charge_id.startswith("ch_")
    assert balance_cents(stripe_services, company_id) == 5000

    again = stripe_services.stripe.reconcile.run(min_age=NOW)

    assert (again.changes, again.unchanged, again.errors) == ([], 0, [])
    assert balance_cents(stripe_services, company_id) == 5000
    assert len(stripe_services.balances.history(company_id, types=["topup"]).entries) == 1
    customer_id = stripe_services.companies.show(company_id).stripe_customer_id
    assert len(emulator_payment_intents(stripe_services, customer_id)) == 1
    assert_ledger_ok(stripe_services)


def test_two_reconcilers_running_at_once_credit_once(stripe_services):
    company_id, method = card_company(stripe_services)
    topup = crash_after_stripe_succeeded(stripe_services, company_id, method)

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: stripe_services.stripe.reconcile.run(min_age=NOW), range(2)))

    assert all(r.errors == [] for r in reports)
    assert stripe_services.topups.get(topup.id).status == "succeeded"
    assert balance_cents(stripe_services, company_id) == 5000
    assert len(stripe_services.balances.history(company_id, types=["topup"]).entries) == 1
    assert_ledger_ok(stripe_services)


def test_reconcile_leaves_rows_younger_than_min_age_to_their_live_flow(stripe_services, clock):
    company_id, method = card_company(stripe_services)
    topup = crash_after_stripe_succeeded(stripe_services, company_id, method)

    young = stripe_services.stripe.reconcile.run()  # default: two minutes

    assert young.changes == []
    assert stripe_services.topups.get(topup.id).status == "pending"
    clock.advance(minutes=3)
    old = stripe_services.stripe.reconcile.run()
    assert old.changes == [f"top-up {topup.id}: pending -> succeeded"]
    assert balance_cents(stripe_services, company_id) == 5000


# -- auto top-up attempts ------------------------------------------------------------------------------


def test_an_auto_topup_whose_answer_was_lost_is_credited_once_by_reconcile(
    stripe_services, settings, clock, localstripe
):
    company_id, _ = company_with_method(stripe_services)  # 5.00, threshold 10.00, amount 50.00
    with services_with_faults(settings, clock, localstripe.url, lose_answer=(CONFIRM_PAYMENT_INTENT,)) as (faulty, _):
        outcome = faulty.stripe.auto_topup.trigger(company_id)
    assert outcome.triggered and "left pending for reconciliation" in outcome.reason
    attempt = outcome.topup
    assert attempt is not None and attempt.status == "pending" and attempt.stripe_payment_intent_id
    assert balance_cents(stripe_services, company_id) == 500

    report = stripe_services.stripe.reconcile.run(min_age=NOW)

    assert report.changes == [f"top-up {attempt.id}: pending -> succeeded"]
    assert balance_cents(stripe_services, company_id) == 5500
    assert notification_count(stripe_services, company_id, "auto_topup_succeeded") == 1
    assert stripe_services.stripe.reconcile.run(min_age=NOW).changes == []
    assert balance_cents(stripe_services, company_id) == 5500
    customer_id = stripe_services.companies.show(company_id).stripe_customer_id
    assert len(emulator_payment_intents(stripe_services, customer_id)) == 1
    assert_ledger_ok(stripe_services)


def test_an_auto_topup_left_pending_while_stripe_was_unreachable_is_finished_by_reconcile(
    stripe_services, settings, clock, localstripe
):
    company_id, _ = company_with_method(stripe_services)
    with services_with_faults(settings, clock, localstripe.url, unreachable=(CREATE_PAYMENT_INTENT,)) as (faulty, _):
        outcome = faulty.stripe.auto_topup.trigger(company_id)
    attempt = outcome.topup
    assert attempt is not None and attempt.status == "pending" and attempt.stripe_payment_intent_id is None
    customer_id = stripe_services.companies.show(company_id).stripe_customer_id
    assert emulator_payment_intents(stripe_services, customer_id) == []
    blocked = stripe_services.stripe.auto_topup.trigger(company_id)
    assert not blocked.triggered  # the pending attempt is in flight

    report = stripe_services.stripe.reconcile.run(min_age=NOW)

    assert report.changes == [f"top-up {attempt.id}: pending -> succeeded"]
    finished = stripe_services.topups.get(attempt.id)
    assert finished.status == "succeeded" and finished.stripe_payment_intent_id
    [intent] = emulator_payment_intents(stripe_services, customer_id)
    assert intent.id == finished.stripe_payment_intent_id and intent.amount == 5000
    assert balance_cents(stripe_services, company_id) == 5500
    assert stripe_services.stripe.reconcile.run(min_age=NOW).changes == []
    assert_ledger_ok(stripe_services)


# -- top-up refunds ----------------------------------------------------------------------------------------


def paid_topup(services, company_id, method, amount="50.00"):
    return services.stripe.payments.pay_with_saved_method(
        company_id=company_id, amount=eur(amount), payment_method_id=method, initiated_by="api:client",
        idempotency_key="paid-1",
    ).topup


def test_a_topup_refund_left_pending_is_finished_by_reconcile(stripe_services, settings, clock, localstripe):
    company_id, method = card_company(stripe_services)
    topup = paid_topup(stripe_services, company_id, method)
    with services_with_faults(settings, clock, localstripe.url, unreachable=(CREATE_REFUND,)) as (faulty, _):
        pending = faulty.stripe.topup_refunds.refund(
            topup_id=topup.id, amount=eur("20.00"), reason="goodwill", actor="support:anna", idempotency_key="r-1"
        )
    assert pending.status == "pending"
    assert stripe_services.balances.get(company_id).reserved == eur("20.00")

    report = stripe_services.stripe.reconcile.run(min_age=NOW)

    assert report.changes == [f"top-up refund {pending.id}: pending -> succeeded"]
    done = stripe_services.stripe.topup_refunds.get(pending.id)
    assert done.status == "succeeded" and done.stripe_refund_id
    view = stripe_services.balances.get(company_id)
    assert (view.balance.cents, view.reserved.cents) == (3000, 0)
    after = stripe_services.topups.get(topup.id)
    assert (after.status, after.refunded.cents) == ("partially_refunded", 2000)
    assert stripe_services.stripe.reconcile.run(min_age=NOW).changes == []
    [at_stripe] = emulator_refunds(stripe_services, topup.stripe_payment_intent_id)
    assert (at_stripe.id, at_stripe.amount) == (done.stripe_refund_id, 2000)
    assert_ledger_ok(stripe_services)


def test_a_pending_refund_younger_than_min_age_is_left_to_its_live_flow(stripe_services, settings, clock, localstripe):
    company_id, method = card_company(stripe_services)
    topup = paid_topup(stripe_services, company_id, method)
    with services_with_faults(settings, clock, localstripe.url, unreachable=(CREATE_REFUND,)) as (faulty, _):
        pending = faulty.stripe.topup_refunds.refund(
            topup_id=topup.id, amount=eur("20.00"), reason="goodwill", actor="support:anna", idempotency_key="r-1"
        )

    report = stripe_services.stripe.reconcile.run(min_age=timedelta(minutes=2))

    assert report.changes == []
    assert stripe_services.stripe.topup_refunds.get(pending.id).status == "pending"


# -- the command -----------------------------------------------------------------------------------------------


def billing_command() -> str:
    beside_python = Path(sys.executable).parent / "billing"
    assert beside_python.exists(), "the billing console script is not installed (pip install -e .)"
    return str(beside_python)


def run_billing(args, *, database_url, api_base, cwd):
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("STRIPE_", "BILLING_", "DATABASE_URL", "AUTO_TOPUP", "PREPAID_"))}
    env.update(DATABASE_URL=database_url, STRIPE_SECRET=SECRET_KEY, STRIPE_API_BASE=api_base, STRIPE_TEST_MODE="true")
    return subprocess.run([billing_command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def test_billing_reconcile_command_settles_what_a_crash_left_and_prints_the_change(
    stripe_services, database_url, localstripe, tmp_path
):
    company_id, method = card_company(stripe_services)
    topup = crash_after_stripe_succeeded(stripe_services, company_id, method)

    done = run_billing(["reconcile", "--min-age", "0", "--json"], database_url=database_url,
                       api_base=localstripe.url, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {
        "changes": [f"top-up {topup.id}: pending -> succeeded"], "unchanged": 0, "errors": [],
    }
    assert stripe_services.topups.get(topup.id).status == "succeeded"
    assert balance_cents(stripe_services, company_id) == 5000

    again = run_billing(["reconcile", "--min-age", "0"], database_url=database_url, api_base=localstripe.url,
                        cwd=tmp_path)

    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip() == "0 changed, 0 unchanged, 0 errors"
    assert balance_cents(stripe_services, company_id) == 5000
    assert_ledger_ok(stripe_services)
