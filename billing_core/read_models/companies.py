"""Companies as the read side shows them: overview, balance, search matches, low balances, and the filters."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from billing_core.read_models.base import MoneyView, ReadModel, Timestamp


class RateView(ReadModel):
    rate_per_minute: Decimal = Field(description="Price per minute in major units, exact (e.g. 0.420000).")
    billing_increment_seconds: int = Field(description="Calls are billed in steps of this many seconds.")
    effective_from: Timestamp = Field(description="Calls starting at or after this instant use this rate.")


class BalanceOverview(ReadModel):
    """A company's balance; ``available`` is what new calls may reserve."""

    company_id: int
    balance: MoneyView
    reserved: MoneyView = Field(description="Held for running calls, pending refunds and open disputes.")
    available: MoneyView = Field(description="balance - reserved.")
    low_balance_threshold: MoneyView
    is_low: bool = Field(description="True when the balance is below the low-balance threshold.")


class CompanyOverview(ReadModel):
    """A company with its data, balance, rates (the one in force and scheduled ones) and auto top-up state."""

    id: int
    name: str
    email: str
    currency: str
    locale: str
    prepaid_billing_enabled: bool
    balance: MoneyView
    reserved: MoneyView
    available: MoneyView
    low_balance_threshold: MoneyView
    is_low: bool
    auto_topup_enabled: bool
    auto_topup_threshold: MoneyView
    auto_topup_amount: MoneyView
    auto_topup_daily_limit: int
    auto_topup_monthly_limit: MoneyView | None = Field(description="Monthly cap; null means no cap.")
    auto_topup_consecutive_failures: int
    auto_topup_disabled_reason: str | None = Field(description="Why auto top-up switched itself off, if it did.")
    stripe_customer_id: str | None
    stripe_payment_method_id: str | None = Field(description="The saved method auto top-up charges.")
    vat_id: str | None
    tax_number: str | None
    address_line1: str | None
    address_line2: str | None
    postal_code: str | None
    city: str | None
    country: str | None
    retell_agent_ids: tuple[str, ...] = Field(description="Retell agents whose calls bill this company.")
    current_rate: RateView | None = Field(description="The rate calls starting now are billed at.")
    scheduled_rates: tuple[RateView, ...] = Field(description="Rates that take effect later, earliest first.")
    rates: tuple[RateView, ...] = Field(description="Every rate, oldest first (empty in lists).")
    created_at: Timestamp


class CompanyMatch(ReadModel):
    """A company found by ``find_companies``, with what matched."""

    id: int
    name: str
    email: str
    currency: str
    stripe_customer_id: str | None
    balance: MoneyView
    available: MoneyView
    matched_on: str = Field(description="id, name, email, stripe_customer_id or retell_agent_id.")


class LowBalanceCompany(ReadModel):
    company_id: int
    name: str
    balance: MoneyView
    low_balance_threshold: MoneyView
    auto_topup_enabled: bool


class CompanyFilters(ReadModel):
    """Filters of the company list (all optional)."""

    name_contains: str | None = Field(None, max_length=200, description="Part of the name, case-insensitive.")
    prepaid_billing_enabled: bool | None = None
    auto_topup_enabled: bool | None = None


class LowBalanceFilters(ReadModel):
    auto_topup_enabled: bool | None = Field(None, description="Only companies with auto top-up on (or off).")
