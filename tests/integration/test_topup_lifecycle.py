"""The idempotent top-up operations webhooks call, in every order Stripe may deliver them (no Stripe needed).

Stripe delivers events at least once and in no guaranteed order; the synchronous API answer and the
reconciler report the same outcomes. Whatever the order, a top-up is credited at most once, a success
is never undone by a late failure, and a late success still credits a top-up that had failed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import count, permutations

import pytest
from sqlalchemy import update

from billing_core.db.tables import topups
from billing_core.errors import InvalidTopupState
from tests.integration.helpers import assert_ledger_ok, balance_cents, eur, new_company


def pi(topup_id):
    """Each top-up has its own PaymentIntent (the column is unique)."""
    return f"pi_3Lifecycle{topup_id}"


def ch(topup_id):
    return f"ch_3Lifecycle{topup_id}"

DECLINE = "Your card was declined. (card_declined)"


@pytest.fixture
def company(services):
    return new_company(services)


_keys = count(1)


def pending(services, company_id, amount="50.00"):
    return services.topups.create_pending(company_id=company_id, amount=eur(amount), source="payment_intent",
                                          initiated_by="api:client", idempotency_key=f"lifecycle-{next(_keys)}")


def deliver(services, topup_id, event):
    """What the webhook worker does for each Stripe event about the top-up's PaymentIntent."""
    service = services.topups
    if event == "succeeded":
        return service.settle(topup_id, stripe_payment_intent_id=pi(topup_id), stripe_charge_id=ch(topup_id)).topup
    if event == "failed":
        return service.fail(topup_id, reason=DECLINE, code="card_declined", stripe_payment_intent_id=pi(topup_id))
    if event == "processing":
        return service.mark_processing(topup_id, stripe_payment_intent_id=pi(topup_id))
    if event == "canceled":
        return service.cancel(topup_id, reason="the payment was canceled")
    raise AssertionError(event)


def credits(services, topup_id):
    """The ledger entries that credited this top-up."""
    entries = services.balances.history(services.topups.get(topup_id).company_id, types=["topup", "bonus"]).entries
    return [e.amount.cents for e in entries if e.reference_id == str(topup_id)]


# -- two deliveries --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "status", "credited"),
    [
        pytest.param(("succeeded", "succeeded"), "succeeded", [5000], id="succeeded-succeeded"),
        pytest.param(("succeeded", "failed"), "succeeded", [5000], id="succeeded-failed"),
        pytest.param(("failed", "succeeded"), "succeeded", [5000], id="failed-succeeded"),
        pytest.param(("succeeded", "processing"), "succeeded", [5000], id="succeeded-processing"),
        pytest.param(("processing", "succeeded"), "succeeded", [5000], id="processing-succeeded"),
        pytest.param(("succeeded", "canceled"), "succeeded", [5000], id="succeeded-canceled"),
        pytest.param(("processing", "processing"), "processing", [], id="processing-processing"),
        pytest.param(("processing", "failed"), "failed", [], id="processing-failed"),
        pytest.param(("failed", "processing"), "failed", [], id="failed-processing"),
        pytest.param(("failed", "failed"), "failed", [], id="failed-failed"),
        pytest.param(("canceled",), "canceled", [], id="canceled"),
        pytest.param(("processing", "canceled"), "canceled", [], id="processing-canceled"),
        pytest.param(("canceled", "processing"), "canceled", [], id="canceled-processing"),
        pytest.param(("canceled", "failed"), "canceled", [], id="canceled-failed"),
        pytest.param(("canceled", "canceled"), "canceled", [], id="canceled-canceled"),
    ],
)
def test_deliveries_in_this_order_end_in_one_state_and_credit_at_most_once(services, company, events, status,
                                                                          credited):
    topup = pending(services, company.id)

    for event in events:
        deliver(services, topup.id, event)

    after = services.topups.get(topup.id)
    assert after.status == status
    assert credits(services, topup.id) == credited
    assert balance_cents(services, company.id) == sum(credited)
    assert after.stripe_payment_intent_id == (pi(topup.id) if set(events) - {"canceled"} else None)
    assert_ledger_ok(services)


def test_a_success_delivered_twice_credits_once_and_keeps_the_first_settlement(services, company, clock):
    topup = pending(services, company.id)
    first = services.topups.settle(topup.id, stripe_payment_intent_id=pi(topup.id), stripe_charge_id=ch(topup.id))
    settled_at = clock()
    clock.advance(minutes=5)

    second = services.topups.settle(topup.id, stripe_payment_intent_id=pi(topup.id), stripe_charge_id=ch(topup.id))

    assert (first.credited_now, second.credited_now) == (True, False)
    assert first.balance_after == second.balance_after == eur("50.00")
    assert second.topup.succeeded_at == settled_at
    assert (second.topup.stripe_payment_intent_id, second.topup.stripe_charge_id) == (pi(topup.id), ch(topup.id))
    assert credits(services, topup.id) == [5000]


def test_a_failure_after_success_changes_nothing(services, company):
    topup = pending(services, company.id)
    deliver(services, topup.id, "succeeded")
    before = services.topups.get(topup.id)

    after = deliver(services, topup.id, "failed")

    assert after == before
    assert after.failure_reason is None and after.failure_code is None
    assert balance_cents(services, company.id) == 5000


