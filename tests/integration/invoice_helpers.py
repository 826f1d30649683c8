"""Builders and readers shared by the invoice tests: companies with an address, PDF text, the embedded XML."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from facturx import get_xml_from_pdf, xml_check_xsd
from lxml import etree
from pypdf import PdfReader
from sqlalchemy import select

from billing_core.bootstrap import Services
from billing_core.db.tables import invoice_counters, invoices, notifications, topups
from billing_core.money import Money
from billing_core.services.companies import CompanyView
from tests.integration.helpers import eur

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
MUNICH = {"address_line1": "Hauptstraße 5", "postal_code": "80331", "city": "München", "country": "DE"}
VIENNA = {"address_line1": "Mariahilfer Straße 10", "postal_code": "1070", "city": "Wien", "country": "AT"}
VALID_AT_VAT_ID = "ATU13585627"  # check digits right (python-stdnum)
INVALID_AT_VAT_ID = "ATU13585626"  # one digit off


def company_with_address(
    services: Services, *, name: str = "Praxis Weber GmbH", locale: str = "de_DE", **details: Any
) -> CompanyView:
    fields = {**MUNICH, **details}
    return services.companies.add(
        name=name, email="buchhaltung@weber.example", actor="test", locale=locale,
        **{k: v for k, v in fields.items() if v is not None},
    )


def pay(services: Services, company_id: int, amount: str, reference: str = "RF18 5390") -> Any:
    """A bank transfer recorded as a succeeded top-up (the way ``billing topups record`` does it)."""
    return services.topups.record_payment(company_id=company_id, amount=eur(amount), reference=reference,
                                          actor="test")


def ten_percent_bonus_from_100(services: Services) -> None:
    services.bonus_rules.add(name="10 % ab 100 €", min_topup=eur("100.00"), bonus_percent=Decimal("10"), actor="test")


def invoice_row(services: Services, number: str) -> dict[str, Any]:
    return services.db.read(
        lambda conn: dict(conn.execute(select(invoices).where(invoices.c.number == number)).mappings().one())
    )


def invoice_numbers(services: Services, kind: str | None = None) -> list[str]:
    return [i.number for i in services.invoices.list(kind=kind, limit=10_000)]


def topup_invoice_id(services: Services, topup_id: int) -> int | None:
    return services.db.read(
        lambda conn: conn.execute(select(topups.c.invoice_id).where(topups.c.id == topup_id)).scalar()
    )


def counters(services: Services) -> dict[tuple[str, int], int]:
    rows = services.db.read(lambda conn: conn.execute(select(invoice_counters)).mappings().all())
    return {(r["series"], r["year"]): r["last_number"] for r in rows}


def queued(services: Services, kind: str) -> list[dict[str, Any]]:
    query = select(notifications).where(notifications.c.kind == kind).order_by(notifications.c.id)
    return services.db.read(lambda conn: [dict(r) for r in conn.execute(query).mappings()])


def pdf_text(pdf: bytes) -> str:
    """The text of every page, with all whitespace (babel's no-break spaces too) collapsed to one space."""
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(text.replace("\xa0", " ").replace("\u202f", " ").split())


def shown(money_cents: int, locale: str, currency: str = "EUR") -> str:
    """An amount as the documents print it (babel), with the same whitespace normalisation as pdf_text."""
    return " ".join(Money(money_cents, currency).format(locale).replace("\xa0", " ").replace("\u202f", " ").split())


def embedded_xml(pdf: bytes) -> etree._Element:
    """The Factur-X XML extracted from the PDF, after checking it against the official EN 16931 schema."""
    filename, xml = get_xml_from_pdf(pdf, check_xsd=False)
    assert filename == "factur-x.xml"
    assert xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    return etree.fromstring(xml)


def xml_text(root: etree._Element, path: str) -> str:
    found = root.findtext(path, namespaces=NS)
    assert found is not None, path
    return found


def xml_all(root: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path, namespaces=NS)]


def xml_totals(root: etree._Element) -> dict[str, int]:
    """The header totals of the XML in minor units (exactly: the strings must have two decimals)."""
    sums = ".//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:"
    result = {}
    for tag in ("LineTotalAmount", "TaxBasisTotalAmount", "TaxTotalAmount", "GrandTotalAmount",
                "TotalPrepaidAmount", "DuePayableAmount"):
        value = Decimal(xml_text(root, sums + tag))
        assert value == value.quantize(Decimal("0.01")), (tag, value)
        result[tag] = int(value * 100)
    return result


def is_pdf_a3(pdf: bytes) -> bool:
    xmp = PdfReader(io.BytesIO(pdf)).xmp_metadata
    return xmp is not None and str(xmp.pdfaid_part) == "3" and str(xmp.pdfaid_conformance) == "B"
