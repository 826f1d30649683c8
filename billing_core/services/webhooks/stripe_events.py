"""Stripe events into the ledger. Every handler is idempotent and indifferent to the order events arrive in.

A top-up is found by the ids Stripe gives (PaymentIntent, Checkout Session, charge) or by the
``topup_id`` we put in the metadata of everything we create. Events about objects that are not ours are
ignored; events that overtake the object they need wait (``RetryLater``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from billing_core.adapters.stripe_objects import payment_intent_view
from billing_core.errors import Conflict
from billing_core.services import notifications
from billing_core.services.auto_topup import AutoTopupRecorder
from billing_core.services.context import ServiceContext
from billing_core.services.disputes import DisputeService
from billing_core.services.payments import describe_failure
from billing_core.services.topup_refunds import TopupRefundService
from billing_core.services.topups import Topup, TopupService
from billing_core.services.webhooks.inbox import HandlerResult, InboundEvent, RetryLater

Object = Mapping[str, Any]


class NotOurs(Exception):
    pass


def _id(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.get("id")


def _metadata(obj: Object) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


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
        self._routes: dict[str, Callable[[Connection, Object], HandlerResult]] = {
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
        obj = event.data.get("data", {}).get("object")
        if not isinstance(obj, Mapping):
            return HandlerResult("ignored", "event without a data object")
        return route(conn, obj)

    # -- lookup -----------------------------------------------------------------------------------

    def _topup(
        self,
        conn: Connection,
        obj: Object,
        *,
        intent: str | None = None,
        session: str | None = None,
        charge: str | None = None,
    ) -> Topup | None:
        return self._topups.find_in(
            conn,
            payment_intent_id=intent,
            checkout_session_id=session,
            charge_id=charge,
            topup_id=_metadata(obj).get("topup_id") or obj.get("client_reference_id"),
        )

    # -- Checkout ---------------------------------------------------------------------------------

    def _session_topup(self, conn: Connection, session: Object) -> Topup | None:
        return self._topup(conn, session, session=session.get("id"), intent=_id(session.get("payment_intent")))

    def _checkout_completed(self, conn: Connection, session: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        ids = {
            "stripe_checkout_session_id": session.get("id"),
            "stripe_payment_intent_id": _id(session.get("payment_intent")),
        }
        if session.get("payment_status") == "paid":
            self._check_amount(topup, session.get("amount_total"))
            result = self._topups.settle_in(conn, topup.id, **ids)
            return HandlerResult("processed", "credited" if result.credited_now else "already credited")
        self._topups.mark_processing_in(conn, topup.id, **ids)  # SEPA: paid later, or not
        return HandlerResult("processed", "payment processing")

    def _checkout_paid(self, conn: Connection, session: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        self._check_amount(topup, session.get("amount_total"))
        result = self._topups.settle_in(
            conn,
            topup.id,
            stripe_checkout_session_id=session.get("id"),
            stripe_payment_intent_id=_id(session.get("payment_intent")),
        )
        return HandlerResult("processed", "credited" if result.credited_now else "already credited")

    def _checkout_failed(self, conn: Connection, session: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        return self._fail(conn, topup, "the delayed payment (SEPA Direct Debit) failed", "async_payment_failed")

    def _checkout_expired(self, conn: Connection, session: Object) -> HandlerResult:
        topup = self._session_topup(conn, session)
        if topup is None:
            return HandlerResult("ignored", "not one of our Checkout Sessions")
        self._topups.cancel_in(conn, topup.id, reason="the Checkout Session expired unpaid")
        return HandlerResult("processed", "canceled")

    # -- PaymentIntents and charges ---------------------------------------------------------------

    def _intent_succeeded(self, conn: Connection, obj: Object) -> HandlerResult:
        topup = self._topup(conn, obj, intent=obj.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        self._check_amount(topup, obj.get("amount_received") or obj.get("amount"))
        if topup.source == "auto_topup":
            outcome = self._recorder.record_success_in(conn, topup, payment_intent_view(obj))
            return HandlerResult("processed", outcome.reason)
        result = self._topups.settle_in(
            conn, topup.id, stripe_payment_intent_id=obj.get("id"), stripe_charge_id=_id(obj.get("latest_charge"))
        )
        return HandlerResult("processed", "credited" if result.credited_now else "already credited")

    def _intent_processing(self, conn: Connection, obj: Object) -> HandlerResult:
        topup = self._topup(conn, obj, intent=obj.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        self._topups.mark_processing_in(conn, topup.id, stripe_payment_intent_id=obj.get("id"))
        return HandlerResult("processed", "processing")

    def _intent_failed(self, conn: Connection, obj: Object) -> HandlerResult:
        topup = self._topup(conn, obj, intent=obj.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        view = payment_intent_view(obj)
        return self._fail(conn, topup, describe_failure(view), view.decline_code or view.failure_code, intent=view.id)

    def _intent_canceled(self, conn: Connection, obj: Object) -> HandlerResult:
        topup = self._topup(conn, obj, intent=obj.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not one of our PaymentIntents")
        self._topups.cancel_in(conn, topup.id, reason=f"the payment was canceled ({obj.get('cancellation_reason')})")
        return HandlerResult("processed", "canceled")

    def _charge_succeeded(self, conn: Connection, charge: Object) -> HandlerResult:
        intent = _id(charge.get("payment_intent"))
        topup = self._topup(conn, charge, intent=intent, charge=charge.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not a charge of ours")
        if charge.get("paid") is False or charge.get("status") != "succeeded":
            return HandlerResult("ignored", "charge not paid")
        self._check_amount(topup, charge.get("amount"))
        if topup.source == "auto_topup":
            return HandlerResult("processed", "auto top-up is settled from its PaymentIntent")
        result = self._topups.settle_in(
            conn, topup.id, stripe_payment_intent_id=intent, stripe_charge_id=charge.get("id")
        )
        return HandlerResult("processed", "credited" if result.credited_now else "already credited")

    def _charge_failed(self, conn: Connection, charge: Object) -> HandlerResult:
        topup = self._topup(conn, charge, intent=_id(charge.get("payment_intent")), charge=charge.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not a charge of ours")
        reason = charge.get("failure_message") or "the charge failed"
        return self._fail(conn, topup, reason, charge.get("failure_code"), intent=_id(charge.get("payment_intent")))

    def _charge_refunded(self, conn: Connection, charge: Object) -> HandlerResult:
        topup = self._topup(conn, charge, intent=_id(charge.get("payment_intent")), charge=charge.get("id"))
        if topup is None:
            return HandlerResult("ignored", "not a charge of ours")
        if topup.status not in ("succeeded", "partially_refunded", "refunded"):
            raise RetryLater(f"top-up {topup.id} is {topup.status}; its refund waits for the payment to settle")
        refunds = (charge.get("refunds") or {}).get("data") or []
        if not refunds:  # API versions since 2022-11-15 leave the list out; refund.* events carry each refund
            return HandlerResult("processed", "refund details arrive as refund events")
        notes = [self._record_refund(conn, topup, r) for r in refunds]
        return HandlerResult("processed", ", ".join(notes))

    def _refund_event(self, conn: Connection, refund: Object) -> HandlerResult:
        topup = self._topup(conn, refund, intent=_id(refund.get("payment_intent")), charge=_id(refund.get("charge")))
        if topup is None:
            return HandlerResult("ignored", "not a refund of ours")
        if topup.status not in ("succeeded", "partially_refunded", "refunded"):
            raise RetryLater(f"top-up {topup.id} is {topup.status}; its refund waits for the payment to settle")
        return HandlerResult("processed", self._record_refund(conn, topup, refund))

    def _record_refund(self, conn: Connection, topup: Topup, refund: Object) -> str:
        return self._refunds.record_stripe_refund_in(
            conn,
            topup=topup,
            stripe_refund_id=str(refund["id"]),
            amount=int(refund["amount"]),
            status=str(refund.get("status") or "succeeded"),
            metadata=dict(_metadata(refund)),
        )

    # -- disputes and payment methods -------------------------------------------------------------

    def _dispute_topup(self, conn: Connection, dispute: Object) -> Topup:
        topup = self._topup(conn, dispute, intent=_id(dispute.get("payment_intent")), charge=_id(dispute.get("charge")))
        if topup is None:
            raise NotOurs("a dispute on a payment that is not ours")
        if topup.status not in ("succeeded", "partially_refunded", "refunded"):
            raise RetryLater("the disputed payment is not settled yet")
        return topup

    def _dispute_created(self, conn: Connection, dispute: Object) -> HandlerResult:
        try:
            topup = self._dispute_topup(conn, dispute)
        except NotOurs as reason:
            return HandlerResult("ignored", str(reason))
        note = self._disputes.open_in(
            conn,
            topup=topup,
            dispute_id=str(dispute["id"]),
            charge_id=str(_id(dispute.get("charge"))),
            amount=int(dispute["amount"]),
            reason=dispute.get("reason"),
        )
        return HandlerResult("processed", note)

    def _dispute_closed(self, conn: Connection, dispute: Object) -> HandlerResult:
        try:
            topup = self._dispute_topup(conn, dispute)
        except NotOurs as reason:
            return HandlerResult("ignored", str(reason))
        note = self._disputes.close_in(
            conn,
            topup=topup,
            dispute_id=str(dispute["id"]),
            charge_id=str(_id(dispute.get("charge"))),
            amount=int(dispute["amount"]),
            status=str(dispute.get("status")),
            reason=dispute.get("reason"),
        )
        return HandlerResult("processed", note)

    def _payment_method_detached(self, conn: Connection, method: Object) -> HandlerResult:
        lost = self._forget_payment_method(conn, str(method["id"]), actor="stripe")
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

    @staticmethod
    def _check_amount(topup: Topup, paid: Any) -> None:
        if paid is not None and int(paid) != topup.amount.cents:
            raise Conflict(
                f"Stripe reports {paid} paid for top-up {topup.id} of {topup.amount.cents}; "
                "nothing credited, left for an operator"
            )
