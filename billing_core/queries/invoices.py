"""Invoices and credit notes as issued (number, amounts, VAT), paged newest first."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Connection, select

from billing_core.db.tables import companies, invoices
from billing_core.errors import NotFound
from billing_core.queries.base import (
    DEFAULT_LIMIT,
    AwareTimestamp,
    MoneyView,
    Page,
    ReadModel,
    Timestamp,
    keyset_page,
    narrowed,
)

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


_SUMMARY_COLUMNS = [c for c in invoices.c if c.name not in ("pdf", "document")]


def _fields(row: Any) -> dict[str, Any]:
    currency, locale = row["currency"], row["locale"]
    return {
        "id": row["id"],
        "number": row["number"],
        "type": row["kind"],
        "company_id": row["company_id"],
        "topup_id": row["topup_id"],
        "topup_refund_id": row["topup_refund_id"],
        "corrects_invoice_id": row["corrects_invoice_id"],
        "net": MoneyView.of(row["net_amount"], currency, locale),
        "vat": MoneyView.of(row["vat_amount"], currency, locale),
        "gross": MoneyView.of(row["gross_amount"], currency, locale),
        "vat_rate": format(Decimal(row["vat_rate"]).normalize(), "f"),
        "vat_category": row["vat_category"],
        "issued_at": row["issued_at"],
        "rendered_at": row["rendered_at"],
        "pdf_sha256": row["pdf_sha256"],
    }


def list_invoices(
    conn: Connection, filters: InvoiceFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[InvoiceSummary]:
    filters = filters or InvoiceFilters()
    query = select(*_SUMMARY_COLUMNS, companies.c.locale).join(companies, companies.c.id == invoices.c.company_id)
    query = narrowed(
        query,
        equal=[(invoices.c.company_id, filters.company_id), (invoices.c.kind, filters.type)],
        period=(invoices.c.issued_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        invoices.c.id,
        lambda row: InvoiceSummary(**_fields(row)),
        kind="invoices",
        noun="invoice",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


def invoice(conn: Connection, number: str) -> InvoiceDetail:
    query = (
        select(*_SUMMARY_COLUMNS, invoices.c.document, companies.c.locale)
        .join(companies, companies.c.id == invoices.c.company_id)
        .where(invoices.c.number == number)
    )
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"invoice {number} does not exist")
    return InvoiceDetail(**_fields(row), document=json.loads(row["document"]))
