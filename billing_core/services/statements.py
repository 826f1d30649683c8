"""The monthly usage statement of a company: its calls, refunds, adjustments and top-ups, with totals, as PDF.

A statement is not an invoice (VAT was invoiced with the top-ups); it is built on request and not stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from billing_core.db.tables import call_charges, companies, ledger
from billing_core.errors import InvalidInput, NotFound
from billing_core.ports import PdfRenderer
from billing_core.services.context import ServiceContext
from billing_core.services.invoices import seller_of


class StatementService:
    def __init__(self, ctx: ServiceContext, renderer: PdfRenderer) -> None:
        self._ctx = ctx
        self._renderer = renderer

    def statement(self, company_id: int, year: int, month: int) -> tuple[dict[str, Any], bytes]:
        """A company's calls, refunds, adjustments and top-ups of one month, with totals, as PDF."""
        if not 1 <= month <= 12:
            raise InvalidInput("month must be between 1 and 12")
        # the seller's calendar month (BILLING_TIMEZONE), as for invoice dates; times are printed in it too
        zone = ZoneInfo(self._ctx.settings.timezone)
        start = datetime(year, month, 1, tzinfo=zone)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
        doc = self._ctx.db.read(lambda conn: self._statement_doc(conn, company_id, start, end))
        return doc, self._renderer.render_statement(doc)

    def _statement_doc(self, conn: Connection, company_id: int, start: datetime, end: datetime) -> dict[str, Any]:
        company = conn.execute(select(companies).where(companies.c.id == company_id)).mappings().first()
        if company is None:
            raise NotFound(f"company {company_id} does not exist")
        calls = [
            {
                "call_id": r.call_id,
                "caller_number": r.caller_number,
                "started_at": r.call_started_at.astimezone(start.tzinfo).isoformat(),
                "duration_seconds": r.duration_seconds,
                "billed_seconds": r.billed_seconds,
                "rate_per_minute": str(r.rate_per_minute),
                "amount": r.amount_charged,
            }
            for r in conn.execute(
                select(call_charges)
                .where(
                    call_charges.c.company_id == company_id,
                    call_charges.c.charged_at >= start,
                    call_charges.c.charged_at < end,
                )
                .order_by(call_charges.c.call_started_at, call_charges.c.id)
            )
        ]
        entries = list(
            conn.execute(
                select(ledger)
                .where(ledger.c.company_id == company_id, ledger.c.created_at >= start, ledger.c.created_at < end)
                .order_by(ledger.c.id)
            )
        )

        def rows(*types: str) -> list[dict[str, Any]]:
            return [
                {
                    "created_at": e.created_at.astimezone(start.tzinfo).isoformat(),
                    "description": e.description,
                    "amount": e.amount,
                }
                for e in entries
                if e.type in types
            ]

        before = (
            conn.execute(
                select(ledger.c.balance_after)
                .where(ledger.c.company_id == company_id, ledger.c.created_at < start)
                .order_by(ledger.c.id.desc())
                .limit(1)
            ).scalar()
            or 0
        )
        closing = entries[-1].balance_after if entries else before
        refunds, adjustments, topup_rows = rows("refund"), rows("adjustment", "reversal"), rows("topup", "bonus")
        return {
            "month": f"{start:%Y-%m}",
            "locale": company["locale"],
            "currency": company["currency"],
            "seller": seller_of(self._ctx.settings).model_dump(mode="json"),
            "buyer": {"name": company["name"], "customer_number": f"K{company_id:06d}"},
            "opening_balance": int(before),
            "closing_balance": int(closing),
            "calls": calls,
            "refunds": refunds,
            "adjustments": adjustments,
            "topups": topup_rows,
            "totals": {
                "calls": sum(c["amount"] for c in calls),
                "duration_seconds": sum(c["duration_seconds"] for c in calls),
                "billed_seconds": sum(c["billed_seconds"] for c in calls),
                "refunds": sum(r["amount"] for r in refunds),
                "adjustments": sum(a["amount"] for a in adjustments),
                "topups": sum(p["amount"] for p in topup_rows),
            },
        }
