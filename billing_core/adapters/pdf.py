"""Invoices, credit notes and usage statements as PDF: Jinja2 HTML, WeasyPrint, and for invoices PDF/A-3
with the Factur-X (EN 16931) XML embedded, so the file is a valid German B2B e-invoice.

The render functions are plain top-level functions of a document (the typed, picklable
:class:`~billing_core.domain.invoice_document.InvoiceDocument`, or a statement's JSON-able dict), so a
process pool can run them; they read nothing but their argument and the templates.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from billing_core.concurrency import refuse_in_event_loop
from billing_core.domain.invoice_labels import labels, language
from billing_core.money import Money

if TYPE_CHECKING:
    from jinja2 import Environment

    from billing_core.domain.invoice_document import InvoiceDocument

# Babel, Jinja2, lxml and WeasyPrint are imported where a document is rendered: every process builds the
# renderer, few render (`billing mcp` starts without them).

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "invoices"


@cache
def _environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def _helpers(locale: str, currency: str) -> dict[str, Any]:
    from babel import Locale
    from babel.dates import format_date, format_datetime
    from babel.numbers import format_decimal, format_percent

    def money(cents: int) -> str:
        return Money(int(cents), currency).format(locale)

    def when(day: date | str) -> str:
        day = day if isinstance(day, date) else date.fromisoformat(day[:10])
        return str(format_date(day, format="medium", locale=locale))

    def when_time(iso: str) -> str:
        return str(format_datetime(datetime.fromisoformat(iso), format="short", locale=locale))

    def percent(rate: Decimal | str) -> str:
        return str(format_percent(Decimal(rate) / 100, format="#,##0.##%", locale=locale))

    def rate(value: str) -> str:
        return f"{format_decimal(Decimal(value), format='#,##0.00##', locale=locale)} {currency}"

    def country(code: str) -> str:
        return str(Locale.parse(locale).territories.get(code.upper(), code))

    return {"money": money, "date": when, "datetime": when_time, "percent": percent, "rate": rate, "country": country}


def invoice_html(doc: InvoiceDocument) -> str:
    t = dict(labels(doc.locale))
    if doc.kind == "credit_note":
        t["title"] = t["credit_title"]
    return (
        _environment()
        .get_template("invoice.html")
        .render(doc=doc, t=t, lang=language(doc.locale), **_helpers(doc.locale, doc.currency))
    )


def statement_html(doc: Mapping[str, Any]) -> str:
    return (
        _environment()
        .get_template("statement.html")
        .render(
            doc=doc, t=labels(doc["locale"]), lang=language(doc["locale"]), **_helpers(doc["locale"], doc["currency"])
        )
    )


def html_to_pdf(html: str, *, pdf_a: bool = False) -> bytes:
    from weasyprint import HTML  # heavy import: only in the processes that render

    options: dict[str, Any] = {"pdf_variant": "pdf/a-3b"} if pdf_a else {}
    return bytes(HTML(string=html, base_url=str(TEMPLATES)).write_pdf(**options))


def render_invoice_pdf(doc: InvoiceDocument) -> bytes:
    """PDF/A-3b with the EN 16931 XML attached as ``factur-x.xml`` (relationship Data) and the Factur-X XMP.

    WeasyPrint writes the attachment and the XMP in the same pass as the PDF; the XML is first checked
    against the official schema shipped with ``factur-x``, which raises if it is not valid.
    """
    from facturx import xml_check_xsd
    from weasyprint import HTML, Attachment

    from billing_core.adapters.einvoice import cii_xml

    xml = cii_xml(doc)
    xml_check_xsd(xml, flavor="factur-x", level="en16931")
    attachment = Attachment(
        file_obj=io.BytesIO(xml),
        name="factur-x.xml",
        relationship="Data",
        description=f"Factur-X (EN 16931) {doc.number}",
    )
    pdf = HTML(string=invoice_html(doc), base_url=str(TEMPLATES)).write_pdf(
        pdf_variant="pdf/a-3b", attachments=[attachment], xmp_metadata=[str(TEMPLATES / "factur-x.xmp")]
    )
    return bytes(pdf)


def render_statement_pdf(doc: Mapping[str, Any]) -> bytes:
    return html_to_pdf(statement_html(doc))


class WeasyPrintRenderer:
    """The :class:`~billing_core.ports.PdfRenderer` of the shipped processes; stateless, so it pickles
    into a process pool."""

    def render_invoice(self, doc: InvoiceDocument) -> bytes:
        refuse_in_event_loop("rendering a PDF")
        return render_invoice_pdf(doc)

    def render_statement(self, doc: Mapping[str, Any]) -> bytes:
        refuse_in_event_loop("rendering a PDF")
        return render_statement_pdf(doc)
