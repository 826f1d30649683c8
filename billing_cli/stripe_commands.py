"""Stripe operator commands: checkout links, top-up refunds, saved payment methods, auto top-up, reconcile."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime, timedelta
from functools import partial

import click

from billing_cli.main import (
    ID,
    cursor_option,
    default_actor,
    emit,
    emit_page,
    handles_errors,
    money_text,
    pages_up_to,
    parse_datetime,
    services,
)
from billing_cli.money_commands import topups
from billing_core.money import Money
from billing_core.read_models.base import build
from billing_core.read_models.payments import TopupFilters

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
actor_option = click.option("--actor", default=default_actor, show_default="cli:<user>")


@click.command(name="list")
@click.option("--company", "company_id", type=ID, default=None)
@click.option("--status", default=None, help="pending, processing, succeeded, failed, canceled, ...")
@click.option(
    "--method",
    default=None,
    type=click.Choice(["checkout", "payment_intent", "auto_topup", "bank_transfer", "manual"]),
    help="How it was paid.",
)
@click.option("--since", callback=parse_datetime, help="Created at or after (ISO 8601 with time zone).")
@click.option("--until", callback=parse_datetime, help="Created before (ISO 8601 with time zone).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@cursor_option
@json_option
@handles_errors
def list_topups(
    company_id: int | None,
    status: str | None,
    method: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Top-ups, newest first (--status failed finds failed payments)."""
    filters = build(
        TopupFilters,
        company_id=company_id,
        statuses=(status,) if status else None,
        methods=(method,) if method else None,
        since=since,
        until=until,
    )
    with services() as svc:
        page = pages_up_to(partial(svc.queries.topups, filters), limit, cursor)

    def human() -> None:
        for t in page.items:
            click.echo(
                f"{t.id:>6}  {t.created_at:%Y-%m-%d %H:%M}  company {t.company_id:<5} {money_text(t.amount):>14} "
                f"{t.status:<18} {t.source:<14} {t.failure_reason or ''}"
            )

    emit_page(page, as_json, human)


@click.command()
@click.option("--company", "company_id", type=ID, required=True)
@click.option("--amount", required=True, help="Decimal amount, e.g. 50.00.")
@click.option("--save-payment-method", is_flag=True, help="Keep the method for later auto top-ups.")
@click.option("--idempotency-key", default=None, help="Repeat safely: the same key gives the same session.")
@actor_option
@json_option
@handles_errors
def checkout(
    company_id: int, amount: str, save_payment_method: bool, idempotency_key: str | None, actor: str, as_json: bool
) -> None:
    """Create a Stripe Checkout Session for a top-up (the "Add Funds" link)."""
    with services() as svc:
        currency = svc.companies.show(company_id).currency
        started = svc.stripe.payments.start_checkout(
            company_id=company_id,
            amount=Money.parse(amount, currency),
            initiated_by=actor,
            idempotency_key=idempotency_key or f"checkout:{uuid.uuid4().hex}",
            save_payment_method=save_payment_method,
        )
    emit(started.as_json(), as_json, lambda: click.echo(started.url))


@click.command(name="refund")
@click.argument("topup_id", type=ID)
@click.option("--amount", default=None, help="Decimal amount; default: everything not yet refunded.")
@click.option("--reason", required=True)
@click.option("--idempotency-key", default=None)
@actor_option
@json_option
@handles_errors
def refund_topup(
    topup_id: int, amount: str | None, reason: str, idempotency_key: str | None, actor: str, as_json: bool
) -> None:
    """Refund a top-up to the customer through Stripe (the bonus is taken back in proportion)."""
    with services() as svc:
        topup = svc.topups.get(topup_id)
        money = None if amount is None else Money.parse(amount, topup.amount.currency)
        result = svc.stripe.topup_refunds.refund(
            topup_id=topup_id,
            amount=money,
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
        )
    emit(
        result.as_json(),
        as_json,
        lambda: click.echo(
            f"refund {result.id}: {money_text(result.amount)} ({result.status})"
            f"{f', bonus taken back {money_text(result.bonus_reversed)}' if result.bonus_reversed.cents else ''}"
            f"{f': {result.failure_reason}' if result.failure_reason else ''}"
        ),
    )


@click.group(name="payment-methods")
def payment_methods() -> None:
    """A company's saved cards and SEPA mandates."""


@payment_methods.command(name="list")
@click.argument("company_id", type=ID)
@json_option
@handles_errors
def list_methods(company_id: int, as_json: bool) -> None:
    with services() as svc:
        methods = svc.stripe.payments.list_payment_methods(company_id)

    def human() -> None:
        for m in methods:
            pm = m.method
            click.echo(
                f"{pm.id}  {pm.type:<10} {pm.brand or '':<10} ****{pm.last4 or '????'}"
                f"{'  (auto top-up)' if m.used_for_auto_topup else ''}"
            )

    emit([m.as_json() for m in methods], as_json, human)


@payment_methods.command(name="use")
@click.argument("company_id", type=ID)
@click.argument("payment_method_id")
@actor_option
@handles_errors
def use_method(company_id: int, payment_method_id: str, actor: str) -> None:
    """Use this saved method for auto top-up."""
    with services() as svc:
        method = svc.stripe.payments.use_for_auto_topup(company_id, payment_method_id, actor=actor)
    click.echo(f"auto top-up now charges {method.type} ****{method.last4}")


@payment_methods.command(name="detach")
@click.argument("company_id", type=ID)
@click.argument("payment_method_id")
@actor_option
@handles_errors
def detach_method(company_id: int, payment_method_id: str, actor: str) -> None:
    """Remove a saved method at Stripe (auto top-up stops if it used it)."""
    with services() as svc:
        lost = svc.stripe.payments.detach_payment_method(company_id, payment_method_id, actor=actor)
    click.echo("detached" + ("; auto top-up is now off until a new method is chosen" if lost else ""))


@click.group(name="auto-topup")
def auto_topup() -> None:
    """Automatic top-ups."""


@auto_topup.command(name="run")
@click.argument("company_id", type=ID)
@json_option
@handles_errors
def run_auto_topup(company_id: int, as_json: bool) -> None:
    """Check the rules now and top up if they allow it (says why not otherwise)."""
    with services() as svc:
        outcome = svc.stripe.auto_topup.trigger(company_id)
    emit(
        outcome.as_json(),
        as_json,
        lambda: click.echo(f"{'triggered' if outcome.triggered else 'not triggered'}: {outcome.reason}"),
    )


@click.command()
@click.option(
    "--min-age",
    type=click.IntRange(0),
    default=120,
    show_default=True,
    help="Leave rows younger than this many seconds to their live flow.",
)
@json_option
@handles_errors
def reconcile(min_age: int, as_json: bool) -> None:
    """Settle top-ups, auto top-ups and refunds left pending by a crash, from Stripe's answer."""
    with services() as svc:
        report = svc.stripe.reconcile.run(min_age=timedelta(seconds=min_age))

    def human() -> None:
        for change in report.changes:
            click.echo(change)
        for error in report.errors:
            click.echo(f"error: {error}", err=True)
        click.echo(f"{len(report.changes)} changed, {report.unchanged} unchanged, {len(report.errors)} errors")

    emit(report.as_json(), as_json, human)
    if report.errors:
        sys.exit(1)


# `billing topups` is money_commands' group with the Stripe sub-commands added here (see billing_cli.main.COMMANDS)
topups.add_command(list_topups)
topups.add_command(checkout)
topups.add_command(refund_topup)
