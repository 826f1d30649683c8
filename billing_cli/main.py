"""The ``billing`` command. Every command that shows data takes ``--json`` (money as minor units + currency)."""

from __future__ import annotations

import getpass
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError

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
    """Billing errors become one clear line on stderr and exit code 1; nothing else is printed."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BillingError as error:
            click.echo(f"error ({error.code}): {error.message}", err=True)
        except OSError as error:  # a file the command was asked to write
            click.echo(f"error (file): {error.strerror or error}: {error.filename or ''}".rstrip(": "), err=True)
        except DBAPIError as error:
            if _missing_schema(error):
                click.echo(
                    "error (database_not_migrated): the database has no billing schema yet; run `billing db upgrade`",
                    err=True,
                )
            else:
                click.echo(
                    f"error (database): {type(error.orig).__name__}; check DATABASE_URL and the server", err=True
                )
        sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _missing_schema(error: DBAPIError) -> bool:
    args: tuple[Any, ...] = tuple(getattr(error.orig, "args", ()))
    return "no such table" in str(error.orig) or (len(args) > 0 and args[0] == 1146)


_ASCII_DECIMAL = re.compile(r"[+-]?[0-9]{1,30}(?:\.[0-9]{1,30})?", re.ASCII)
_ASCII_INTEGER = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)


def _quoted(value: str) -> str:
    return "'" + value[:40].encode("ascii", "backslashreplace").decode("ascii") + "'"


def parse_decimal(_ctx: Any, _param: Any, value: str | None) -> Decimal | None:
    """A plain decimal in ASCII digits: no exponent (1e20), no NaN, no other scripts' digits (١٠)."""
    if value is None:
        return None
    if not _ASCII_DECIMAL.fullmatch(value.strip()):
        raise click.BadParameter(f"{_quoted(value)} is not a decimal number like 0.42")
    try:
        return Decimal(value.strip())
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        raise click.BadParameter(f"{_quoted(value)} is not a decimal number") from None


class AsciiInt(click.ParamType):  # type: ignore[type-arg]  # generic only since click 8.3
    """An integer in ASCII digits within [minimum, maximum]; click's ``int`` also takes "١٠" and any size."""

    name = "integer"

    def __init__(self, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and _ASCII_INTEGER.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            self.fail(f"{_quoted(str(value))} is not a whole number in ASCII digits", param, ctx)
        if not self.minimum <= number <= self.maximum:
            self.fail(f"{number} is not between {self.minimum} and {self.maximum}", param, ctx)
        return number


ID = AsciiInt(1, 2**63 - 1)  # database ids are signed 64-bit integers


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


class BillingGroup(click.Group):
    """A bad argument is one line and exit 1, like every other refused input (no usage text, no traceback)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.BadParameter as error:
            click.echo(f"error (invalid_input): {error.format_message()}", err=True)
            sys.exit(1)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@click.group(cls=BillingGroup)
def cli() -> None:
    """Prepaid billing for AI phone assistants."""


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
