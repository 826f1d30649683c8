"""The ``billing`` command. Every command that shows data takes ``--json`` (money as minor units + currency)."""

from __future__ import annotations

import getpass
import importlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel

from billing_core.errors import BillingError
from billing_core.read_models.limits import DEFAULT_LIMIT, MAX_LIMIT

if TYPE_CHECKING:
    from billing_core.bootstrap import Services
    from billing_core.config import Settings
    from billing_core.money import Money
    from billing_core.read_models.base import MoneyView, Page

F = TypeVar("F", bound=Callable[..., Any])


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database entry (containers)
        return "cli"


@contextmanager
def services(settings: Settings | None = None) -> Iterator[Services]:
    """The services on ``settings``, by default the environment's completed by a running ``billing run``."""
    from billing_cli.local_system import local_settings
    from billing_core.bootstrap import build_services  # every service: only for commands that use them

    built = build_services(settings or local_settings())
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
    from billing_core.read_models.base import Page  # the read models: not loaded for `billing mcp`

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


def money_text(money: Money | MoneyView) -> str:
    from billing_core.read_models.base import MoneyView

    if isinstance(money, MoneyView):
        money = money.to_money()
    return f"{money.to_decimal():,f} {money.currency}"


limit_option = click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT, show_default=True, help="Entries per page."
)
cursor_option = click.option("--cursor", default=None, help="Continue after the previous page (its next_cursor).")


# Every command as (module:attribute, short help). The group imports a command's module only when that command
# runs, so `billing mcp` does not load the Stripe, PDF and server code of the other commands; `billing --help`
# lists the commands from here. tests/unit/test_cli_commands.py checks the table against the commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "adjust": (
        "billing_cli.money_commands:adjust",
        "Manual credit or debit of a company's balance (needs a reason; audited).",
    ),
    "agents": ("billing_cli.webhook_commands:agents", "Which company a Retell agent's calls bill."),
    "approvals": (
        "billing_cli.mcp_commands:approvals",
        "Four-eyes requests filed by MCP tools above the configured limits.",
    ),
    "audit": (
        "billing_cli.mcp_commands:audit",
        "The audit log, newest first: every MCP tool call and every change made through the CLI or services.",
    ),
    "auto-topup": ("billing_cli.stripe_commands:auto_topup", "Automatic top-ups."),
    "bonus-rules": ("billing_cli.money_commands:bonus_rules", "Bonus credit on large top-ups."),
    "calls": ("billing_cli.money_commands:calls", "Call charges."),
    "companies": (
        "billing_cli.companies:companies",
        "Manage companies, their rates, increments, thresholds and auto top-up settings.",
    ),
    "db": ("billing_cli.db:db", "Database schema."),
    "demo": (
        "billing_cli.db:demo",
        "Load demo companies, top-ups and calls when the database is empty; show balances.",
    ),
    "invoices": ("billing_cli.invoice_commands:invoices", "Invoices, credit notes and monthly usage statements."),
    "ledger": ("billing_cli.ledger:ledger", "Balances, ledger history and the ledger check."),
    "mcp": (
        "billing_cli.mcp_commands:mcp",
        "Serve the MCP server: over stdio for a local client (logs go to stderr), or over HTTP at /mcp.",
    ),
    "payment-methods": ("billing_cli.stripe_commands:payment_methods", "A company's saved cards and SEPA mandates."),
    "reconcile": (
        "billing_cli.stripe_commands:reconcile",
        "Settle top-ups, auto top-ups and refunds left pending by a crash, from Stripe's answer.",
    ),
    "run": (
        "billing_cli.run:run_command",
        "Everything for local use: migrate, demo data when empty, webhooks + worker, MCP over HTTP, and without "
        "STRIPE_SECRET the Stripe emulator and a mail sink.",
    ),
    "simulate": (
        "billing_cli.simulate:simulate",
        "Drive signed Retell calls and emulator top-ups against the running system (`billing run`).",
    ),
    "tokens": ("billing_cli.mcp_commands:tokens", "Bearer tokens for the MCP server over HTTP."),
    # stripe_commands adds its sub-commands (list, checkout, refund) to money_commands' group
    "topups": ("billing_cli.stripe_commands:topups", "Top-ups."),
    "webhooks": (
        "billing_cli.webhook_commands:webhooks",
        "Serve the webhook sidecar (with no sub-command), or operate its inbox.",
    ),
    "worker": (
        "billing_cli.webhook_commands:worker",
        "Run a standalone worker: inbox retries and follow-ups, and every scheduled job (invoice PDFs, mail, "
        "alerts, auto top-up sweep, expiry of stale call holds).",
    ),
}


class BillingGroup(click.Group):
    """Loads its commands lazily from COMMANDS (click's documented LazyGroup pattern). A bad argument is one
    line and exit 1, like every other refused input (no usage text, no traceback)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table's short help, without importing any command."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
    # A command speaks through its output and, on failure, one error line; without a handler Python would
    # also print library warnings (e.g. database retries) to stderr. The servers configure their own logs.
    logging.getLogger().addHandler(logging.NullHandler())


def load_command(name: str) -> click.Command:
    module_name, attribute = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - the table test guards this
        raise TypeError(f"{COMMANDS[name][0]} is not a click command")
    return command
