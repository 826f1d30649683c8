"""The ``billing`` command. Every command that shows data takes ``--json`` (money as minor units + currency)."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any, TypeVar

import click

from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from billing_core.errors import BillingError
from billing_core.money import Money

F = TypeVar("F", bound=Callable[..., Any])


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database entry (containers)
        return "cli"


@contextmanager
def services() -> Iterator[Services]:
    built = build_services(Settings())
    try:
        yield built
    finally:
        built.close()


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def handles_errors(fn: F) -> F:
    """Billing errors become one clear line on stderr and exit code 1; nothing else is printed.

    Database trouble arrives typed as well (``database_unavailable``, ``database_rejected``,
    ``database_not_migrated``: see :mod:`billing_core.db.errors`)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BillingError as error:
            click.echo(f"error ({error.code}): {error.message}", err=True)
        except OSError as error:  # a file the command was asked to write
            click.echo(f"error (file): {error.strerror or error}: {error.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)

    return wrapper  # type: ignore[return-value]


def parse_decimal(_ctx: Any, _param: Any, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a decimal number") from None
    if not result.is_finite():
        raise click.BadParameter(f"{value!r} is not a decimal number")
    return result


def parse_datetime(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a timezone, e.g. 2026-12-01T00:00:00+00:00")
    return parsed


def money_text(money: Money) -> str:
    return f"{money.to_decimal():,f} {money.currency}"


@click.group()
def cli() -> None:
    """Prepaid billing for AI phone assistants."""
    # A command speaks through its output and, on failure, one error line; without a handler Python would
    # also print library warnings (e.g. database retries) to stderr. The servers configure their own logs.
    logging.getLogger().addHandler(logging.NullHandler())


def register() -> None:
    from billing_cli import (
        companies,
        db,
        invoice_commands,
        ledger,
        money_commands,
        stripe_commands,
        webhook_commands,
    )

    for group in (db.db, companies.companies, ledger.ledger, invoice_commands.invoices):
        cli.add_command(group)
    money_commands.register(cli)
    stripe_commands.register(cli, money_commands.topups)
    webhook_commands.register(cli)
    db.register(cli)


register()
