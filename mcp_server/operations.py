"""The write operations behind the write tools: their arguments, what they would do (plan) and doing it (execute).

One place for each, so a tool call, a confirmed second step and an approved four-eyes request all run the same
code. ``plan`` reads and checks everything (ownership, what is still refundable, the state of a top-up) without
changing anything; ``execute`` calls the service, with an idempotency key that makes a repeated execution a
replay. Both are synchronous and run through ``services.call``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_core.errors import InvalidInput, InvalidTopupState, NotFound, RefundExceedsCharge
from billing_core.money import Money
from mcp_server.caller import ADJUST, ADMIN, REFUND, Caller
from mcp_server.models import Amount, Preview

if TYPE_CHECKING:
    from billing_core.bootstrap import Services

MAX_CENTS = 10**12  # ten billion in major units: far above any real amount, well inside BIGINT
Reason = Field(min_length=1, max_length=500, description="Why, in a few words; recorded in the ledger and audit log.")


class Args(BaseModel):
    # built on the first call: tools/list needs only the fields (the tools' parameters come from them)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RefundCallArgs(Args):
    call_id: str = Field(min_length=1, max_length=128, description="The Retell call id of the charged call.")
    amount_cents: int | None = Field(
        None,
        ge=1,
        le=MAX_CENTS,
        description="Part of the charge to refund, in minor units. Leave out to refund all that is still refundable.",
    )
    reason: str = Reason


class RefundTopupArgs(Args):
    topup_id: int = Field(ge=1, description="The id of a succeeded top-up.")
    amount_cents: int | None = Field(
        None,
        ge=1,
        le=MAX_CENTS,
        description="Part of the top-up to refund, in minor units. Leave out to refund all that is still refundable.",
    )
    reason: str = Reason


class AdjustArgs(Args):
    company_id: int = Field(ge=1, description="The company whose balance changes.")
    amount_cents: int = Field(
        ge=-MAX_CENTS, le=MAX_CENTS, description="Minor units: positive credits the balance, negative debits it."
    )
    reason: str = Reason


class TopupLinkArgs(Args):
    company_id: int = Field(ge=1, description="The company that will pay.")
    amount_cents: int = Field(ge=100, le=MAX_CENTS, description="The top-up amount in minor units (at least 1.00).")


class AutoTopupArgs(Args):
    company_id: int = Field(ge=1, description="The company to configure.")
    enabled: bool = Field(description="Whether auto top-up runs for this company.")
    threshold_cents: int | None = Field(
        None, ge=0, le=MAX_CENTS, description="Top up when the available balance falls below this (minor units)."
    )
    amount_cents: int | None = Field(None, ge=100, le=MAX_CENTS, description="How much each auto top-up charges.")
    daily_limit: int | None = Field(None, ge=0, le=50, description="At most this many auto top-ups per day.")
    monthly_limit_cents: int | None = Field(
        None, ge=0, le=MAX_CENTS, description="At most this much auto top-up per month (minor units)."
    )


class RateArgs(Args):
    company_id: int = Field(ge=1, description="The company to re-price.")
    rate_per_minute: str = Field(
        pattern=r"^\d{1,6}(\.\d{1,6})?$", description="Price per minute in major units, e.g. '0.42'."
    )
    billing_increment_seconds: int | None = Field(
        None, ge=1, le=3600, description="Calls are billed in steps of this many seconds (1 = per second)."
    )
    effective_from: datetime | None = Field(
        None, description="ISO 8601 with a timezone; calls starting from then use the rate. Default: now."
    )


class ResendInvoiceArgs(Args):
    number: str = Field(min_length=1, max_length=32, description="The invoice or credit note number.")


class RetryTopupArgs(Args):
    topup_id: int = Field(ge=1, description="The id of a failed top-up to charge again with the saved method.")


class ReplayWebhookArgs(Args):
    webhook_event_id: int = Field(ge=1, description="The id of a dead or failed webhook event (list_webhook_events).")


@dataclass(frozen=True, slots=True)
class Plan:
    preview: Preview
    company_id: int | None
    amount: Money | None  # the money that would move, for the limits
    limit: Literal["refund", "adjustment"] | None = None


Planner = Callable[["Services", Caller, Any], Plan]
Executor = Callable[["Services", str, Any, str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    scope: str
    args: type[Args]
    plan: Planner
    execute: Executor
    confirm: bool  # ask a person before executing
    idempotent: bool  # the same arguments twice have the effect of once
    description: str


def _preview(action: str, company_id: int | None, amount: Money | None, **details: Any) -> Preview:
    return Preview(
        action=action,
        company_id=company_id,
        amount=Amount.of(amount) if amount is not None else None,
        details=details,
    )


def _company(services: Services, caller: Caller, company_id: int) -> Any:
    caller.owns(company_id, f"company {company_id} does not exist")
    return services.companies.show(company_id)


# -- refunds ------------------------------------------------------------------------------------------


def plan_refund_call(services: Services, caller: Caller, args: RefundCallArgs) -> Plan:
    company_id, charged, refunded = services.refunds.refundable(args.call_id)
    caller.owns(company_id, f"no charge for call {args.call_id}")
    refundable = charged.cents - refunded.cents
    cents = refundable if args.amount_cents is None else args.amount_cents
    if refundable <= 0:
        raise InvalidInput(f"call {args.call_id} has been refunded in full already")
    if cents > refundable:
        raise RefundExceedsCharge(cents, refundable, charged.currency)
    amount = Money(cents, charged.currency)
    return Plan(
        _preview(
            f"Refund {Amount.of(amount).formatted} of call {args.call_id} to the prepaid balance of company "
            f"{company_id}",
            company_id,
            amount,
            charged=Amount.of(charged).model_dump(),
            still_refundable=Amount.of(Money(refundable, amount.currency)).model_dump(),
            reason=args.reason,
        ),
        company_id,
        amount,
        "refund",
    )


def execute_refund_call(services: Services, actor: str, args: RefundCallArgs, key: str) -> dict[str, Any]:
    amount = None
    if args.amount_cents is not None:
        amount = Money(args.amount_cents, services.refunds.refundable(args.call_id)[1].currency)
    result = services.refunds.refund_call(
        call_id=args.call_id, amount=amount, reason=args.reason, actor=actor, idempotency_key=key
    )
    return result.as_json()


def plan_refund_topup(services: Services, caller: Caller, args: RefundTopupArgs) -> Plan:
    topup = services.topups.get(args.topup_id)
    caller.owns(topup.company_id, f"top-up {args.topup_id} does not exist")
    if topup.status not in ("succeeded", "partially_refunded"):
        raise InvalidTopupState(f"top-up {topup.id} is {topup.status}; only a succeeded top-up can be refunded")
    refundable = topup.amount.cents - topup.refunded.cents
    cents = refundable if args.amount_cents is None else args.amount_cents
    if refundable <= 0:
        raise InvalidInput(f"top-up {topup.id} has been refunded in full already")
    if cents > refundable:
        raise RefundExceedsCharge(cents, refundable, topup.amount.currency)
    amount = Money(cents, topup.amount.currency)
    return Plan(
        _preview(
            f"Refund {Amount.of(amount).formatted} of top-up {topup.id} to the customer's payment method "
            f"(Stripe) and debit it from company {topup.company_id}'s balance",
            topup.company_id,
            amount,
            paid=Amount.of(topup.amount).model_dump(),
            still_refundable=Amount.of(Money(refundable, amount.currency)).model_dump(),
            bonus=Amount.of(topup.bonus).model_dump(),
            reason=args.reason,
        ),
        topup.company_id,
        amount,
        "refund",
    )


def execute_refund_topup(services: Services, actor: str, args: RefundTopupArgs, key: str) -> dict[str, Any]:
    topup = services.topups.get(args.topup_id)
    amount = None if args.amount_cents is None else Money(args.amount_cents, topup.amount.currency)
    refund = services.stripe.topup_refunds.refund(
        topup_id=args.topup_id, amount=amount, reason=args.reason, actor=actor, idempotency_key=key
    )
    return refund.as_json()


# -- balance and settings ------------------------------------------------------------------------------


def plan_adjust(services: Services, caller: Caller, args: AdjustArgs) -> Plan:
    if args.amount_cents == 0:
        raise InvalidInput("an adjustment needs a non-zero amount")
    company = _company(services, caller, args.company_id)
    amount = Money(args.amount_cents, company.currency)
    after = company.balance.cents + amount.cents
    verb = "Credit" if amount.cents > 0 else "Debit"
    return Plan(
        _preview(
            f"{verb} {Amount.of(Money(abs(amount.cents), amount.currency)).formatted} "
            f"{'to' if amount.cents > 0 else 'from'} the balance of company {company.id}",
            company.id,
            amount,
            balance_before=Amount.of(company.balance).model_dump(),
            balance_after=Amount.of(Money(after, company.currency)).model_dump(),
            reason=args.reason,
        ),
        company.id,
        amount,
        "adjustment",
    )


def execute_adjust(services: Services, actor: str, args: AdjustArgs, key: str) -> dict[str, Any]:
    company = services.companies.show(args.company_id)
    result = services.adjustments.adjust(
        company_id=args.company_id,
        amount=Money(args.amount_cents, company.currency),
        reason=args.reason,
        actor=actor,
        idempotency_key=key,
    )
    return result.as_json()


def plan_auto_topup(services: Services, caller: Caller, args: AutoTopupArgs) -> Plan:
    company = _company(services, caller, args.company_id)
    cur = company.currency
    changes = {
        "enabled": args.enabled,
        "threshold": None if args.threshold_cents is None else Amount.of(Money(args.threshold_cents, cur)).formatted,
        "amount": None if args.amount_cents is None else Amount.of(Money(args.amount_cents, cur)).formatted,
        "daily_limit": args.daily_limit,
        "monthly_limit": None
        if args.monthly_limit_cents is None
        else Amount.of(Money(args.monthly_limit_cents, cur)).formatted,
    }
    state = "on" if args.enabled else "off"
    return Plan(
        _preview(
            f"Switch auto top-up {state} for company {company.id}",
            company.id,
            None,
            currently_enabled=company.auto_topup_enabled,
            current_threshold=Amount.of(company.auto_topup_threshold).formatted,
            current_amount=Amount.of(company.auto_topup_amount).formatted,
            saved_payment_method=company.stripe_payment_method_id is not None,
            changes={k: v for k, v in changes.items() if v is not None},
        ),
        company.id,
        None,
    )


def execute_auto_topup(services: Services, actor: str, args: AutoTopupArgs, key: str) -> dict[str, Any]:
    company = services.companies.show(args.company_id)
    cur = company.currency
    changes: dict[str, Any] = {"auto_topup_enabled": args.enabled}
    if args.threshold_cents is not None:
        changes["auto_topup_threshold"] = Money(args.threshold_cents, cur)
    if args.amount_cents is not None:
        changes["auto_topup_amount"] = Money(args.amount_cents, cur)
    if args.daily_limit is not None:
        changes["auto_topup_daily_limit"] = args.daily_limit
    if args.monthly_limit_cents is not None:
        changes["auto_topup_monthly_limit"] = Money(args.monthly_limit_cents, cur)
    view = services.companies.set(args.company_id, actor=actor, **changes)
    return {
        "company_id": view.id,
        "auto_topup_enabled": view.auto_topup_enabled,
        "auto_topup_threshold": view.auto_topup_threshold.as_json(),
        "auto_topup_amount": view.auto_topup_amount.as_json(),
        "auto_topup_daily_limit": view.auto_topup_daily_limit,
        "auto_topup_monthly_limit": view.auto_topup_monthly_limit.as_json() if view.auto_topup_monthly_limit else None,
    }


def plan_rate(services: Services, caller: Caller, args: RateArgs) -> Plan:
    company = _company(services, caller, args.company_id)
    if args.effective_from is not None and args.effective_from.tzinfo is None:
        raise InvalidInput("effective_from needs a timezone, e.g. 2026-12-01T00:00:00+01:00")
    current = company.rates[-1] if company.rates else None
    return Plan(
        _preview(
            f"Bill company {company.id}'s calls at {args.rate_per_minute} {company.currency} per minute"
            + (f" from {args.effective_from.isoformat()}" if args.effective_from else " from now on"),
            company.id,
            None,
            current_rate_per_minute=str(current.rate_per_minute) if current else None,
            current_increment_seconds=current.billing_increment_seconds if current else None,
            new_increment_seconds=args.billing_increment_seconds,
        ),
        company.id,
        None,
    )


def execute_rate(services: Services, actor: str, args: RateArgs, key: str) -> dict[str, Any]:
    view = services.companies.set(
        args.company_id,
        actor=actor,
        rate_per_minute=Decimal(args.rate_per_minute),
        billing_increment_seconds=args.billing_increment_seconds,
        rate_effective_from=args.effective_from,
    )
    return {"company_id": view.id, "rates": [r.as_json() for r in view.rates]}


# -- payments ------------------------------------------------------------------------------------------


def plan_topup_link(services: Services, caller: Caller, args: TopupLinkArgs) -> Plan:
    company = _company(services, caller, args.company_id)
    amount = Money(args.amount_cents, company.currency)
    return Plan(
        _preview(
            f"Create a Stripe Checkout link for company {company.id}",
            company.id,
            None,
            link_amount=Amount.of(amount).model_dump(),
        ),
        company.id,
        None,
    )


def execute_topup_link(services: Services, actor: str, args: TopupLinkArgs, key: str) -> dict[str, Any]:
    company = services.companies.show(args.company_id)
    started = services.stripe.payments.start_checkout(
        company_id=args.company_id,
        amount=Money(args.amount_cents, company.currency),
        initiated_by=actor,
        idempotency_key=key,
    )
    return started.as_json()


def plan_retry_topup(services: Services, caller: Caller, args: RetryTopupArgs) -> Plan:
    topup = services.topups.get(args.topup_id)
    caller.owns(topup.company_id, f"top-up {args.topup_id} does not exist")
    if topup.status != "failed":
        raise InvalidTopupState(f"top-up {topup.id} is {topup.status}; only a failed top-up can be retried")
    company = services.companies.show(topup.company_id)
    method = topup.stripe_payment_method_id or company.stripe_payment_method_id
    if not method:
        raise InvalidInput(
            f"company {company.id} has no saved payment method; send a top-up link (create_topup_link) instead"
        )
    return Plan(
        _preview(
            f"Charge {Amount.of(topup.amount).formatted} again to company {company.id}'s saved payment method",
            company.id,
            None,
            failed_because=(topup.failure_reason or "")[:200],
            payment_method=method,
        ),
        company.id,
        None,
    )


def execute_retry_topup(services: Services, actor: str, args: RetryTopupArgs, key: str) -> dict[str, Any]:
    topup = services.topups.get(args.topup_id)
    company = services.companies.show(topup.company_id)
    method = topup.stripe_payment_method_id or company.stripe_payment_method_id
    assert method is not None
    outcome = services.stripe.payments.pay_with_saved_method(
        company_id=topup.company_id,
        amount=topup.amount,
        payment_method_id=method,
        initiated_by=actor,
        idempotency_key=key,
    )
    return {**outcome.as_json(), "retried_topup_id": topup.id}


# -- invoices and webhooks -----------------------------------------------------------------------------


def plan_resend_invoice(services: Services, caller: Caller, args: ResendInvoiceArgs) -> Plan:
    try:
        invoice = services.invoices.get(args.number)
    except NotFound:
        raise NotFound(f"invoice {args.number} does not exist") from None
    caller.owns(invoice.company_id, f"invoice {args.number} does not exist")
    return Plan(
        _preview(f"Mail invoice {invoice.number} to company {invoice.company_id} again", invoice.company_id, None),
        invoice.company_id,
        None,
    )


def execute_resend_invoice(services: Services, actor: str, args: ResendInvoiceArgs, key: str) -> dict[str, Any]:
    from billing_core.services.invoice_resend import resend_invoice

    result = resend_invoice(services.ctx, args.number, actor=actor, request_key=key)
    return {
        "number": result.number,
        "company_id": result.company_id,
        "queued": result.queued,
        "pdf_rendered": result.rendered,
    }


def plan_replay_webhook(services: Services, caller: Caller, args: ReplayWebhookArgs) -> Plan:
    if caller.company_id is not None:
        raise InvalidInput("webhook events belong to no single company; a company-bound token cannot replay them")
    events = {e.id: e for e in services.webhooks.events(limit=1000)}
    event = events.get(args.webhook_event_id)
    if event is None:
        raise NotFound(f"no dead or failed webhook event with id {args.webhook_event_id}")
    return Plan(
        _preview(
            f"Process {event.provider} event {event.event_type} (id {event.id}) again",
            None,
            None,
            status=event.status,
            attempts=event.attempts,
            last_error=(event.last_error or "")[:200],
        ),
        None,
        None,
    )


def execute_replay_webhook(services: Services, actor: str, args: ReplayWebhookArgs, key: str) -> dict[str, Any]:
    outcomes = services.webhooks.replay([args.webhook_event_id])
    return {
        "replayed": [
            {
                "provider": o.provider,
                "event_id": o.event_id,
                "event_type": o.event_type,
                "status": o.status,
                "note": o.note[:300],
            }
            for o in outcomes
        ]
    }


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "create_topup_link",
            ADJUST,
            TopupLinkArgs,
            plan_topup_link,
            execute_topup_link,
            confirm=False,
            idempotent=True,
            description=(
                "Create a Stripe Checkout link the customer opens to top up their prepaid balance. Nothing is "
                "charged until the customer pays; the balance is credited when Stripe confirms the payment."
            ),
        ),
        Operation(
            "refund_call_charge",
            REFUND,
            RefundCallArgs,
            plan_refund_call,
            execute_refund_call,
            confirm=True,
            idempotent=False,
            description=(
                "Refund a call's charge (fully, or the part given) back to the company's prepaid balance. The "
                "amount refundable is derived from the charge; a partial amount cannot exceed what is left. A person "
                "confirms before money moves; above the configured limit a second person approves."
            ),
        ),
        Operation(
            "refund_topup",
            REFUND,
            RefundTopupArgs,
            plan_refund_topup,
            execute_refund_topup,
            confirm=True,
            idempotent=False,
            description=(
                "Refund a succeeded top-up (fully, or the part given) to the customer's card or bank account "
                "through Stripe, debiting the balance and reversing the proportional bonus. Confirmation and "
                "four-eyes limits as for refund_call_charge."
            ),
        ),
        Operation(
            "adjust_balance",
            ADJUST,
            AdjustArgs,
            plan_adjust,
            execute_adjust,
            confirm=True,
            idempotent=False,
            description=(
                "Credit (positive) or debit (negative) a company's prepaid balance by hand, with a reason. A debit "
                "cannot exceed the available balance. Confirmed by a person; above the limit a second person approves."
            ),
        ),
        Operation(
            "configure_auto_topup",
            ADMIN,
            AutoTopupArgs,
            plan_auto_topup,
            execute_auto_topup,
            confirm=True,
            idempotent=True,
            description=(
                "Switch a company's auto top-up on or off and set its threshold, amount and daily/monthly limits. "
                "Fields left out keep their value. Confirmed by a person."
            ),
        ),
        Operation(
            "set_billing_rate",
            ADMIN,
            RateArgs,
            plan_rate,
            execute_rate,
            confirm=True,
            idempotent=False,
            description=(
                "Set a company's per-minute call rate (and billing increment) for calls starting from now or from "
                "effective_from. Earlier calls keep their rate. Confirmed by a person."
            ),
        ),
        Operation(
            "resend_invoice",
            ADMIN,
            ResendInvoiceArgs,
            plan_resend_invoice,
            execute_resend_invoice,
            confirm=False,
            idempotent=True,
            description="Mail an issued invoice or credit note to the company again (through the mail outbox).",
        ),
        Operation(
            "retry_failed_topup",
            ADJUST,
            RetryTopupArgs,
            plan_retry_topup,
            execute_retry_topup,
            confirm=True,
            idempotent=True,
            description=(
                "Charge the amount of a failed top-up again to the company's saved payment method (a new top-up; "
                "the failed one stays as it was). Confirmed by a person."
            ),
        ),
        Operation(
            "replay_webhook_event",
            ADMIN,
            ReplayWebhookArgs,
            plan_replay_webhook,
            execute_replay_webhook,
            confirm=True,
            idempotent=True,
            description=(
                "Process a dead or failed webhook event again (after fixing its cause). Handlers are idempotent, so "
                "an event that already took effect does not take effect twice. Confirmed by a person."
            ),
        ),
    )
}


def new_key() -> str:
    return "mcp-" + uuid.uuid4().hex
