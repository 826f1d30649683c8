"""Invoices and credit notes as the read side shows them, and their filters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from billing_core.read_models.base import AwareTimestamp, MoneyView, ReadModel, Timestamp

InvoiceKind = Literal["invoice", "credit_note"]


class InvoiceSummary(ReadModel):
    """An issued invoice (for a top-up) or credit note (for a top-up refund)."""

    id: int
    number: str
    type: InvoiceKind = Field(description="invoice or credit_note.")
    company_id: int
    topup_id: int
    topup_refund_id: int | None
    corrects_invoice_id: int | None = Field(description="For a credit note: the invoice it corrects.")
    net: MoneyView
    vat: MoneyView
    gross: MoneyView
    vat_rate: str = Field(description="VAT rate in percent, as printed (e.g. '19').")
    vat_category: str = Field(description="EN 16931 VAT category code (S, AE, ...).")
    issued_at: Timestamp
    rendered_at: Timestamp | None = Field(description="When the PDF was rendered; null while it is pending.")
    pdf_sha256: str | None


class InvoiceDetail(InvoiceSummary):
    document: dict[str, Any] = Field(description="Everything printed on it (seller, buyer, lines, totals).")


class InvoiceFilters(ReadModel):
    company_id: int | None = Field(None, ge=1)
    type: InvoiceKind | None = None
    since: AwareTimestamp | None = Field(None, description="Issued at or after this instant.")
    until: AwareTimestamp | None = Field(None, description="Issued before this instant.")
