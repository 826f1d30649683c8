"""Payment statistics and tax totals of a period as the read side reports them (the definitions of the
figures, and the SQL, are in :mod:`billing_core.queries.statistics`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field

from billing_core.read_models.base import MoneyView, ReadModel
from billing_core.read_models.periods import Period


class StatusCount(ReadModel):
    status: str
    count: int
    amount: MoneyView = Field(description="Sum of the top-ups' amounts.")


class MethodCount(ReadModel):
    method: str = Field(description="checkout, payment_intent, auto_topup, bank_transfer or manual.")
    count: int
    credited: int = Field(description="How many were paid (succeeded, or later refunded).")
    failed: int
    credited_amount: MoneyView


class RefundTotals(ReadModel):
    topup_refunds: int = Field(description="Top-up refunds that succeeded.")
    topup_refunded: MoneyView
    bonus_reversed: MoneyView = Field(description="Bonus taken back with those refunds.")
    call_refunds: int = Field(description="Refunded call charges (refund ledger entries).")
    call_refunded: MoneyView


class AutoTopupTotals(ReadModel):
    attempts: int
    credited: int
    failed: int


class CallTotals(ReadModel):
    count: int
    billed_seconds: int
    billed_minutes: Decimal = Field(description="billed_seconds / 60, two decimals.")
    charged: MoneyView


class WebhookTiming(ReadModel):
    provider: str
    event_type: str
    count: int
    avg_seconds: float = Field(description="Average seconds from receipt to processing (milliseconds precision).")
    max_seconds: float


class DailyStatistics(ReadModel):
    """One local day of the period (seller's time zone)."""

    day: date
    revenue: MoneyView
    topups_credited: int
    topups_created: int
    topups_failed: int
    auto_topup_attempts: int
    auto_topup_failures: int
    bonus_granted: MoneyView
    refunded: MoneyView = Field(description="Top-up refunds plus call refunds.")
    calls: int
    call_seconds: int
    call_charges: MoneyView
    active_companies: int
    webhook_events: int = Field(description="Events received that day and processed (whole business only).")
    webhook_avg_seconds: float | None


class PaymentStatistics(ReadModel):
    period: Period
    timezone: str = Field(description="The seller's time zone the days are counted in (BILLING_TIMEZONE).")
    company_id: int | None = Field(description="The company; null for the whole business.")
    currency: str
    revenue: MoneyView
    net_revenue: MoneyView = Field(description="Revenue minus top-up refunds.")
    topups_credited: int
    topups_by_status: tuple[StatusCount, ...]
    topups_by_method: tuple[MethodCount, ...]
    failed_topups: int
    failure_rate: float | None = Field(description="failed / (failed + credited) of the top-ups created; 4 digits.")
    refunds: RefundTotals
    auto_topup: AutoTopupTotals
    bonus_granted: MoneyView
    calls: CallTotals
    active_companies: int = Field(description="Companies with at least one charged call in the period.")
    companies: int = Field(description="Companies with a balance in this currency.")
    total_balance: MoneyView = Field(description="Current balance of those companies, summed.")
    average_balance: MoneyView = Field(description="Current balance per company, rounded half up.")
    webhook_processing: tuple[WebhookTiming, ...]
    daily: tuple[DailyStatistics, ...]


class TaxLine(ReadModel):
    """Invoices or credit notes of one VAT treatment issued in the period, summed."""

    type: str = Field(description="invoice or credit_note.")
    vat_category: str = Field(description="EN 16931 VAT category code (S standard, AE reverse charge, ...).")
    vat_rate: str = Field(description="VAT rate in percent, e.g. '19'.")
    documents: int
    net: MoneyView
    vat: MoneyView
    gross: MoneyView


class TaxTotals(ReadModel):
    """What a VAT return needs for the period: issued invoices and credit notes by VAT treatment."""

    period: Period
    timezone: str
    company_id: int | None
    currency: str
    lines: tuple[TaxLine, ...]
    net: MoneyView = Field(description="Invoices minus credit notes.")
    vat: MoneyView = Field(description="VAT charged minus VAT credited.")
    gross: MoneyView
