"""Send an issued invoice (or credit note) to the company again, through the mail outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, select

from billing_core.db.tables import invoices
from billing_core.errors import NotFound
from billing_core.services import audit, notifications, validation
from billing_core.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class ResendResult:
    number: str
    company_id: int
    queued: bool  # False: this request was queued before (same request key)
    rendered: bool  # False: the PDF is not rendered yet; the mail leaves once the worker renders it


def resend_invoice(ctx: ServiceContext, number: str, *, actor: str, request_key: str) -> ResendResult:
    number = validation.identifier(number, "invoice number", max_length=32)
    actor = validation.text(actor, "actor", max_length=200)
    request_key = validation.identifier(request_key, "request key", max_length=100)

    def work(conn: Connection) -> ResendResult:
        row = conn.execute(
            select(
                invoices.c.id, invoices.c.kind, invoices.c.company_id, invoices.c.document, invoices.c.pdf_sha256
            ).where(invoices.c.number == number)
        ).first()
        if row is None:
            raise NotFound(f"invoice {number} does not exist")
        doc = json.loads(row.document)
        now = ctx.clock()
        queued = notifications.enqueue(
            conn,
            kind=row.kind,
            recipient="company",
            company_id=row.company_id,
            now=now,
            payload={
                "invoice_id": row.id,
                "number": number,
                "gross": {"cents": doc["totals"]["gross"], "currency": doc["currency"]},
            },
            dedupe_key=f"invoice_resend:{number}:{request_key}",
        )
        if queued:
            audit.record(
                conn,
                actor=actor,
                action="invoice.resent",
                entity_type="invoice",
                entity_id=number,
                company_id=row.company_id,
                details={},
                now=now,
            )
        return ResendResult(number, row.company_id, queued, row.pdf_sha256 is not None)

    return ctx.db.write(work)
