"""Invoices for top-ups, credit notes for their refunds, and monthly usage statements.

Issuing happens inside the transaction that settles the top-up or the refund: the document (every
printed field, as JSON) and its number are written together, numbers come from a counter row taken
under lock, so they are gap-free and unique per series and year even on a Galera cluster. Rendering the
PDF (slow) happens afterwards in the worker, in a process pool, and queues the mail with the PDF.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from billing_core.adapters.pdf import labels, render_invoice_pdf, render_statement_pdf
from billing_core.db.database import inserted_id
from billing_core.db.tables import (
    call_charges,
    companies,
    invoice_counters,
    invoices,
    ledger,
    topup_refunds,
    topups,
)
from billing_core.domain.vat import VatSplit, split, treatment
from billing_core.errors import InvalidInput, InvoiceDataMissing, NotFound
from billing_core.money import Money
from billing_core.services import notifications
from billing_core.services.context import ServiceContext

log = logging.getLogger(__name__)
SERIES = {"invoice": "RE", "credit_note": "GS"}
REQUIRED_BUYER_FIELDS = ("name", "address_line1", "postal_code", "city", "country")
PAYMENT_WORDS = {
    "checkout": "Stripe Checkout",
    "payment_intent": "Stripe",
    "auto_topup": "Stripe (auto top-up)",
    "bank_transfer": "bank transfer",
    "manual": "manual",
}


@dataclass(frozen=True, slots=True)
class InvoiceView:
    id: int
    number: str
    kind: str
    company_id: int
    topup_id: int
    net: Money
    vat: Money
    gross: Money
    issued_at: datetime
    pdf_sha256: str | None
    document: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "type": self.kind,
            "company_id": self.company_id,
            "topup_id": self.topup_id,
            "net": self.net.as_json(),
            "vat": self.vat.as_json(),
            "gross": self.gross.as_json(),
            "vat_rate": self.document["vat"]["rate"],
            "vat_category": self.document["vat"]["category"],
            "issued_at": self.issued_at.isoformat(),
            "pdf_sha256": self.pdf_sha256,
        }


def _view(row: Any) -> InvoiceView:
    currency = row["currency"]
    return InvoiceView(
        id=row["id"],
        number=row["number"],
        kind=row["kind"],
        company_id=row["company_id"],
        topup_id=row["topup_id"],
        net=Money(row["net_amount"], currency),
        vat=Money(row["vat_amount"], currency),
        gross=Money(row["gross_amount"], currency),
        issued_at=row["issued_at"],
        pdf_sha256=row["pdf_sha256"],
        document=json.loads(row["document"]),
    )


def allocate_number(conn: Connection, series: str, year: int) -> str:
    """The next number of the series, e.g. RE-2026-000123: the counter row stays locked until commit."""
    where = (invoice_counters.c.series == series) & (invoice_counters.c.year == year)
    current = conn.execute(select(invoice_counters.c.last_number).where(where).with_for_update()).scalar()
    if current is None:
        savepoint = conn.begin_nested()
        try:
            conn.execute(insert(invoice_counters).values(series=series, year=year, last_number=0))
            savepoint.commit()
        except IntegrityError:  # another transaction opened the year first
            savepoint.rollback()
        current = conn.execute(select(invoice_counters.c.last_number).where(where).with_for_update()).scalar_one()
    number = int(current) + 1
    conn.execute(update(invoice_counters).where(where).values(last_number=number))
    return f"{series}-{year}-{number:06d}"


def _run_now(fn: Callable[..., bytes], *args: Any) -> Future[bytes]:
    future: Future[bytes] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as error:
        future.set_exception(error)
    return future


class InvoiceService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    # -- issuing (inside the settling transaction) ------------------------------------------------

    def issue_for_topup_in(self, conn: Connection, topup_id: int) -> InvoiceView:
        """The invoice of a credited top-up (once: the same top-up gives back the same invoice)."""
        existing = self._by_source(conn, f"topup:{topup_id}")
        if existing is not None:
            return existing
        topup = conn.execute(select(topups).where(topups.c.id == topup_id)).mappings().one()
        company = self._buyer(conn, topup["company_id"])
        now = self._ctx.clock()
        vat, amounts, doc = self._document(company, topup["amount"], topup["currency"], now, kind="invoice")
        t_line = labels(company["locale"])
        doc["lines"] = [
            {
                "id": "1",
                "name": t_line["topup_line"],
                "net": amounts.net,
                "description": f"#{topup['id']} · {PAYMENT_WORDS.get(topup['source'], topup['source'])}"
                f"{' · ' + topup['reference'] if topup['reference'] else ''}",
            }
        ]
        doc["bonus"] = topup["bonus_amount"]
        doc["totals"]["paid"] = topup["amount"]  # what was received; with net prices the VAT is still due
        doc["payment_terms"] = t_line["paid_terms"]
        invoice = self._store(conn, doc, company["id"], topup_id, None, None, f"topup:{topup_id}", vat, amounts, now)
        conn.execute(update(topups).where(topups.c.id == topup_id).values(invoice_id=invoice.id))
        return invoice

    def issue_credit_note_in(self, conn: Connection, refund_id: int) -> InvoiceView:
        """The credit note of a settled top-up refund, referring to the top-up's invoice."""
        existing = self._by_source(conn, f"topup_refund:{refund_id}")
        if existing is not None:
            return existing
        refund = conn.execute(select(topup_refunds).where(topup_refunds.c.id == refund_id)).mappings().one()
        original = self.issue_for_topup_in(conn, refund["topup_id"])
        company = self._buyer(conn, refund["company_id"])
        now = self._ctx.clock()
        vat, amounts, doc = self._document(
            company,
            refund["amount"],
            refund["currency"],
            now,
            kind="credit_note",
            vat_override=original.document["vat"],
        )
        amounts = self._last_credit_takes_the_rest(conn, refund, original, amounts)
        doc["totals"].update(net=amounts.net, vat=amounts.vat, gross=amounts.gross)
        t_line = labels(company["locale"])
        doc["lines"] = [
            {
                "id": "1",
                "name": t_line["refund_line"],
                "net": amounts.net,
                "description": f"{original.number} · {refund['reason']}",
            }
        ]
        doc["bonus"] = 0
        doc["totals"]["paid"] = 0
        doc["payment_terms"] = t_line["refund_terms"]
        doc["corrects"] = {"number": original.number, "issue_date": original.document["issue_date"]}
        if refund["bonus_reversed"]:
            doc["notes"].append(
                f"Bonus: -{Money(refund['bonus_reversed'], refund['currency']).format(company['locale'])}"
            )
        return self._store(
            conn,
            doc,
            company["id"],
            refund["topup_id"],
            refund_id,
            original.id,
            f"topup_refund:{refund_id}",
            vat,
            amounts,
            now,
        )

    @staticmethod
    def _last_credit_takes_the_rest(
        conn: Connection, refund: Any, original: InvoiceView, amounts: VatSplit
    ) -> VatSplit:
        """When a refund completes the top-up, its credit note takes what is left of the invoice's net and
        VAT, so the credit notes add up to the invoice to the cent (each one rounds its VAT on its own)."""
        topup = conn.execute(
            select(topups.c.amount, topups.c.refunded_amount).where(topups.c.id == refund["topup_id"])
        ).one()
        if topup.refunded_amount < topup.amount:
            return amounts
        earlier = conn.execute(
            select(
                func.coalesce(func.sum(invoices.c.net_amount), 0), func.coalesce(func.sum(invoices.c.vat_amount), 0)
            ).where(invoices.c.corrects_invoice_id == original.id)
        ).one()
        net = original.net.cents - int(earlier[0])
        vat = original.vat.cents - int(earlier[1])
        return VatSplit(net, vat, net + vat) if net + vat == amounts.gross else amounts

    def after_settle_in(self, conn: Connection, topup_id: int) -> None:
        """Hook for TopupService: invoice the credit; missing buyer data never blocks the credit itself."""
        self._issue_or_report(conn, lambda: self.issue_for_topup_in(conn, topup_id), topup_id)

    def after_refund_in(self, conn: Connection, refund_id: int, topup_id: int) -> None:
        self._issue_or_report(conn, lambda: self.issue_credit_note_in(conn, refund_id), topup_id)

    def _issue_or_report(self, conn: Connection, issue: Callable[[], InvoiceView], topup_id: int) -> None:
        try:
            issue()
        except InvoiceDataMissing as error:  # raised before anything was numbered or written
            notifications.enqueue(
                conn,
                kind="invoice_blocked",
                recipient="admin",
                company_id=error.company_id,
                now=self._ctx.clock(),
                payload={"topup_id": topup_id, "reason": error.message, "missing": error.missing},
                dedupe_key=f"invoice_blocked:{topup_id}:{','.join(error.missing)}",
            )

    # -- operating it -----------------------------------------------------------------------------

    def issue_missing(self) -> list[str]:
        """Invoice credited top-ups and refunds that have no document yet (e.g. after an address was added)."""
        query = select(topups.c.id).where(
            topups.c.invoice_id.is_(None), topups.c.status.in_(("succeeded", "partially_refunded", "refunded"))
        )
        credited = self._ctx.db.read(lambda conn: list(conn.execute(query).scalars()))
        noted = select(invoices.c.id).where(invoices.c.topup_refund_id == topup_refunds.c.id).exists()
        refunds = select(topup_refunds.c.id).where(topup_refunds.c.status == "succeeded", ~noted)
        refunded = self._ctx.db.read(lambda conn: list(conn.execute(refunds.order_by(topup_refunds.c.id)).scalars()))
        issued: list[str] = []
        for issue, ids in ((self.issue_for_topup_in, credited), (self.issue_credit_note_in, refunded)):
            for row_id in ids:
                try:
                    issued.append(self._issue_one(issue, row_id).number)
                except InvoiceDataMissing:
                    continue
        return issued

    def _issue_one(self, issue: Callable[[Connection, int], InvoiceView], row_id: int) -> InvoiceView:
        return self._ctx.db.write(lambda conn: issue(conn, row_id))

    def has_unrendered(self) -> bool:
        query = select(invoices.c.id).where(invoices.c.pdf.is_(None)).limit(1)
        return self._ctx.db.read(lambda conn: conn.execute(query).first() is not None)

    def render_pending(self, *, limit: int = 20, executor: Executor | None = None) -> list[str]:
        """Render PDFs not rendered yet (in ``executor``'s processes if given) and queue their mails."""
        query = (
            select(invoices.c.id, invoices.c.document)
            .where(invoices.c.pdf.is_(None))
            .order_by(invoices.c.id)
            .limit(limit)
        )
        pending = self._ctx.db.read(lambda conn: [(r.id, json.loads(r.document)) for r in conn.execute(query)])
        run = executor.submit if executor else _run_now
        futures = [(invoice_id, doc, run(render_invoice_pdf, doc)) for invoice_id, doc in pending]
        rendered: list[str] = []
        for invoice_id, doc, future in futures:
            try:
                pdf = future.result()
            except Exception as error:  # one broken document must not hold back the others
                log.error("invoice PDF failed", extra={"number": doc["number"], "error": type(error).__name__})
                continue
            self._save_pdf_now(invoice_id, doc, pdf)
            rendered.append(doc["number"])
        return rendered

    def regenerate(self, number: str) -> InvoiceView:
        """Render again from the stored document: the number and every amount stay as issued."""
        invoice = self.get(number)
        pdf = render_invoice_pdf(invoice.document)
        self._save_pdf_now(invoice.id, invoice.document, pdf)
        return self.get(number)

    def get(self, number: str) -> InvoiceView:
        row = self._ctx.db.read(
            lambda conn: conn.execute(select(invoices).where(invoices.c.number == number)).mappings().first()
        )
        if row is None:
            raise NotFound(f"invoice {number} does not exist")
        return _view(row)

    def pdf(self, number: str) -> bytes:
        """The stored PDF (rendered now if the worker has not got to it yet)."""
        data = self._ctx.db.read(
            lambda conn: conn.execute(select(invoices.c.pdf).where(invoices.c.number == number)).first()
        )
        if data is None:
            raise NotFound(f"invoice {number} does not exist")
        if data.pdf is None:
            self.regenerate(number)
            return self.pdf(number)
        return bytes(data.pdf)

    def pdf_by_id(self, invoice_id: int) -> tuple[str, bytes]:
        number = self._ctx.db.read(
            lambda conn: conn.execute(select(invoices.c.number).where(invoices.c.id == invoice_id)).scalar()
        )
        if number is None:
            raise NotFound(f"invoice {invoice_id} does not exist")
        return str(number), self.pdf(str(number))

    def list(self, *, company_id: int | None = None, kind: str | None = None, limit: int = 500) -> list[InvoiceView]:
        query = select(invoices)
        if company_id is not None:
            query = query.where(invoices.c.company_id == company_id)
        if kind is not None:
            query = query.where(invoices.c.kind == kind)
        query = query.order_by(invoices.c.id).limit(limit)
        return self._ctx.db.read(lambda conn: [_view(r) for r in conn.execute(query).mappings()])

    # -- monthly usage statement ------------------------------------------------------------------

    def statement(self, company_id: int, year: int, month: int) -> tuple[dict[str, Any], bytes]:
        """A company's calls, refunds, adjustments and top-ups of one month, with totals, as PDF."""
        if not 1 <= month <= 12:
            raise InvalidInput("month must be between 1 and 12")
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        doc = self._ctx.db.read(lambda conn: self._statement_doc(conn, company_id, start, end))
        return doc, render_statement_pdf(doc)

    def _statement_doc(self, conn: Connection, company_id: int, start: datetime, end: datetime) -> dict[str, Any]:
        company = conn.execute(select(companies).where(companies.c.id == company_id)).mappings().first()
        if company is None:
            raise NotFound(f"company {company_id} does not exist")
        calls = [
            {
                "call_id": r.call_id,
                "caller_number": r.caller_number,
                "started_at": r.call_started_at.isoformat(),
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
                {"created_at": e.created_at.isoformat(), "description": e.description, "amount": e.amount}
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
            "seller": self._seller(),
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

    # -- internals --------------------------------------------------------------------------------

    def _buyer(self, conn: Connection, company_id: int) -> dict[str, Any]:
        company = conn.execute(select(companies).where(companies.c.id == company_id)).mappings().first()
        if company is None:
            raise NotFound(f"company {company_id} does not exist")
        missing = [field for field in REQUIRED_BUYER_FIELDS if not company[field]]
        if missing:
            raise InvoiceDataMissing(company_id, missing)
        return dict(company)

    def _seller(self) -> dict[str, Any]:
        s = self._ctx.settings
        return {
            "name": s.seller_name,
            "address_line1": s.seller_address_line1,
            "postal_code": s.seller_postal_code,
            "city": s.seller_city,
            "country": s.seller_country.upper(),
            "vat_id": s.seller_vat_id,
            "tax_number": s.seller_tax_number or None,
            "email": s.seller_email,
        }

    def _document(
        self,
        company: dict[str, Any],
        amount: int,
        currency: str,
        now: datetime,
        *,
        kind: str,
        vat_override: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        settings = self._ctx.settings
        if vat_override is None:
            vt = treatment(
                seller_country=settings.seller_country,
                buyer_country=company["country"],
                buyer_vat_id=company["vat_id"],
                rate=settings.vat_rate,
            )
            vat = {
                "category": vt.category,
                "rate": format(vt.rate, "f"),
                "note": vt.note,
                "exemption_code": vt.exemption_code,
            }
        else:
            vat = dict(vat_override)  # a credit note corrects with the VAT of the invoice it corrects
        amounts = split(amount, Decimal(str(vat["rate"])), currency, amount_includes_vat=settings.prices_include_vat)
        issue_date = self._local(now).date().isoformat()
        doc = {
            "kind": kind,
            "number": "",
            "issue_date": issue_date,
            "locale": company["locale"],
            "currency": currency,
            "seller": self._seller(),
            "buyer": {
                "name": company["name"],
                "address_line1": company["address_line1"],
                "address_line2": company["address_line2"],
                "postal_code": company["postal_code"],
                "city": company["city"],
                "country": company["country"].upper(),
                "vat_id": company["vat_id"],
                "email": company["email"],
                "customer_number": f"K{company['id']:06d}",
            },
            "period": {"start": issue_date, "end": issue_date},
            "vat": vat,
            "totals": {"net": amounts.net, "vat": amounts.vat, "gross": amounts.gross},
            "notes": [n for n in (vat.get("note"),) if n],
        }
        return vat, amounts, doc

    def _store(
        self,
        conn: Connection,
        doc: dict[str, Any],
        company_id: int,
        topup_id: int,
        refund_id: int | None,
        corrects: int | None,
        source_key: str,
        vat: dict[str, Any],
        amounts: Any,
        now: datetime,
    ) -> InvoiceView:
        doc["number"] = allocate_number(conn, SERIES[doc["kind"]], self._local(now).year)
        invoice_id = inserted_id(
            conn.execute(
                insert(invoices).values(
                    number=doc["number"],
                    source_key=source_key,
                    kind=doc["kind"],
                    company_id=company_id,
                    topup_id=topup_id,
                    topup_refund_id=refund_id,
                    corrects_invoice_id=corrects,
                    currency=doc["currency"],
                    net_amount=amounts.net,
                    vat_amount=amounts.vat,
                    gross_amount=amounts.gross,
                    vat_rate=Decimal(vat["rate"]),
                    vat_category=vat["category"],
                    document=json.dumps(doc, sort_keys=True),
                    issued_at=now,
                )
            )
        )
        return _view(conn.execute(select(invoices).where(invoices.c.id == invoice_id)).mappings().one())

    def _save_pdf_now(self, invoice_id: int, doc: dict[str, Any], pdf: bytes) -> None:
        self._ctx.db.write(lambda conn: self._save_pdf(conn, invoice_id, doc, pdf))

    def _save_pdf(self, conn: Connection, invoice_id: int, doc: dict[str, Any], pdf: bytes) -> None:
        """Store the PDF; its first rendering, whoever asked for it, queues the mail (once, by its key)."""
        now = self._ctx.clock()
        first = conn.execute(select(invoices.c.pdf_sha256).where(invoices.c.id == invoice_id)).scalar() is None
        conn.execute(
            update(invoices)
            .where(invoices.c.id == invoice_id)
            .values(pdf=pdf, pdf_sha256=hashlib.sha256(pdf).hexdigest(), rendered_at=now)
        )
        if first:
            company_id = conn.execute(select(invoices.c.company_id).where(invoices.c.id == invoice_id)).scalar_one()
            notifications.enqueue(
                conn,
                kind=doc["kind"],
                recipient="company",
                company_id=company_id,
                now=now,
                payload={
                    "invoice_id": invoice_id,
                    "number": doc["number"],
                    "gross": {"cents": doc["totals"]["gross"], "currency": doc["currency"]},
                },
                dedupe_key=f"invoice_mail:{doc['number']}",
            )

    def _local(self, moment: datetime) -> datetime:
        """Invoice dates and number years are the seller's calendar (BILLING_TIMEZONE), not UTC."""
        return moment.astimezone(ZoneInfo(self._ctx.settings.timezone))

    @staticmethod
    def _by_source(conn: Connection, source_key: str) -> InvoiceView | None:
        row = conn.execute(select(invoices).where(invoices.c.source_key == source_key)).mappings().first()
        return None if row is None else _view(row)
