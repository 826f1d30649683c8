"""Top-ups, top-up refunds and disputes as the read side shows them, and their filters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from billing_core.read_models.base import AwareTimestamp, MoneyView, ReadModel, Timestamp

TopupStatus = Literal["pending", "processing", "succeeded", "failed", "canceled", "partially_refunded", "refunded"]
TopupMethod = Literal["checkout", "payment_intent", "auto_topup", "bank_transfer", "manual"]


class TopupView(ReadModel):
    """A top-up: requested, paid or failed; ``source`` is how it was paid."""

    id: int
    company_id: int
    amount: MoneyView
    bonus: MoneyView
    status: str
    source: str = Field(description="checkout, payment_intent, auto_topup, bank_transfer or manual.")
    payment_method_type: str | None = Field(description="card, sepa_debit, ... when Stripe reported it.")
    reference: str | None
    initiated_by: str | None
    stripe_payment_intent_id: str | None
    stripe_checkout_session_id: str | None
    stripe_charge_id: str | None
    stripe_payment_method_id: str | None
    checkout_url: str | None
    refunded: MoneyView
    failure_reason: str | None
    failure_code: str | None
    created_at: Timestamp
    succeeded_at: Timestamp | None


class TopupFilters(ReadModel):
    company_id: int | None = Field(None, ge=1)
    statuses: tuple[TopupStatus, ...] | None = Field(None, description="e.g. ['failed'] to find failed payments.")
    methods: tuple[TopupMethod, ...] | None = Field(None, description="How it was paid (the top-up's source).")
    since: AwareTimestamp | None = Field(None, description="Created at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Created before this instant.")


class TopupRefundView(ReadModel):
    """Money sent back to the card or account for a top-up (pending until Stripe settles it)."""

    id: int
    topup_id: int
    company_id: int
    amount: MoneyView
    bonus_reversed: MoneyView = Field(description="The share of the bonus taken back with this refund.")
    status: str = Field(description="pending, succeeded or failed.")
    source: str = Field(description="ours (through billing) or stripe_dashboard.")
    reason: str
    actor: str
    stripe_refund_id: str | None
    failure_reason: str | None
    created_at: Timestamp
    updated_at: Timestamp


class TopupRefundFilters(ReadModel):
    company_id: int | None = Field(None, ge=1)
    topup_id: int | None = Field(None, ge=1)
    statuses: tuple[Literal["pending", "succeeded", "failed"], ...] | None = None
    since: AwareTimestamp | None = Field(None, description="Created at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Created before this instant.")


class DisputeView(ReadModel):
    """A card dispute on a top-up; its amount is held until Stripe closes it."""

    id: int
    stripe_dispute_id: str
    stripe_charge_id: str
    topup_id: int
    company_id: int
    amount: MoneyView
    status: str = Field(description="open, won or lost.")
    reason: str | None
    created_at: Timestamp
    closed_at: Timestamp | None


class DisputeFilters(ReadModel):
    company_id: int | None = Field(None, ge=1)
    statuses: tuple[Literal["open", "won", "lost"], ...] | None = None
    since: AwareTimestamp | None = Field(None, description="Opened at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Opened before this instant.")
