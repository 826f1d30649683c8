"""VAT on prepaid top-ups: which treatment applies and how the amount splits into net and VAT.

A top-up pays in advance for calls, so German VAT falls due when the money is received and the invoice
is issued then. A business customer in another EU country with a valid VAT id gets a reverse-charge
invoice (the customer owes the VAT, §13b UStG / Art. 196 VAT directive); everyone else is charged the
configured rate. Rounding happens once, half-up, on the VAT amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from stdnum.eu import vat as eu_vat

from billing_core.money import minor_digits, round_to_minor

EU_COUNTRIES = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())


@dataclass(frozen=True, slots=True)
class VatTreatment:
    category: str  # EN 16931 VAT category: S (standard) | AE (reverse charge)
    rate: Decimal
    note: str | None = None
    exemption_code: str | None = None


@dataclass(frozen=True, slots=True)
class VatSplit:
    net: int
    vat: int
    gross: int


def valid_vat_id(vat_id: str | None) -> bool:
    """Format and check digits of an EU VAT id (python-stdnum); no online VIES query."""
    return vat_id is not None and bool(eu_vat.is_valid(vat_id))


def treatment(
    *, seller_country: str, buyer_country: str | None, buyer_vat_id: str | None, rate: Decimal
) -> VatTreatment:
    buyer = (buyer_country or "").upper()
    id_country = (buyer_vat_id or "").strip().upper()[:2].replace("EL", "GR")
    if (
        buyer in EU_COUNTRIES
        and buyer != seller_country.upper()
        and id_country == buyer  # an id of the buyer's own member state, not e.g. the seller's
        and valid_vat_id(buyer_vat_id)
    ):
        return VatTreatment(
            "AE",
            Decimal(0),
            note="Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge, §13b UStG / Art. 196 MwStSystRL)",
            exemption_code="VATEX-EU-AE",
        )
    return VatTreatment("S", rate)


def split(amount: int, rate: Decimal, currency: str, *, amount_includes_vat: bool) -> VatSplit:
    """Net, VAT and gross in minor units; ``amount`` is the gross or the net, as configured."""
    if amount_includes_vat:
        net = round_to_minor(Decimal(amount) / (1 + rate / 100) / _scale(currency), currency)
        return VatSplit(net, amount - net, amount)
    vat = round_to_minor(Decimal(amount) * rate / 100 / _scale(currency), currency)
    return VatSplit(amount, vat, amount + vat)


def _scale(currency: str) -> Decimal:
    return Decimal(10) ** minor_digits(currency)
