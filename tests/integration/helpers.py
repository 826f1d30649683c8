"""Small builders shared by the integration tests."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

from billing_core.bootstrap import Services
from billing_core.db.tables import ledger
from billing_core.money import Money
from billing_core.queries import MAX_LIMIT
from billing_core.services.companies import CompanyView


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def new_company(
    services: Services,
    *,
    name: str = "Praxis Weber",
    rate: str = "0.42",
    increment: int | None = None,
    funded: str | None = None,
) -> CompanyView:
    company = services.companies.add(
        name=name, email="billing@example.com", actor="test", rate_per_minute=Decimal(rate),
        billing_increment_seconds=increment,
    )
    if funded is not None:
        services.topups.record_payment(company_id=company.id, amount=eur(funded), reference=f"seed-{company.id}",
                                       actor="test")
    return company


def balance_cents(services: Services, company_id: int) -> int:
    return services.balances.get(company_id).balance.cents


def charge(services: Services, company_id: int, call_id: str, seconds: int, started_at: datetime):  # type: ignore[no-untyped-def]
    return services.charging.charge_call(
        call_id=call_id, company_id=company_id, duration_seconds=seconds, started_at=started_at
    )


def assert_ledger_ok(services: Services) -> None:
    report = services.balances.check_ledger()
    assert report.ok, [c.as_json() for c in report.failing]


def charge_entries_per_call(services: Services) -> Counter[str]:
    """How many `charge` ledger entries each call id has (exactly one each when nothing was doubled)."""
    rows = services.db.read(
        lambda conn: conn.execute(
            select(ledger.c.reference_id, func.count()).where(ledger.c.type == "charge")
            .group_by(ledger.c.reference_id)
        ).all()
    )
    return Counter({row[0]: int(row[1]) for row in rows})


def charged_call_ids(services: Services) -> list[str]:
    """Every charged call id, read page by page through the read side."""
    call_ids: list[str] = []
    cursor = None
    while True:
        page = services.queries.call_charges(limit=MAX_LIMIT, cursor=cursor)
        call_ids += [charge.call_id for charge in page.items]
        if page.next_cursor is None:
            return call_ids
        cursor = page.next_cursor
