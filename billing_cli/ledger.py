"""``billing ledger check|balance|history|low-balance``: the read side and the invariant check."""

from __future__ import annotations

import sys
from functools import partial

import click

from billing_cli.main import (
    ID,
    cursor_option,
    emit,
    emit_page,
    handles_errors,
    limit_option,
    money_text,
    pages_up_to,
    script_json,
    services,
)
from billing_core.read_models.base import build
from billing_core.read_models.ledger import LedgerFilters

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
def ledger() -> None:
    """Balances, ledger history and the ledger check."""


@ledger.command()
@json_option
@handles_errors
def check(as_json: bool) -> None:
    """Prove balance == sum of ledger and an unbroken before/after chain; exit 1 naming failing companies."""
    with services() as svc:
        report = svc.balances.check_ledger()

    def human() -> None:
        for company in report.failing:
            click.echo(f"company {company.company_id}: FAILED", err=True)
            for problem in company.problems:
                click.echo(f"  {problem}", err=True)
        click.echo(f"{len(report.companies)} companies checked, {len(report.failing)} failing")

    emit(report.as_json(), as_json, human)
    if not report.ok:
        sys.exit(1)


@ledger.command()
@click.argument("company_id", type=ID)
@json_option
@handles_errors
def balance(company_id: int, as_json: bool) -> None:
    """Balance, reserved and available amounts of one company."""
    with services() as svc:
        view = svc.queries.balance(company_id)
    emit(
        script_json(view),
        as_json,
        lambda: click.echo(
            f"balance {money_text(view.balance)}, reserved {money_text(view.reserved)}, "
            f"available {money_text(view.available)}{' (low)' if view.is_low else ''}"
        ),
    )


@ledger.command()
@click.argument("company_id", type=ID)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@cursor_option
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["topup", "bonus", "charge", "refund", "adjustment", "reversal"]),
)
@json_option
@handles_errors
def history(company_id: int, limit: int, cursor: str | None, types: tuple[str, ...], as_json: bool) -> None:
    """Ledger entries, newest first."""
    filters = build(LedgerFilters, company_id=company_id, types=types or None)
    with services() as svc:
        page = pages_up_to(partial(svc.queries.ledger_entries, filters), limit, cursor)

    def human() -> None:
        for e in page.items:
            click.echo(
                f"{e.id:>8}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.type:<10} {money_text(e.amount):>14} "
                f"-> {money_text(e.balance_after):>14}  {e.description}"
            )
        if page.next_cursor:
            click.echo(f"more: --cursor {page.next_cursor}")

    emit(
        {"entries": script_json(page.items), "next_cursor": page.next_cursor, "has_more": page.has_more},
        as_json,
        human,
    )


@ledger.command(name="low-balance")
@limit_option
@cursor_option
@json_option
@handles_errors
def low_balance(limit: int, cursor: str | None, as_json: bool) -> None:
    """Companies whose balance is below their low-balance threshold, in id order."""
    with services() as svc:
        page = svc.queries.low_balance_companies(limit=limit, cursor=cursor)

    def human() -> None:
        for r in page.items:
            click.echo(
                f"{r.company_id:>4}  {r.name:<30} {money_text(r.balance):>14} < "
                f"{money_text(r.low_balance_threshold)}  auto top-up {'on' if r.auto_topup_enabled else 'off'}"
            )

    emit_page(page, as_json, human)
