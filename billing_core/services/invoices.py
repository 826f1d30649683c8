"""Issuing invoices for top-ups and credit notes for their refunds: numbers and documents.

Issuing happens inside the transaction that settles the top-up or the refund (the ``*_in`` methods
join the caller's transaction): the document (every printed field, a typed
:class:`~billing_core.domain.invoice_document.InvoiceDocument` stored as JSON) and its number are
written together; numbers come from a counter row taken under lock, so they are gap-free and unique per
series and year even on a Galera cluster. Rendering the PDF (slow) is :mod:`.invoice_files`' job; the
monthly usage statement is :mod:`.statements`'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, RowMapping, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from billing_core.config import Settings
from billing_core.db.database import inserted_id
from billing_core.db.tables import companies, invoice_counters, invoices, topup_refunds, topups
from billing_core.domain.invoice_document import (
    Buyer,
    CorrectedInvoice,
    InvoiceDocument,
    InvoiceKind,
    Line,
    Period,
    Seller,
    Totals,
    Vat,
)
from billing_core.domain.invoice_labels import labels
from billing_core.domain.vat import VatSplit, split, treatment
from billing_core.errors import InvoiceDataMissing, NotFound, SellerDataMissing
from billing_core.money import Money
from billing_core.services import notifications
from billing_core.services.context import ServiceContext

log = logging.getLogger(__name__)
SERIES: dict[InvoiceKind, str] = {"invoice": "RE", "credit_note": "GS"}
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
    document: InvoiceDocument

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
            "vat_rate": format(self.document.vat.rate, "f"),
            "vat_category": self.document.vat.category,
            "issued_at": self.issued_at.isoformat(),
            "pdf_sha256": self.pdf_sha256,
        }


def invoice_view(row: RowMapping) -> InvoiceView:
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
        document=InvoiceDocument.from_json(row["document"]),
    )


def load_invoice(conn: Connection, number: str) -> InvoiceView:
    row = conn.execute(select(invoices).where(invoices.c.number == number)).mappings().first()
    if row is None:
        raise NotFound(f"invoice {number} does not exist")
    return invoice_view(row)


def seller_of(settings: Settings) -> Seller:
    """The seller printed on every invoice and statement (BILLING_SELLER_*)."""
    return Seller(
        name=settings.seller_name,
        address_line1=settings.seller_address_line1,
        postal_code=settings.seller_postal_code,
        city=settings.seller_city,
        country=settings.seller_country.upper(),
        vat_id=settings.seller_vat_id,
        tax_number=settings.seller_tax_number or None,
        email=settings.seller_email,
    )


def in_seller_zone(settings: Settings, moment: datetime) -> datetime:
    """Invoice dates and number years are the seller's calendar (BILLING_TIMEZONE), not UTC."""
    return moment.astimezone(ZoneInfo(settings.timezone))


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


