"""The ``billing`` command. Every command that shows data takes ``--json`` (money as minor units + currency)."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from billing_core.errors import BillingError
from billing_core.money import Money
from billing_core.queries import MAX_LIMIT, MoneyView, Page
from billing_core.queries.base import DEFAULT_LIMIT

F = TypeVar("F", bound=Callable[..., Any])


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database entry (containers)
        return "cli"


@contextmanager
def services(settings: Settings | None = None) -> Iterator[Services]:
    built = build_services(settings or Settings())
    try:
        yield built
    finally:
        built.close()


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def script_json(model: BaseModel | Sequence[BaseModel]) -> Any:
    """A read model as ``--json`` prints it: pydantic's JSON mode, with money kept to the documented
    ``{"cents": ..., "currency": ...}`` (the locale text is for people and tools, not for scripts)."""
    if isinstance(model, BaseModel):
        return _plain_money(model.model_dump(mode="json"))
    return [_plain_money(item.model_dump(mode="json")) for item in model]


def _plain_money(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"cents", "currency", "formatted"}:
            return {"cents": value["cents"], "currency": value["currency"]}
        return {key: _plain_money(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_money(item) for item in value]
    return value


def emit_page(page: Page[Any], as_json: bool, human: Callable[[], None]) -> None:
    """A page of a list: the items as a JSON array (the commands' contract); where more exist, the cursor
    for the next page goes to stderr, so nothing is cut off silently."""
    emit(script_json(page.items), as_json, human)
    if page.next_cursor:
        click.echo(f"more results: repeat with --cursor {page.next_cursor}", err=True)


def pages_up_to(fetch: Callable[..., Page[Any]], limit: int, cursor: str | None) -> Page[Any]:
    """Up to ``limit`` entries, read a page of at most MAX_LIMIT at a time (commands whose ``--limit``
    allowed more than one page before the read side existed keep their range)."""
    items: list[Any] = []
    while True:
        page = fetch(limit=min(MAX_LIMIT, limit - len(items)), cursor=cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None or len(items) >= limit:
            return Page[Any](items=tuple(items), has_more=page.has_more, next_cursor=cursor)


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


def money_text(money: Money | MoneyView) -> str:
    if isinstance(money, MoneyView):
        money = money.to_money()
    return f"{money.to_decimal():,f} {money.currency}"


limit_option = click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT, show_default=True, help="Entries per page."
)
cursor_option = click.option("--cursor", default=None, help="Continue after the previous page (its next_cursor).")


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
