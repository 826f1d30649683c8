"""The words printed on invoices, credit notes and statements, in German and English.

The issuing service writes some of them into the document (line names, payment terms) and the PDF
template prints the rest; both pick the language from the buyer's locale the same way.
"""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "de": {
        "title": "Rechnung",
        "credit_title": "Gutschrift (Rechnungskorrektur)",
        "number": "Rechnungsnummer",
        "issue_date": "Rechnungsdatum",
        "service_period": "Leistungszeitraum",
        "corrects": "Bezieht sich auf",
        "customer_no": "Kundennummer",
        "seller_vat_id": "USt-IdNr.",
        "vat_id": "USt-IdNr.",
        "buyer_vat_id": "USt-IdNr. des Kunden",
        "tax_number": "Steuernummer",
        "pos": "Pos.",
        "description": "Beschreibung",
        "vat_rate": "USt.",
        "net": "Netto",
        "total_net": "Summe netto",
        "vat": "Umsatzsteuer",
        "total_gross": "Gesamtbetrag",
        "paid": "Bereits bezahlt",
        "bonus_title": "Bonusguthaben",
        "bonus_text": "{amount} wurden Ihrem Guthaben zusätzlich kostenlos gutgeschrieben; "
        "der Bonus ist kein Entgelt und nicht Teil dieser Rechnung.",
        "prepaid_note": "Vorauszahlung auf Telefonie-Leistungen (KI-Telefonassistent), abgerechnet nach Nutzung "
        "aus dem Prepaid-Guthaben.",
        "paid_terms": "Der Betrag wurde bereits beglichen.",
        "refund_terms": "Der Betrag wird erstattet.",
        "topup_line": "Aufladung Prepaid-Guthaben",
        "refund_line": "Erstattung Prepaid-Guthaben",
        "statement_title": "Nutzungsübersicht",
        "opening_balance": "Anfangssaldo",
        "closing_balance": "Endsaldo",
        "calls": "Anrufe",
        "date": "Datum",
        "call": "Anruf",
        "caller": "Rufnummer",
        "duration": "Dauer",
        "billed_seconds": "Abgerechnet",
        "rate": "Tarif/Min.",
        "amount": "Betrag",
        "total": "Summe",
        "refunds": "Erstattungen",
        "adjustments": "Korrekturen",
        "topups": "Aufladungen",
        "statement_note": "Diese Übersicht ist keine Rechnung; die Umsatzsteuer wurde mit den Aufladungen "
        "in Rechnung gestellt.",
    },
    "en": {
        "title": "Invoice",
        "credit_title": "Credit note",
        "number": "Invoice number",
        "issue_date": "Issue date",
        "service_period": "Service period",
        "corrects": "Corrects",
        "customer_no": "Customer number",
        "seller_vat_id": "VAT ID",
        "vat_id": "VAT ID",
        "buyer_vat_id": "Customer VAT ID",
        "tax_number": "Tax number",
        "pos": "#",
        "description": "Description",
        "vat_rate": "VAT",
        "net": "Net",
        "total_net": "Total net",
        "vat": "VAT",
        "total_gross": "Total",
        "paid": "Already paid",
        "bonus_title": "Bonus credit",
        "bonus_text": "{amount} was added to your balance free of charge; the bonus is not a consideration "
        "and not part of this invoice.",
        "prepaid_note": "Advance payment for telephony services (AI phone assistant), charged by usage from the "
        "prepaid balance.",
        "paid_terms": "This amount has been paid.",
        "refund_terms": "This amount is refunded.",
        "topup_line": "Prepaid balance top-up",
        "refund_line": "Prepaid balance refund",
        "statement_title": "Usage statement",
        "opening_balance": "Opening balance",
        "closing_balance": "Closing balance",
        "calls": "Calls",
        "date": "Date",
        "call": "Call",
        "caller": "Caller",
        "duration": "Duration",
        "billed_seconds": "Billed",
        "rate": "Rate/min",
        "amount": "Amount",
        "total": "Total",
        "refunds": "Refunds",
        "adjustments": "Adjustments",
        "topups": "Top-ups",
        "statement_note": "This statement is not an invoice; VAT was invoiced with the top-ups.",
    },
}


def language(locale: str) -> str:
    return "de" if locale.lower().startswith("de") else "en"


def labels(locale: str) -> dict[str, str]:
    return LABELS[language(locale)]
