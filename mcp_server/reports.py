"""The answers of ``get_payment_overview`` and ``generate_financial_report``: payment statistics from the read
side, the companies low on balance, the latest ledger entries, the invoiced VAT, CSV and a PNG chart."""

from __future__ import annotations

import base64
import csv
import io
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from billing_core.read_models.base import Page
from billing_core.read_models.companies import LowBalanceCompany
from billing_core.read_models.ledger import LedgerEntryView, LedgerFilters
from billing_core.read_models.periods import Period
from billing_core.read_models.statistics import PaymentStatistics, TaxTotals

if TYPE_CHECKING:
    from billing_core.bootstrap import Services

ReportType = Literal["summary", "detailed", "tax"]
OVERVIEW_ITEMS = 10


class PaymentOverview(BaseModel):
    statistics: PaymentStatistics = Field(description="Every payment metric of the period, with the daily series.")
    low_balance_companies: Page[LowBalanceCompany] = Field(
        description="Companies below their low-balance threshold now (list_low_balance_companies pages further)."
    )
    recent_activity: Page[LedgerEntryView] = Field(
        description="The latest ledger entries (list_transactions pages further)."
    )


def build_overview(services: Services, period: Period, company_id: int | None) -> PaymentOverview:
    """``get_payment_overview``'s answer (``company_id``: the company a bound caller may see, or None)."""
    q = services.queries
    low = q.low_balance_companies(limit=OVERVIEW_ITEMS)
    if company_id is not None:
        own = tuple(c for c in low.items if c.company_id == company_id)
        low = type(low)(items=own, has_more=False, next_cursor=None)
    return PaymentOverview(
        statistics=q.payment_statistics(period, company_id=company_id),
        low_balance_companies=low,
        recent_activity=q.ledger_entries(LedgerFilters(company_id=company_id), limit=OVERVIEW_ITEMS),
    )


class FinancialReport(BaseModel):
    report_type: ReportType
    period: Period
    company_id: int | None
    headline: str = Field(description="The key figures in one sentence.")
    statistics: PaymentStatistics = Field(description="Every payment metric; the daily series in detailed reports.")
    tax: TaxTotals | None = Field(None, description="Tax reports: invoices and credit notes issued, by VAT treatment.")


def build_report(
    services: Services, report_type: ReportType, period: Period, company_id: int | None
) -> FinancialReport:
    queries = services.queries
    stats = queries.payment_statistics(period, company_id=company_id)
    if report_type == "summary":
        stats = stats.model_copy(update={"daily": ()})
    tax = queries.tax_totals(period, company_id=company_id, currency=stats.currency) if report_type == "tax" else None
    rate = "n/a" if stats.failure_rate is None else f"{stats.failure_rate:.1%}"
    headline = (
        f"{period.start} to {period.end}: revenue {stats.revenue.formatted}, net {stats.net_revenue.formatted}, "
        f"{stats.topups_credited} top-ups credited, {stats.failed_topups} failed (failure rate {rate}), "
        f"{stats.calls.count} calls charged {stats.calls.charged.formatted}."
    )
    return FinancialReport(
        report_type=report_type, period=period, company_id=company_id, headline=headline, statistics=stats, tax=tax
    )


def report_csv(report: FinancialReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "day",
            "currency",
            "revenue_cents",
            "topups_credited",
            "topups_failed",
            "refunded_cents",
            "calls",
            "call_seconds",
            "call_charges_cents",
            "active_companies",
        ]
    )
    for d in report.statistics.daily:
        writer.writerow(
            [
                d.day.isoformat(),
                d.revenue.currency,
                d.revenue.cents,
                d.topups_credited,
                d.topups_failed,
                d.refunded.cents,
                d.calls,
                d.call_seconds,
                d.call_charges.cents,
                d.active_companies,
            ]
        )
    return out.getvalue()


def report_chart_png(report: FinancialReport) -> str:
    """A bar chart of daily revenue, base64 PNG. Pillow is imported only when a chart is asked for."""
    from PIL import Image, ImageDraw

    days = report.statistics.daily
    width, height, margin = 720, 320, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(margin, height - margin), (width - 10, height - margin)], fill="black")
    draw.line([(margin, 10), (margin, height - margin)], fill="black")
    top = max((d.revenue.cents for d in days), default=0) or 1
    if days:
        step = (width - margin - 20) / len(days)
        for i, d in enumerate(days):
            bar = (height - margin - 20) * d.revenue.cents / top
            x0 = margin + 5 + i * step
            draw.rectangle([x0, height - margin - bar, x0 + max(step - 3, 1), height - margin], fill="#3b6ea5")
    draw.text((margin + 5, 12), f"Daily revenue {report.period.start} - {report.period.end}", fill="black")
    draw.text(
        (margin + 5, height - margin + 8),
        f"max {days and max(days, key=lambda d: d.revenue.cents).revenue.formatted or 0}",
        fill="black",
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