def test_a_success_after_failure_credits_and_clears_the_failure(services, company):
    topup = pending(services, company.id)
    failed = deliver(services, topup.id, "failed")
    assert (failed.status, failed.failure_code, failed.failure_reason) == ("failed", "card_declined", DECLINE)
    assert balance_cents(services, company.id) == 0

    succeeded = deliver(services, topup.id, "succeeded")

    assert succeeded.status == "succeeded"
    assert (succeeded.failure_code, succeeded.failure_reason) == (None, None)
    assert succeeded.stripe_charge_id == ch(topup.id)
    assert credits(services, topup.id) == [5000]
    assert_ledger_ok(services)


def test_processing_records_the_payment_intent_without_credit(services, company):
    topup = pending(services, company.id)

    processing = deliver(services, topup.id, "processing")

    assert processing.status == "processing"
    assert processing.stripe_payment_intent_id == pi(topup.id)
    assert processing.succeeded_at is None
    assert balance_cents(services, company.id) == 0
    assert services.balances.get(company.id).reserved.cents == 0


def test_a_failed_payment_that_is_then_canceled_ends_canceled_without_credit(services, company):
    # Stripe cancels a PaymentIntent whose attempts failed when its Checkout Session expires
    topup = pending(services, company.id)
    deliver(services, topup.id, "failed")

    canceled = deliver(services, topup.id, "canceled")

    assert canceled.status == "canceled"
    assert canceled.failure_reason == "the payment was canceled"
    assert balance_cents(services, company.id) == 0


def test_a_success_reported_for_a_canceled_topup_is_refused_and_credits_nothing(services, company):
    topup = pending(services, company.id)
    deliver(services, topup.id, "canceled")

    with pytest.raises(InvalidTopupState, match="canceled"):
        deliver(services, topup.id, "succeeded")

    assert services.topups.get(topup.id).status == "canceled"
    assert balance_cents(services, company.id) == 0


def test_a_success_reported_for_another_payment_intent_is_refused_and_credits_nothing(services, company):
    topup = pending(services, company.id)
    deliver(services, topup.id, "processing")

    with pytest.raises(InvalidTopupState, match=pi(topup.id)):
        services.topups.settle(topup.id, stripe_payment_intent_id="pi_3SomebodyElse")

    after = services.topups.get(topup.id)
    assert (after.status, after.stripe_payment_intent_id) == ("processing", pi(topup.id))
    assert balance_cents(services, company.id) == 0


@pytest.mark.parametrize("final", ["partially_refunded", "refunded"])
def test_late_deliveries_leave_a_refunded_topup_as_it_is(services, company, final):
    topup = pending(services, company.id)
    deliver(services, topup.id, "succeeded")
    with services.db.engine.begin() as conn:
        conn.execute(update(topups).where(topups.c.id == topup.id).values(status=final))

    for event in ("succeeded", "processing", "failed", "canceled", "succeeded"):
        deliver(services, topup.id, event)

    assert services.topups.get(topup.id).status == final
    assert credits(services, topup.id) == [5000]


# -- every order ---------------------------------------------------------------------------------------------


def test_every_order_of_success_failure_and_processing_ends_succeeded_with_one_credit(services, company):
    orders = sorted(set(permutations(["succeeded", "succeeded", "failed", "processing"])))
    assert len(orders) == 12

    for order in orders:
        topup = pending(services, company.id)
        for event in order:
            deliver(services, topup.id, event)
        after = services.topups.get(topup.id)
        assert (after.status, credits(services, topup.id)) == ("succeeded", [5000]), order

    assert balance_cents(services, company.id) == 5000 * len(orders)
    assert_ledger_ok(services)


def test_every_order_without_a_success_ends_failed_without_credit(services, company):
    orders = sorted(set(permutations(["failed", "failed", "processing", "processing"])))

    for order in orders:
        topup = pending(services, company.id)
        for event in order:
            deliver(services, topup.id, event)
        after = services.topups.get(topup.id)
        assert (after.status, credits(services, topup.id)) == ("failed", []), order

    assert balance_cents(services, company.id) == 0


def test_cancellation_applies_only_while_nothing_was_credited(services, company):
    outcomes = {}
    for before in ((), ("processing",), ("failed",), ("succeeded",), ("processing", "succeeded")):
        topup = pending(services, company.id)
        for event in before:
            deliver(services, topup.id, event)
        outcomes[before] = deliver(services, topup.id, "canceled").status

    assert outcomes == {
        (): "canceled",
        ("processing",): "canceled",
        ("failed",): "canceled",
        ("succeeded",): "succeeded",
        ("processing", "succeeded"): "succeeded",
    }
    assert balance_cents(services, company.id) == 10000


# -- at the same time ----------------------------------------------------------------------------------------


def test_racing_deliveries_credit_exactly_once(services, company):
    events = ["succeeded", "failed", "succeeded", "processing", "succeeded", "failed"]
    topup = pending(services, company.id)

    with ThreadPoolExecutor(len(events)) as pool:
        list(pool.map(lambda event: deliver(services, topup.id, event), events))

    assert services.topups.get(topup.id).status == "succeeded"
    assert credits(services, topup.id) == [5000]
    assert balance_cents(services, company.id) == 5000
    assert_ledger_ok(services)
