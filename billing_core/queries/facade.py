"""``Queries``: each read of this package in one read-only transaction (``services.queries``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Connection

from billing_core.queries import companies as company_reads
from billing_core.queries import invoices as invoice_reads
from billing_core.queries import ledger, operations, payments, statistics
from billing_core.read_models.base import DEFAULT_LIMIT, Page
from billing_core.read_models.periods import Period
from billing_core.services.context import ServiceContext

T = TypeVar("T")


class Queries:
    """The read side's entry point. Methods take primitives and filter models; answers are frozen models."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def _read(self, work: Callable[[Connection], T]) -> T:
        return self._ctx.db.read(work)

    @property
    def timezone(self) -> str:
        return self._ctx.settings.timezone

    # -- companies -------------------------------------------------------------------------------------

    def company(self, company_id: int) -> company_reads.CompanyOverview:
        return self._read(lambda c: company_reads.company_overview(c, company_id, now=self._ctx.clock()))

    def balance(self, company_id: int) -> company_reads.BalanceOverview:
        return self._read(lambda c: company_reads.balance_overview(c, company_id))

    def companies(
        self,
        filters: company_reads.CompanyFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[company_reads.CompanyOverview]:
        return self._read(
            lambda c: company_reads.list_companies(c, filters, now=self._ctx.clock(), limit=limit, cursor=cursor)
        )

    def find_companies(self, text: str, *, limit: int = 20) -> tuple[company_reads.CompanyMatch, ...]:
        return self._read(lambda c: company_reads.find_companies(c, text, limit=limit))

    def low_balance_companies(
        self,
        filters: company_reads.LowBalanceFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[company_reads.LowBalanceCompany]:
        return self._read(lambda c: company_reads.low_balance_companies(c, filters, limit=limit, cursor=cursor))

    # -- money movements -------------------------------------------------------------------------------

    def ledger_entries(
        self, filters: ledger.LedgerFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[ledger.LedgerEntryView]:
        return self._read(lambda c: ledger.list_ledger_entries(c, filters, limit=limit, cursor=cursor))

    def call_charges(
        self,
        filters: ledger.CallChargeFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[ledger.CallChargeView]:
        return self._read(lambda c: ledger.list_call_charges(c, filters, limit=limit, cursor=cursor))

    def call_charge(self, call_id: str) -> ledger.CallChargeView:
        return self._read(lambda c: ledger.call_charge(c, call_id))

    def topups(
        self, filters: payments.TopupFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[payments.TopupView]:
        return self._read(lambda c: payments.list_topups(c, filters, limit=limit, cursor=cursor))

    def topup(self, topup_id: int) -> payments.TopupView:
        return self._read(lambda c: payments.topup(c, topup_id))

    def topup_refunds(
        self,
        filters: payments.TopupRefundFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[payments.TopupRefundView]:
        return self._read(lambda c: payments.list_topup_refunds(c, filters, limit=limit, cursor=cursor))

    def disputes(
        self, filters: payments.DisputeFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[payments.DisputeView]:
        return self._read(lambda c: payments.list_disputes(c, filters, limit=limit, cursor=cursor))

    def invoices(
        self,
        filters: invoice_reads.InvoiceFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[invoice_reads.InvoiceSummary]:
        return self._read(lambda c: invoice_reads.list_invoices(c, filters, limit=limit, cursor=cursor))

    def invoice(self, number: str) -> invoice_reads.InvoiceDetail:
        return self._read(lambda c: invoice_reads.invoice(c, number))

    # -- operations ------------------------------------------------------------------------------------

    def audit_log(
        self,
        filters: operations.AuditFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[operations.AuditEntry]:
        locale = self._ctx.settings.default_locale
        return self._read(lambda c: operations.list_audit_log(c, filters, limit=limit, cursor=cursor, locale=locale))

    def webhook_events(
        self,
        filters: operations.WebhookFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> Page[operations.WebhookEventView]:
        return self._read(
            lambda c: operations.list_webhook_events(c, filters, limit=limit, cursor=cursor, oldest_first=oldest_first)
        )

    def outbox(
        self,
        filters: operations.OutboxFilters | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[operations.OutboxMail]:
        return self._read(lambda c: operations.list_outbox(c, filters, limit=limit, cursor=cursor))

    def webhook_backlog(self) -> dict[str, int]:
        return self._read(operations.webhook_backlog)

    def webhook_processing(self, *, hours: int = 24) -> tuple[statistics.WebhookTiming, ...]:
        """Processing time per provider and event type of the events received in the last ``hours``."""
        since = self._ctx.clock() - timedelta(hours=hours)
        return self._read(lambda c: statistics.webhook_processing(c, since=since, until=None))

    # -- statistics ------------------------------------------------------------------------------------

    def period(self, days: int) -> Period:
        """The last ``days`` local days in the seller's time zone, today included."""
        return Period.last_days(days, now=self._ctx.clock(), timezone=self.timezone)

    def _report(self, report: Callable[..., T], period: Period, company_id: int | None, currency: str | None) -> T:
        """A period report in the seller's time zone, in the configured currency and locale unless a company's."""
        settings = self._ctx.settings
        return self._read(
            lambda c: report(
                c,
                period,
                timezone=settings.timezone,
                company_id=company_id,
                currency=currency,
                default_currency=settings.default_currency,
                default_locale=settings.default_locale,
            )
        )

    def payment_statistics(
        self, period: Period, *, company_id: int | None = None, currency: str | None = None
    ) -> statistics.PaymentStatistics:
        return self._report(statistics.payment_statistics, period, company_id, currency)

    def tax_totals(
        self, period: Period, *, company_id: int | None = None, currency: str | None = None
    ) -> statistics.TaxTotals:
        """Invoices and credit notes issued in the period by VAT treatment (for the tax report)."""
        return self._report(statistics.tax_totals, period, company_id, currency)
