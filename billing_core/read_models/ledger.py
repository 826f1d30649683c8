"""Ledger entries and call charges as the read side shows them, and their filters."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from billing_core.read_models.base import AwareTimestamp, MoneyView, ReadModel, Timestamp

EntryType = Literal["topup", "bonus", "charge", "refund", "adjustment", "reversal"]
RefundStatus = Literal["none", "partial", "full"]


class LedgerEntryView(ReadModel):
    """One append-only ledger entry: a signed amount and the balance before and after it."""

    id: int
    company_id: int
    type: EntryType
    amount: MoneyView = Field(description="Signed: credits positive, debits negative.")
    balance_before: MoneyView
    balance_after: MoneyView
    description: str
    reference_type: str | None = Field(description="What caused it: call_charge, topup, topup_refund, dispute, ...")
    reference_id: str | None
    actor: str | None
    created_at: Timestamp


class LedgerFilters(ReadModel):
    company_id: int | None = Field(None, ge=1, description="One company's ledger; all companies when null.")
    types: tuple[EntryType, ...] | None = Field(None, description="Only these entry types.")
    since: AwareTimestamp | None = Field(None, description="Entries at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Entries before this instant.")


class CallChargeView(ReadModel):
    """A billed call: duration, the rate used, what was charged and what was refunded."""

    id: int
    call_id: str
    company_id: int
    duration_seconds: int
    billed_seconds: int = Field(description="Duration rounded up to the billing increment.")
    rate_per_minute: Decimal
    billing_increment_seconds: int
    amount_charged: MoneyView
    refunded: MoneyView
    refund_status: RefundStatus
    call_started_at: Timestamp
    call_ended_at: Timestamp | None
    charged_at: Timestamp


class CallChargeFilters(ReadModel):
    company_id: int | None = Field(None, ge=1)
    refund_status: RefundStatus | None = Field(None, description="none, partial or full.")
    since: AwareTimestamp | None = Field(None, description="Charged at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Charged before this instant.")
