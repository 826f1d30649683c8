"""``billing db upgrade`` and ``billing demo``."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.engine import make_url

from billing_cli.demo import demo_settings, load_demo_data
from billing_cli.main import default_actor, emit, handles_errors, money_text, services
from billing_core.config import Settings
from billing_core.services.companies import CompanyView


@click.group()
def db() -> None:
    """Database schema."""


@db.command()
@handles_errors
def upgrade() -> None:
    """Apply all migrations (creates the SQLite file and its folder when needed)."""
    from billing_core.db import migrate  # alembic is slow to import; only this command needs it

    url = Settings().database_url
    ensure_sqlite_folder(url)
    migrate.upgrade(url)
    click.echo("database is at the latest schema")


def ensure_sqlite_folder(url: str) -> None:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handles_errors
def demo(as_json: bool) -> None:
    """Load demo companies, top-ups and calls when the database is empty; show balances."""
    with services(demo_settings(Settings())) as svc:
        seeded = load_demo_data(svc, actor=default_actor())
        listing = svc.companies.list()
    emit(
        {"seeded": seeded, "companies": [c.as_json() for c in listing]},
        as_json,
        lambda: _print_balances(listing, seeded=seeded),
    )


def _print_balances(listing: list[CompanyView], *, seeded: bool) -> None:
    click.echo("demo data loaded" if seeded else "database already has data; nothing loaded")
    click.echo(f"{'id':>4}  {'company':<28} {'balance':>14} {'reserved':>12} {'available':>14}")
    for c in listing:
        click.echo(
            f"{c.id:>4}  {c.name[:28]:<28} {money_text(c.balance):>14} {money_text(c.reserved):>12} "
            f"{money_text(c.available):>14}"
        )
