"""The PDF files of issued invoices and credit notes: rendered from the stored document, stored, mailed.

Rendering (slow) runs after the issuing transaction, in the worker's process pool when one is given.
The first stored rendering of a document, whoever asked for it, queues the mail with the PDF, once (by
its ``dedupe_key``). Rendering again (:meth:`InvoiceFileService.regenerate`) reads the stored document,
so the number and every amount stay as issued. Each public method is one transaction per stored file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future

from sqlalchemy import Connection, select, update

from billing_core.db.tables import invoices
from billing_core.domain.invoice_document import InvoiceDocument
from billing_core.errors import NotFound
from billing_core.ports import PdfRenderer
from billing_core.services import notifications
from billing_core.services.context import ServiceContext
from billing_core.services.invoices import InvoiceView, load_invoice

log = logging.getLogger(__name__)


def _run_now(render: Callable[[InvoiceDocument], bytes], doc: InvoiceDocument) -> Future[bytes]:
    future: Future[bytes] = Future()
    try:
        future.set_result(render(doc))
    except Exception as error:
        future.set_exception(error)
    return future


class InvoiceFileService:
    def __init__(self, ctx: ServiceContext, renderer: PdfRenderer) -> None:
        self._ctx = ctx
        self._renderer = renderer

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
        pending = self._ctx.db.read(
            lambda conn: [(r.id, InvoiceDocument.from_json(r.document)) for r in conn.execute(query)]
        )
        run = executor.submit if executor else _run_now
        futures = [(invoice_id, doc, run(self._renderer.render_invoice, doc)) for invoice_id, doc in pending]
        rendered: list[str] = []
        for invoice_id, doc, future in futures:
            try:
                pdf = future.result()
            except Exception as error:  # one broken document must not hold back the others
                log.error("invoice PDF failed", extra={"number": doc.number, "error": type(error).__name__})
                continue
            self._save_pdf_now(invoice_id, doc, pdf)
            rendered.append(doc.number)
        return rendered

    def regenerate(self, number: str) -> InvoiceView:
        """Render again from the stored document: the number and every amount stay as issued."""
        invoice = self._get(number)
        pdf = self._renderer.render_invoice(invoice.document)
        self._save_pdf_now(invoice.id, invoice.document, pdf)
        return self._get(number)

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

    def _get(self, number: str) -> InvoiceView:
        return self._ctx.db.read(lambda conn: load_invoice(conn, number))

    def _save_pdf_now(self, invoice_id: int, doc: InvoiceDocument, pdf: bytes) -> None:
        self._ctx.db.write(lambda conn: self._save_pdf(conn, invoice_id, doc, pdf))

    def _save_pdf(self, conn: Connection, invoice_id: int, doc: InvoiceDocument, pdf: bytes) -> None:
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
                kind=doc.kind,
                recipient="company",
                company_id=company_id,
                now=now,
                payload={
                    "invoice_id": invoice_id,
                    "number": doc.number,
                    "gross": {"cents": doc.totals.gross, "currency": doc.currency},
                },
                dedupe_key=f"invoice_mail:{doc.number}",
            )