class InvoiceService:
    """Issues and reads invoices and credit notes.

    ``issue_for_topup_in``, ``issue_credit_note_in``, ``after_settle_in`` and ``after_refund_in`` join the
    caller's transaction (the one that credits the top-up or settles the refund); every other public
    method is one transaction of its own.
    """

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
        vat = self._vat(company)
        amounts = self._split(topup["amount"], vat, topup["currency"])
        words = labels(company["locale"])
        line = Line(
            id="1",
            name=words["topup_line"],
            net=amounts.net,
            description=f"#{topup['id']} · {PAYMENT_WORDS.get(topup['source'], topup['source'])}"
            f"{' · ' + topup['reference'] if topup['reference'] else ''}",
        )
        doc = self._draft(
            company,
            kind="invoice",
            currency=topup["currency"],
            now=now,
            vat=vat,
            amounts=amounts,
            line=line,
            paid=topup["amount"],  # what was received; with net prices the VAT is still due
            bonus=topup["bonus_amount"],
            payment_terms=words["paid_terms"],
        )
        invoice = self._store(conn, doc, company["id"], topup_id, None, None, f"topup:{topup_id}", now)
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
        vat = original.document.vat  # a credit note corrects with the VAT of the invoice it corrects
        amounts = self._split(refund["amount"], vat, refund["currency"])
        amounts = self._last_credit_takes_the_rest(conn, refund, original, amounts)
        words = labels(company["locale"])
        notes: tuple[str, ...] = ()
        if refund["bonus_reversed"]:
            notes = (f"Bonus: -{Money(refund['bonus_reversed'], refund['currency']).format(company['locale'])}",)
        doc = self._draft(
            company,
            kind="credit_note",
            currency=refund["currency"],
            now=now,
            vat=vat,
            amounts=amounts,
            line=Line(
                id="1",
                name=words["refund_line"],
                net=amounts.net,
                description=f"{original.number} · {refund['reason']}",
            ),
            paid=0,
            bonus=0,
            payment_terms=words["refund_terms"],
            more_notes=notes,
            corrects=CorrectedInvoice(number=original.number, issue_date=original.document.issue_date),
        )
        return self._store(
            conn, doc, company["id"], refund["topup_id"], refund_id, original.id, f"topup_refund:{refund_id}", now
        )

    @staticmethod
    def _last_credit_takes_the_rest(
        conn: Connection, refund: RowMapping, original: InvoiceView, amounts: VatSplit
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
        """Hook for TopupService: invoice the credit; missing buyer or seller data never blocks the credit itself."""
        self._issue_or_report(conn, lambda: self.issue_for_topup_in(conn, topup_id), topup_id)

    def after_refund_in(self, conn: Connection, refund_id: int, topup_id: int) -> None:
        """Hook for TopupRefundService: the credit note of a settled refund, or an admin alert."""
        self._issue_or_report(conn, lambda: self.issue_credit_note_in(conn, refund_id), topup_id)

    def _issue_or_report(self, conn: Connection, issue: Callable[[], InvoiceView], topup_id: int) -> None:
        try:
            issue()
        except InvoiceDataMissing as error:  # raised before anything was numbered or written
            now = self._ctx.clock()
            # a missing buyer detail is reported per top-up; a missing seller once a day, not per payment
            day = in_seller_zone(self._ctx.settings, now)
            scope = f"seller:{day:%Y-%m-%d}" if error.party == "seller" else str(topup_id)
            notifications.enqueue(
                conn,
                kind="invoice_blocked",
                recipient="admin",
                company_id=error.company_id,
                now=now,
                payload={
                    "topup_id": topup_id,
                    "reason": error.message,
                    "missing": error.missing,
                    "party": error.party,
                },
                dedupe_key=f"invoice_blocked:{scope}:{','.join(error.missing)}"[:191],
            )

    # -- operating it -----------------------------------------------------------------------------

    def issue_missing(self) -> list[str]:
        """Invoice credited top-ups and refunds that have no document yet (after an address or the seller was added).

        One transaction per document, so one that still cannot be issued does not hold back the others."""
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

    def get(self, number: str) -> InvoiceView:
        return self._ctx.db.read(lambda conn: load_invoice(conn, number))

    def list(self, *, company_id: int | None = None, kind: str | None = None, limit: int = 500) -> list[InvoiceView]:
        query = select(invoices)
        if company_id is not None:
            query = query.where(invoices.c.company_id == company_id)
        if kind is not None:
            query = query.where(invoices.c.kind == kind)
        query = query.order_by(invoices.c.id).limit(limit)
        return self._ctx.db.read(lambda conn: [invoice_view(r) for r in conn.execute(query).mappings()])

    # -- internals --------------------------------------------------------------------------------

    def _buyer(self, conn: Connection, company_id: int) -> RowMapping:
        company = conn.execute(select(companies).where(companies.c.id == company_id)).mappings().first()
        if company is None:
            raise NotFound(f"company {company_id} does not exist")
        missing = [field for field in REQUIRED_BUYER_FIELDS if not company[field]]
        if missing:
            raise InvoiceDataMissing(company_id, missing)
        missing_settings = self._ctx.settings.missing_seller_settings()
        if missing_settings:  # no invented seller on a legal document: the invoice waits
            raise SellerDataMissing(company_id, missing_settings)
        return company

    def _vat(self, company: RowMapping) -> Vat:
        settings = self._ctx.settings
        vt = treatment(
            seller_country=settings.seller_country,
            buyer_country=company["country"],
            buyer_vat_id=company["vat_id"],
            rate=settings.vat_rate,
        )
        return Vat(category=vt.category, rate=vt.rate, note=vt.note, exemption_code=vt.exemption_code)

    def _split(self, amount: int, vat: Vat, currency: str) -> VatSplit:
        return split(amount, Decimal(vat.rate), currency, amount_includes_vat=self._ctx.settings.prices_include_vat)

    def _draft(
        self,
        company: RowMapping,
        *,
        kind: InvoiceKind,
        currency: str,
        now: datetime,
        vat: Vat,
        amounts: VatSplit,
        line: Line,
        paid: int,
        bonus: int,
        payment_terms: str,
        more_notes: tuple[str, ...] = (),
        corrects: CorrectedInvoice | None = None,
    ) -> InvoiceDocument:
        """The document without its number (given by :meth:`_store` under the counter's lock)."""
        issue_date = in_seller_zone(self._ctx.settings, now).date()
        return InvoiceDocument(
            kind=kind,
            number="",
            issue_date=issue_date,
            locale=company["locale"],
            currency=currency,
            seller=seller_of(self._ctx.settings),
            buyer=Buyer(
                name=company["name"],
                address_line1=company["address_line1"],
                address_line2=company["address_line2"],
                postal_code=company["postal_code"],
                city=company["city"],
                country=company["country"].upper(),
                vat_id=company["vat_id"],
                email=company["email"],
                customer_number=f"K{company['id']:06d}",
            ),
            period=Period(start=issue_date, end=issue_date),
            vat=vat,
            totals=Totals(net=amounts.net, vat=amounts.vat, gross=amounts.gross, paid=paid),
            lines=(line,),
            notes=tuple(n for n in (vat.note,) if n) + more_notes,
            bonus=bonus,
            payment_terms=payment_terms,
            corrects=corrects,
        )

    def _store(
        self,
        conn: Connection,
        draft: InvoiceDocument,
        company_id: int,
        topup_id: int,
        refund_id: int | None,
        corrects: int | None,
        source_key: str,
        now: datetime,
    ) -> InvoiceView:
        number = allocate_number(conn, SERIES[draft.kind], in_seller_zone(self._ctx.settings, now).year)
        doc = draft.model_copy(update={"number": number})
        invoice_id = inserted_id(
            conn.execute(
                insert(invoices).values(
                    number=doc.number,
                    source_key=source_key,
                    kind=doc.kind,
                    company_id=company_id,
                    topup_id=topup_id,
                    topup_refund_id=refund_id,
                    corrects_invoice_id=corrects,
                    currency=doc.currency,
                    net_amount=doc.totals.net,
                    vat_amount=doc.totals.vat,
                    gross_amount=doc.totals.gross,
                    vat_rate=doc.vat.rate,
                    vat_category=doc.vat.category,
                    document=doc.to_json(),
                    issued_at=now,
                )
            )
        )
        return invoice_view(conn.execute(select(invoices).where(invoices.c.id == invoice_id)).mappings().one())

    @staticmethod
    def _by_source(conn: Connection, source_key: str) -> InvoiceView | None:
        row = conn.execute(select(invoices).where(invoices.c.source_key == source_key)).mappings().first()
        return None if row is None else invoice_view(row)
