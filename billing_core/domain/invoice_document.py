"""The invoice document: every field an invoice or credit note prints, fixed when it is issued.

It is stored as JSON beside the invoice row and is the only input of the PDF template and of the
Factur-X (EN 16931) XML, so a document rendered again years later shows exactly what was issued.
Amounts are integer minor units of ``currency``; dates are the seller's calendar days.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

InvoiceKind = Literal["invoice", "credit_note"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Seller(_Frozen):
    name: str
    address_line1: str
    postal_code: str
    city: str
    country: str
    vat_id: str
    tax_number: str | None = None
    email: str


class Buyer(_Frozen):
    name: str
    address_line1: str
    address_line2: str | None = None
    postal_code: str
    city: str
    country: str
    vat_id: str | None = None
    email: str | None = None
    customer_number: str


class Period(_Frozen):
    start: date
    end: date


class Vat(_Frozen):
    category: str  # EN 16931 VAT category: S (standard) | AE (reverse charge)
    rate: Decimal  # percent, e.g. 19
    note: str | None = None
    exemption_code: str | None = None


class Totals(_Frozen):
    net: int
    vat: int
    gross: int
    paid: int  # what was received; with net prices the VAT is still due


class Line(_Frozen):
    id: str
    name: str
    net: int
    description: str | None = None


class CorrectedInvoice(_Frozen):
    """The invoice a credit note corrects."""

    number: str
    issue_date: date


class InvoiceDocument(_Frozen):
    kind: InvoiceKind
    number: str
    issue_date: date
    locale: str
    currency: str
    seller: Seller
    buyer: Buyer
    period: Period
    vat: Vat
    totals: Totals
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()
    bonus: int = 0  # bonus credit granted with the top-up: shown, but not part of the invoiced amount
    payment_terms: str
    corrects: CorrectedInvoice | None = None

    def to_json(self) -> str:
        """The stored form (keys sorted, so equal documents are equal text)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> InvoiceDocument:
        return cls.model_validate_json(text)
