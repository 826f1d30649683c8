"""``billing companies add|list|show|set``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import click

from billing_cli.main import (
    ID,
    AsciiInt,
    cursor_option,
    default_actor,
    emit,
    emit_page,
    handles_errors,
    limit_option,
    money_text,
    parse_datetime,
    parse_decimal,
    script_json,
    services,
)
from billing_core.money import Money
from billing_core.read_models.companies import CompanyOverview

ADDRESS_OPTIONS = ("vat_id", "tax_number", "address_line1", "address_line2", "postal_code", "city", "country")


def address_options(fn: Any) -> Any:
    for name in reversed(ADDRESS_OPTIONS):
        fn = click.option(f"--{name.replace('_', '-')}", name, default=None)(fn)
    return fn


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
actor_option = click.option("--actor", default=default_actor, show_default="cli:<user>", help="Who makes the change.")


@click.group()
def companies() -> None:
    """Manage companies, their rates, increments, thresholds and auto top-up settings."""


@companies.command()
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--currency", default=None, help="ISO code; default BILLING_DEFAULT_CURRENCY.")
@click.option("--locale", default=None, help="e.g. de_DE or en_GB.")
@click.option("--rate", callback=parse_decimal, help="Per-minute rate in major units, e.g. 0.42.")
@click.option("--increment", type=AsciiInt(1, 3600), default=None, help="Billing increment in seconds (default 1).")
@click.option("--low-balance-threshold", default=None, help="Decimal amount, e.g. 20.00.")
@address_options
@actor_option
@json_option
@handles_errors
def add(
    name: str,
    email: str,
    currency: str | None,
    locale: str | None,
    rate: Decimal | None,
    increment: int | None,
    low_balance_threshold: str | None,
    actor: str,
    as_json: bool,
    **details: Any,
) -> None:
    """Create a company with its prepaid balance."""
    with services() as svc:
        threshold = None
        if low_balance_threshold is not None:
            threshold = Money.parse(low_balance_threshold, currency or svc.ctx.settings.default_currency)
        company = svc.companies.add(
            name=name,
            email=email,
            currency=currency,
            locale=locale,
            rate_per_minute=rate,
            billing_increment_seconds=increment,
            low_balance_threshold=threshold,
            actor=actor,
            **{k: v for k, v in details.items() if v is not None},
        )
        overview = svc.queries.company(company.id)
    emit(script_json(overview), as_json, lambda: _print_company(overview))


@companies.command(name="list")
@limit_option
@cursor_option
@json_option
@handles_errors
def list_companies(limit: int, cursor: str | None, as_json: bool) -> None:
    """Companies in id order with balance, reserved and available amounts."""
    with services() as svc:
        page = svc.queries.companies(limit=limit, cursor=cursor)
    listing = page.items

    def human() -> None:
        click.echo(f"{'id':>4}  {'company':<30} {'balance':>14} {'available':>14}  billing  auto top-up")
        for c in listing:
            click.echo(
                f"{c.id:>4}  {c.name[:30]:<30} {money_text(c.balance):>14} {money_text(c.available):>14}  "
                f"{'on ' if c.prepaid_billing_enabled else 'off'}      {'on' if c.auto_topup_enabled else 'off'}"
            )

    emit_page(page, as_json, human)


@companies.command()
@click.argument("company_id", type=ID)
@json_option
@handles_errors
def show(company_id: int, as_json: bool) -> None:
    """One company with its settings and rate history."""
    with services() as svc:
        company = svc.queries.company(company_id)
    emit(script_json(company), as_json, lambda: _print_company(company))


@companies.command(name="set")
@click.argument("company_id", type=ID)
@click.option("--name", default=None)
@click.option("--email", default=None)
@click.option("--locale", default=None)
@click.option("--rate", callback=parse_decimal, help="New per-minute rate; applies to calls starting from now.")
@click.option("--increment", type=AsciiInt(1, 3600), default=None, help="New billing increment in seconds.")
@click.option("--effective-from", callback=parse_datetime, help="When the new rate starts (ISO 8601, default now).")
@click.option("--low-balance-threshold", default=None)
@click.option("--auto-topup/--no-auto-topup", "auto_topup_enabled", default=None)
@click.option("--auto-topup-threshold", default=None)
@click.option("--auto-topup-amount", default=None)
@click.option("--auto-topup-daily-limit", type=AsciiInt(0, 100), default=None)
@click.option("--auto-topup-monthly-limit", default=None, help="Monthly cap as an amount; 'none' removes it.")
@click.option("--billing/--no-billing", "prepaid_billing_enabled", default=None, help="Prepaid billing on or off.")
@address_options
@actor_option
@json_option
@handles_errors
def set_(
    company_id: int,
    rate: Decimal | None,
    increment: int | None,
    effective_from: datetime | None,
    actor: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Change settings; only the options given are changed."""
    with services() as svc:
        currency = svc.queries.company(company_id).currency
        changes: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in ("low_balance_threshold", "auto_topup_threshold", "auto_topup_amount"):
                value = Money.parse(value, currency)
            elif key == "auto_topup_monthly_limit":
                value = None if value.lower() == "none" else Money.parse(value, currency)
            changes[key] = value
        if not changes and rate is None and increment is None:
            raise click.UsageError("nothing to change: give at least one option")
        company = svc.companies.set(
            company_id,
            actor=actor,
            rate_per_minute=rate,
            billing_increment_seconds=increment,
            rate_effective_from=effective_from,
            **changes,
        )
        overview = svc.queries.company(company.id)
    emit(script_json(overview), as_json, lambda: _print_company(overview))


def _print_company(c: CompanyOverview) -> None:
    click.echo(f"#{c.id} {c.name} <{c.email}>  ({c.currency}, {c.locale})")
    click.echo(f"  prepaid billing: {'on' if c.prepaid_billing_enabled else 'off'}")
    click.echo(
        f"  balance {money_text(c.balance)}, reserved {money_text(c.reserved)}, available {money_text(c.available)}"
    )
    click.echo(f"  low-balance threshold {money_text(c.low_balance_threshold)}")
    monthly = money_text(c.auto_topup_monthly_limit) if c.auto_topup_monthly_limit else "no cap"
    click.echo(
        f"  auto top-up {'on' if c.auto_topup_enabled else 'off'}: {money_text(c.auto_topup_amount)} below "
        f"{money_text(c.auto_topup_threshold)}, {c.auto_topup_daily_limit}/day, monthly {monthly}"
    )
    address = ", ".join(v for v in (c.address_line1, c.address_line2, c.postal_code, c.city, c.country) if v)
    if address:
        click.echo(f"  address: {address}")
    for r in c.rates:
        click.echo(
            f"  rate {r.rate_per_minute}/min, {r.billing_increment_seconds} s increment, "
            f"from {r.effective_from:%Y-%m-%d %H:%M:%S %Z}"
        )
