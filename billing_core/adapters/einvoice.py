"""The Factur-X / ZUGFeRD XML (UN/CEFACT CII, profile EN 16931) of an invoice or credit note document.

Built element by element in the order the official schema prescribes; ``factur-x`` checks it against
that schema when it is embedded, and the tests validate it again after extraction.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from lxml import etree

from billing_core.domain.invoice_document import Buyer, InvoiceDocument, Seller
from billing_core.money import Money

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}
EN16931 = "urn:cen.eu:en16931:2017"
TYPE_CODES = {"invoice": "380", "credit_note": "381"}


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{NS[prefix]}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _amount(cents: int, currency: str) -> str:
    return format(Money(cents, currency).to_decimal(), "f")


def _date(parent: etree._Element, tag: str, day: date, *, kind: str = "udt") -> None:
    _el(_el(parent, tag), f"{kind}:DateTimeString", f"{day:%Y%m%d}", format="102")


def _party(parent: etree._Element, tag: str, party: Seller | Buyer) -> None:
    node = _el(parent, tag)
    _el(node, "ram:Name", party.name)
    address = _el(node, "ram:PostalTradeAddress")
    if party.postal_code:
        _el(address, "ram:PostcodeCode", party.postal_code)
    if party.address_line1:
        _el(address, "ram:LineOne", party.address_line1)
    if isinstance(party, Buyer) and party.address_line2:
        _el(address, "ram:LineTwo", party.address_line2)
    if party.city:
        _el(address, "ram:CityName", party.city)
    _el(address, "ram:CountryID", party.country)
    if party.email:
        _el(_el(node, "ram:URIUniversalCommunication"), "ram:URIID", party.email, schemeID="EM")
    if party.vat_id:
        _el(_el(node, "ram:SpecifiedTaxRegistration"), "ram:ID", party.vat_id, schemeID="VA")
    if isinstance(party, Seller) and party.tax_number:
        _el(_el(node, "ram:SpecifiedTaxRegistration"), "ram:ID", party.tax_number, schemeID="FC")


def cii_xml(doc: InvoiceDocument) -> bytes:
    currency = doc.currency
    vat = doc.vat
    totals = doc.totals
    rate = format(vat.rate.quantize(Decimal("0.01")), "f")
    root = etree.Element(f"{{{NS['rsm']}}}CrossIndustryInvoice", nsmap=NS)

    context = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931)

    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", doc.number)
    _el(header, "ram:TypeCode", TYPE_CODES[doc.kind])
    _date(header, "ram:IssueDateTime", doc.issue_date)
    for note in doc.notes:
        _el(_el(header, "ram:IncludedNote"), "ram:Content", note)

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for line in doc.lines:
        item = _el(transaction, "ram:IncludedSupplyChainTradeLineItem")
        _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", line.id)
        product = _el(item, "ram:SpecifiedTradeProduct")
        _el(product, "ram:Name", line.name)
        if line.description:
            _el(product, "ram:Description", line.description)
        agreement = _el(item, "ram:SpecifiedLineTradeAgreement")
        _el(_el(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", _amount(line.net, currency))
        _el(_el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", "1", unitCode="C62")
        settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
        tax = _el(settlement, "ram:ApplicableTradeTax")
        _el(tax, "ram:TypeCode", "VAT")
        _el(tax, "ram:CategoryCode", vat.category)
        _el(tax, "ram:RateApplicablePercent", rate)
        summation = _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        _el(summation, "ram:LineTotalAmount", _amount(line.net, currency))

    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    _party(agreement, "ram:SellerTradeParty", doc.seller)
    _party(agreement, "ram:BuyerTradeParty", doc.buyer)

    delivery = _el(transaction, "ram:ApplicableHeaderTradeDelivery")
    _date(_el(delivery, "ram:ActualDeliverySupplyChainEvent"), "ram:OccurrenceDateTime", doc.period.start)

    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    _el(settlement, "ram:InvoiceCurrencyCode", currency)
    tax = _el(settlement, "ram:ApplicableTradeTax")
    _el(tax, "ram:CalculatedAmount", _amount(totals.vat, currency))
    _el(tax, "ram:TypeCode", "VAT")
    if vat.note:
        _el(tax, "ram:ExemptionReason", vat.note)
    _el(tax, "ram:BasisAmount", _amount(totals.net, currency))
    _el(tax, "ram:CategoryCode", vat.category)
    if vat.exemption_code:
        _el(tax, "ram:ExemptionReasonCode", vat.exemption_code)
    _el(tax, "ram:RateApplicablePercent", rate)
    period = _el(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", doc.period.start)
    _date(period, "ram:EndDateTime", doc.period.end)
    _el(_el(settlement, "ram:SpecifiedTradePaymentTerms"), "ram:Description", doc.payment_terms)
    sums = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(sums, "ram:LineTotalAmount", _amount(totals.net, currency))
    _el(sums, "ram:TaxBasisTotalAmount", _amount(totals.net, currency))
    _el(sums, "ram:TaxTotalAmount", _amount(totals.vat, currency), currencyID=currency)
    _el(sums, "ram:GrandTotalAmount", _amount(totals.gross, currency))
    _el(sums, "ram:TotalPrepaidAmount", _amount(totals.paid, currency))
    _el(sums, "ram:DuePayableAmount", _amount(totals.gross - totals.paid, currency))
    if doc.corrects:
        referenced = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(referenced, "ram:IssuerAssignedID", doc.corrects.number)
        _date(referenced, "ram:FormattedIssueDateTime", doc.corrects.issue_date, kind="qdt")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
