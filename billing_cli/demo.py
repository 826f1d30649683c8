"""Demo data for a first look (``billing demo``, ``make run``): loaded only into an empty database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from billing_core.bootstrap import Services
from billing_core.config import Settings
from billing_core.db.tables import companies
from billing_core.money import Money

# The seller on the demo's invoices when the operator has configured none (Settings invents no seller):
# named as a demo so that nobody takes these documents for real ones.
DEMO_SELLER: dict[str, str] = {
    "seller_name": "Demo Sprachassistenz GmbH (Demo-Daten)",
    "seller_address_line1": "Musterstraße 1",
    "seller_postal_code": "10115",
    "seller_city": "Berlin",
    "seller_country": "DE",
    "seller_vat_id": "DE136695976",
    "seller_email": "rechnung@demo.example",
}


def demo_settings(settings: Settings) -> Settings:
    """The operator's settings for loading the demo: their seller if configured, the demo seller otherwise."""
    if not settings.missing_seller_settings():
        return settings
    return settings.model_copy(update=DEMO_SELLER)


@dataclass(frozen=True)
class DemoCompany:
    name: str
    email: str
    locale: str
    topup: str
    calls: tuple[tuple[str, int], ...]
    address: dict[str, Any] = field(default_factory=dict)


DEMO_COMPANIES = (
    DemoCompany(
        "Zahnarztpraxis Dr. Weber",
        "praxis@weber-dental.example",
        "de_DE",
        "150.00",
        (("demo-call-1", 245), ("demo-call-2", 61)),
        {
            "address_line1": "Königsallee 12",
            "postal_code": "40212",
            "city": "Düsseldorf",
            "country": "DE",
            "tax_number": "103/5734/0815",
        },
    ),
    DemoCompany(
        "Autohaus Berger GmbH",
        "service@berger-auto.example",
        "de_DE",
        "500.00",
        (("demo-call-3", 1830),),
        {
            "address_line1": "Mariahilfer Straße 88",
            "postal_code": "1070",
            "city": "Wien",
            "country": "AT",
            "vat_id": "ATU12345678",
        },
    ),
    DemoCompany(
        "Alpine Physio AG",
        "hello@alpine-physio.example",
        "en_GB",
        "25.00",
        (("demo-call-4", 2100),),
        {"address_line1": "Bahnhofstrasse 5", "postal_code": "8001", "city": "Zürich", "country": "CH"},
    ),
)


def load_demo_data(services: Services, *, actor: str) -> bool:
    """Seed companies, a bonus rule, top-ups and calls; returns False (and does nothing) if data exists."""
    has_companies = services.db.read(
        lambda conn: conn.execute(select(func.count()).select_from(companies)).scalar_one() > 0
    )
    if has_companies:
        return False
    services.bonus_rules.add(
        name="10% on 500 EUR and more", min_topup=Money.parse("500.00", "EUR"), bonus_percent=Decimal(10), actor=actor
    )
    for spec in DEMO_COMPANIES:
        company = services.companies.add(
            name=spec.name, email=spec.email, locale=spec.locale, actor=actor, **spec.address
        )
        services.topups.record_payment(
            company_id=company.id,
            amount=Money.parse(spec.topup, company.currency),
            reference=f"DEMO-{company.id}",
            actor=actor,
        )
        for call_id, seconds in spec.calls:
            started = services.ctx.clock() - timedelta(seconds=seconds + 60)
            services.charging.charge_call(
                call_id=call_id, company_id=company.id, duration_seconds=seconds, started_at=started
            )
    return True
