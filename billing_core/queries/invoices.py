"""Invoices and credit notes as issued (number, amounts, VAT), paged newest first."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from billing_core.db.tables import companies, invoices
from billing_core.errors import NotFound
from billing_core.queries.base import keyset_page, narrowed
from billing_core.read_models.base import DEFAULT_LIMIT, MoneyView, Page
from billing_core.read_models.invoices import InvoiceDetail, InvoiceFilters, InvoiceKind, InvoiceSummary

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = ["InvoiceDetail", "InvoiceFilters", "InvoiceKind", "InvoiceSummary"]

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
