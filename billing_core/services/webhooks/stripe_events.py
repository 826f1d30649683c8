"""Stripe events into the ledger. Every handler is idempotent and indifferent to the order events arrive in.

Each event is validated once against the model of the object it carries (``payloads``). A top-up is
found only by the Stripe ids we stored (PaymentIntent, Checkout Session, charge), never by metadata
a sender could set: an object we did not create changes nothing. An event in the other mode (live
versus test), in another currency, or with an amount that contradicts the payment it refers to
changes nothing either: it goes to the dead letters with its reason and an admin alert
(``EventMismatch``). Events that overtake the object they need wait (``RetryLater``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from billing_core.adapters.stripe_objects import payment_intent_view
from billing_core.errors import EventMismatch
from billing_core.services import notifications
from billing_core.services.auto_topup import AutoTopupRecorder
from billing_core.services.context import ServiceContext
from billing_core.services.disputes import DisputeService
from billing_core.services.payments import describe_failure
from billing_core.services.topup_refunds import TopupRefundService
from billing_core.services.topups import Topup, TopupService
from billing_core.services.webhooks.inbox import HandlerResult, InboundEvent, RetryLater
from billing_core.services.webhooks.payloads import (
    Charge,
    CheckoutSession,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    StripeEvent,
    parse,
    stripe_object_model,
)

Object = Mapping[str, Any]
SETTLED = ("succeeded", "partially_refunded", "refunded")


class StripeEventHandler:
    def __init__(
        self,
        ctx: ServiceContext,
        topups: TopupService,
        recorder: AutoTopupRecorder,
        refunds: TopupRefundService,
        disputes: DisputeService,
        forget_payment_method: Callable[..., bool],
    ) -> None:
        self._ctx = ctx
        self._topups = topups
        self._recorder = recorder
        self._refunds = refunds
        self._disputes = disputes
        self._forget_payment_method = forget_payment_method
        self._routes: dict[str, Callable[[Connection, Any, Object], HandlerResult]] = {
            "checkout.session.completed": self._checkout_completed,
            "checkout.session.async_payment_succeeded": self._checkout_paid,
            "checkout.session.async_payment_failed": self._checkout_failed,
            "checkout.session.expired": self._checkout_expired,
            "payment_intent.succeeded": self._intent_succeeded,
            "payment_intent.processing": self._intent_processing,
            "payment_intent.payment_failed": self._intent_failed,
            "payment_intent.canceled": self._intent_canceled,
            "charge.succeeded": self._charge_succeeded,
            "charge.failed": self._charge_failed,
            "charge.refunded": self._charge_refunded,
            "refund.created": self._refund_event,
            "refund.updated": self._refund_event,
            "charge.refund.updated": self._refund_event,
            "charge.dispute.created": self._dispute_created,
            "charge.dispute.closed": self._dispute_closed,
            "payment_method.detached": self._payment_method_detached,
        }

    def __call__(self, conn: Connection, event: InboundEvent) -> HandlerResult:
        route = self._routes.get(event.event_type)
        if route is None:
            return HandlerResult("ignored", f"event type {event.event_type} is not used")
        envelope = parse(StripeEvent, event.data)
        data = event.data.get("data")
        raw = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(raw, Mapping):
            return HandlerResult("ignored", "event without a data object")
        live = not self._ctx.settings.stripe_test_mode
        if envelope.livemode != live:
            raise EventMismatch(
                f"a {'live' if envelope.livemode else 'test'} mode event reached a system running in "
                f"{'live' if live else 'test'} mode; nothing changed"
            )
        model = stripe_object_model(event.event_type)
        assert model is not None, event.event_type  # every routed type has a model
        return route(conn, parse(model, raw, prefix="data.object."), raw)

    # -- lookup: only by the ids we stored ---------------------------------------------------------

    def _by_ids(self, conn: Connection, *, intent: str | None = None, charge: str | None = None) -> Topup | None:
        return self._topups.find_in(conn, payment_intent_id=intent, charge_id=charge)

    def _session_topup(self, conn: Connection, session: CheckoutSession) -> Topup | None:
        return self._topups.find_in(conn, checkout_session_id=session.id)

    # -- Checkout ---------------------------------------------------------------------------------

    def _checkout_completed(self, conn: Connection, session: CheckoutSession, _: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        ids = {"stripe_checkout_session_id": session.id, "stripe_payment_intent_id": session.payment_intent}
        if session.payment_status == "paid":
            _check_paid(topup, session.amount_total, session.currency)
            result = self._topups.settle_in(conn, topup.id, **ids)
            return HandlerResult("processed", "credited" if result.credited_now else "already credited")
        _check_currency(topup, session.currency)
        self._topups.mark_processing_in(conn, topup.id, **ids)  # SEPA: paid later, or not
        return HandlerResult("processed", "payment processing")

    def _checkout_paid(self, conn: Connection, session: CheckoutSession, _: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        _check_paid(topup, session.amount_total, session.currency)
        result = self._topups.settle_in(
            conn,
            topup.id,
            stripe_checkout_session_id=session.id,
            stripe_payment_intent_id=session.payment_intent,
        )
        return HandlerResult("processed", "credited" if result.credited_now else "already credited")

    def _checkout_failed(self, conn: Connection, session: CheckoutSession, _: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        return self._fail(conn, topup, "the delayed payment (SEPA Direct Debit) failed", "async_payment_failed")

    def _checkout_expired(self, conn: Connection, session: CheckoutSession, _: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        self._topups.cancel_in(conn, topup.id, reason="the Checkout Session expired unpaid")
        return HandlerResult("processed", "canceled")

    # -- PaymentIntents and charges ---------------------------------------------------------------

    def _intent_succeeded(self, conn: Connection, intent: PaymentIntent, raw: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=intent.id)
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        _check_paid(topup, intent.received, intent.currency)  # what was received, never what was asked
        if topup.source == "auto_topup":
            outcome = self._recorder.record_success_in(conn, topup, payment_intent_view(raw))
            return HandlerResult("processed", outcome.reason)
        result = self._topups.settle_in(
            conn, topup.id, stripe_payment_intent_id=intent.id, stripe_charge_id=intent.latest_charge
        )
        return HandlerResult("processed", "credited" if result.credited_now else "already credited")

    def _intent_processing(self, conn: Connection, intent: PaymentIntent, _: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=intent.id)
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        _check_currency(topup, intent.currency)
        self._topups.mark_processing_in(conn, topup.id, stripe_payment_intent_id=intent.id)
        return HandlerResult("processed", "processing")

    def _intent_failed(self, conn: Connection, intent: PaymentIntent, raw: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=intent.id)
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        view = payment_intent_view(raw)
        return self._fail(conn, topup, describe_failure(view), view.decline_code or view.failure_code, intent=view.id)

    def _intent_canceled(self, conn: Connection, intent: PaymentIntent, _: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=intent.id)
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        self._topups.cancel_in(conn, topup.id, reason=f"the payment was canceled ({intent.cancellation_reason})")
        return HandlerResult("processed", "canceled")

    def _charge_succeeded(self, conn: Connection, charge: Charge, _: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=charge.payment_intent, charge=charge.id)
        if topup is None:
            return HandlerResult("ignored", "not a charge of ours")
        if charge.paid is False or charge.status != "succeeded":
            return HandlerResult("ignored", "charge not paid")
        _check_paid(topup, charge.amount, charge.currency)
        if topup.source == "auto_topup":
            return HandlerResult("processed", "auto top-up is settled from its PaymentIntent")
        result = self._topups.settle_in(
            conn, topup.id, stripe_payment_intent_id=charge.payment_intent, stripe_charge_id=charge.id
        )
        return HandlerResult("processed", "credited" if result.credited_now else "already credited")

    def _charge_failed(self, conn: Connection, charge: Charge, _: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=charge.payment_intent, charge=charge.id)
        if topup is None:
            return HandlerResult("ignored", "not a charge of ours")
        reason = charge.failure_message or "the charge failed"
        return self._fail(conn, topup, reason, charge.failure_code, intent=charge.payment_intent)

    def _charge_refunded(self, conn: Connection, charge: Charge, _: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=charge.payment_intent, charge=charge.id)
        if topup is None:
            return HandlerResult("ignored", "not a charge of ours")
        _check_currency(topup, charge.currency)
        if topup.status not in SETTLED:
            raise RetryLater(f"top-up {topup.id} is {topup.status}; its refund waits for the payment to settle")
        refunds = charge.refunds.data if charge.refunds is not None else []
        if not refunds:  # API versions since 2022-11-15 leave the list out; refund.* events carry each refund
            return HandlerResult("processed", "refund details arrive as refund events")
        notes = [self._record_refund(conn, topup, r) for r in refunds]
        return HandlerResult("processed", ", ".join(notes))

    def _refund_event(self, conn: Connection, refund: Refund, _: Object) -> HandlerResult:
        topup = self._by_ids(conn, intent=refund.payment_intent, charge=refund.charge)
        if topup is None:
            return HandlerResult("ignored", "not a refund of ours")
        if topup.status not in SETTLED:
            raise RetryLater(f"top-up {topup.id} is {topup.status}; its refund waits for the payment to settle")
        return HandlerResult("processed", self._record_refund(conn, topup, refund))

    def _record_refund(self, conn: Connection, topup: Topup, refund: Refund) -> str:
        _check_currency(topup, refund.currency)
        if refund.amount > topup.amount.cents:
            raise EventMismatch(
                f"Stripe reports a refund of {refund.amount} on top-up {topup.id} of {topup.amount.cents}; "
                "nothing changed"
            )
        return self._refunds.record_stripe_refund_in(
            conn,
            topup=topup,
            stripe_refund_id=refund.id,
            amount=refund.amount,
            status=refund.status or "succeeded",
            our_refund_id=refund.our_refund_id,
        )

    # -- disputes and payment methods -------------------------------------------------------------

    def _dispute_topup(self, conn: Connection, dispute: Dispute) -> Topup | None:
        topup = self._by_ids(conn, intent=dispute.payment_intent, charge=dispute.charge)
        if topup is None:
            return None
        _check_currency(topup, dispute.currency)
        if dispute.amount > topup.amount.cents:
            raise EventMismatch(
                f"Stripe reports a dispute of {dispute.amount} on top-up {topup.id} of {topup.amount.cents}; "
                "nothing held"
            )
        if topup.status not in SETTLED:
            raise RetryLater("the disputed payment is not settled yet")
        return topup

    def _dispute_created(self, conn: Connection, dispute: Dispute, _: Object) -> HandlerResult:
        topup = self._dispute_topup(conn, dispute)
        if topup is None:
            return HandlerResult("ignored", "a dispute on a payment that is not ours")
        note = self._disputes.open_in(
            conn,
            topup=topup,
            dispute_id=dispute.id,
            charge_id=dispute.charge,
            amount=dispute.amount,
            reason=dispute.reason,
        )
        return HandlerResult("processed", note)

    def _dispute_closed(self, conn: Connection, dispute: Dispute, _: Object) -> HandlerResult:
        topup = self._dispute_topup(conn, dispute)
        if topup is None:
            return HandlerResult("ignored", "a dispute on a payment that is not ours")
        note = self._disputes.close_in(
            conn,
            topup=topup,
            dispute_id=dispute.id,
            charge_id=dispute.charge,
            amount=dispute.amount,
            status=dispute.status,
            reason=dispute.reason,
        )
        return HandlerResult("processed", note)

    def _payment_method_detached(self, conn: Connection, method: PaymentMethod, _: Object) -> HandlerResult:
        lost = self._forget_payment_method(conn, method.id, actor="stripe")
        return HandlerResult("processed", "auto top-up lost its payment method" if lost else "not used for auto top-up")

    # -- shared -----------------------------------------------------------------------------------

    def _fail(
        self, conn: Connection, topup: Topup, reason: str, code: str | None, *, intent: str | None = None
    ) -> HandlerResult:
        if topup.source == "auto_topup":
            outcome = self._recorder.record_failure_in(conn, topup, reason, code, payment_intent=intent)
            return HandlerResult("processed", outcome.reason)
        current, changed = self._topups.fail_in(
            conn, topup.id, reason=reason, code=code, stripe_payment_intent_id=intent
        )
        if changed:
            payload = {"topup_id": topup.id, "amount": topup.amount.as_json(), "reason": reason, "code": code}
            now = self._ctx.clock()
            for recipient in ("company", "admin"):
                notifications.enqueue(
                    conn,
                    kind="payment_failed",
                    recipient=recipient,
                    company_id=topup.company_id,
                    payload=payload,
                    now=now,
                )
        return HandlerResult("processed", f"top-up {current.status}")


def _check_currency(topup: Topup, currency: str | None) -> None:
    if currency is not None and currency != topup.amount.currency:
        raise EventMismatch(
            f"Stripe reports {currency} for top-up {topup.id} in {topup.amount.currency}; nothing changed"
        )


def _check_paid(topup: Topup, paid: int | None, currency: str | None) -> None:
    """A payment settles a top-up only in its currency and for exactly its amount (what was received)."""
    _check_currency(topup, currency)
    if paid is None or paid != topup.amount.cents:
        raise EventMismatch(
            f"Stripe reports {paid} paid for top-up {topup.id} of {topup.amount.cents}; "
            "nothing credited, left for an operator"
        )
