"""``billing db upgrade`` and ``billing demo``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import click
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from billing_core.cli.main import default_actor, emit, handles_errors, money_text, services
from billing_core.config import Settings
from billing_core.db import migrate
from billing_core.db.tables import companies as companies_table
from billing_core.money import Money


@click.group()
def db() -> None:
    """Database schema."""


@db.command()
def upgrade() -> None:
    """Apply all migrations (creates the SQLite file and its folder when needed)."""
    url = Settings().database_url
    ensure_sqlite_folder(url)
    migrate.upgrade(url)
    click.echo("database is at the latest schema")


def ensure_sqlite_folder(url: str) -> None:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


DEMO_COMPANIES = (
    {"name": "Zahnarztpraxis Dr. Weber", "email": "praxis@weber-dental.example", "locale": "de_DE",
     "address_line1": "Königsallee 12", "postal_code": "40212", "city": "Düsseldorf", "country": "DE",
     "tax_number": "103/5734/0815", "topup": "150.00", "calls": (("demo-call-1", 245), ("demo-call-2", 61))},
    {"name": "Autohaus Berger GmbH", "email": "service@berger-auto.example", "locale": "de_DE",
     "address_line1": "Mariahilfer Straße 88", "postal_code": "1070", "city": "Wien", "country": "AT",
     "vat_id": "ATU12345678", "topup": "500.00", "calls": (("demo-call-3", 1830),)},
    {"name": "Alpine Physio AG", "email": "hello@alpine-physio.example", "locale": "en_GB",
     "address_line1": "Bahnhofstrasse 5", "postal_code": "8001", "city": "Zürich", "country": "CH",
     "topup": "25.00", "calls": (("demo-call-4", 2100),)},
)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @handles_errors
    def demo(as_json: bool) -> None:
        """Load demo companies, top-ups and calls when the database is empty; show balances."""
        from datetime import timedelta

        with services() as svc:
            empty = svc.db.read(lambda conn: conn.execute(select(func.count()).select_from(companies_table)).scalar_one() == 0)
            if empty:
                actor = default_actor()
                if not svc.bonus_rules.list():
                    svc.bonus_rules.add(name="10% on 500 EUR and more", min_topup=Money.parse("500.00", "EUR"),
                                        bonus_percent=Decimal(10), actor=actor)
                for spec in DEMO_COMPANIES:
                    details = {k: v for k, v in spec.items() if k not in ("topup", "calls")}
                    company = svc.companies.add(actor=actor, **details)  # type: ignore[arg-type]
                    svc.topups.record_payment(company_id=company.id, amount=Money.parse(str(spec["topup"]), company.currency),
                                              reference=f"DEMO-{company.id}", actor=actor)
                    for call_id, seconds in spec["calls"]:  # type: ignore[attr-defined]
                        started = svc.ctx.clock() - timedelta(seconds=seconds + 60)
                        svc.charging.charge_call(call_id=call_id, company_id=company.id,
                                                 duration_seconds=seconds, started_at=started)
            listing = svc.companies.list()
        emit(
            {"seeded": empty, "companies": [c.as_json() for c in listing]},
            as_json,
            lambda: _print_balances(listing, seeded=empty),
        )


def _print_balances(listing: list, *, seeded: bool) -> None:  # type: ignore[type-arg]
    click.echo("demo data loaded" if seeded else "database already has data; nothing loaded")
    click.echo(f"{'id':>4}  {'company':<28} {'balance':>14} {'reserved':>12} {'available':>14}")
    for c in listing:
        click.echo(f"{c.id:>4}  {c.name[:28]:<28} {money_text(c.balance):>14} {money_text(c.reserved):>12} "
                   f"{money_text(c.available):>14}")
