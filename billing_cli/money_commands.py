"""Operator money movements: ``billing adjust``, ``billing calls refund|release``, ``billing topups record``,
bonus rules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import click

from billing_cli.main import (
    ID,
    default_actor,
    emit,
    handles_errors,
    money_text,
    parse_datetime,
    parse_decimal,
    services,
)
from billing_core.money import Money

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
actor_option = click.option("--actor", default=default_actor, show_default="cli:<user>")
key_option = click.option("--idempotency-key", default=None, help="Repeat a command safely with the same key.")


@click.command()
@click.argument("company_id", type=ID)
@click.option("--amount", required=True, help="Signed decimal: 50.00 credits, -10.00 debits.")
@click.option("--reason", required=True)
@actor_option
@key_option
@json_option
@handles_errors
def adjust(company_id: int, amount: str, reason: str, actor: str, idempotency_key: str | None, as_json: bool) -> None:
    """Manual credit or debit of a company's balance (needs a reason; audited)."""
    with services() as svc:
        currency = svc.companies.show(company_id).currency
        result = svc.adjustments.adjust(
            company_id=company_id,
            amount=Money.parse(amount, currency),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
        )
    emit(
        result.as_json(),
        as_json,
        lambda: click.echo(
            f"{'already applied: ' if result.replayed else ''}adjusted by {money_text(result.entry.amount)}, "
            f"balance now {money_text(result.entry.balance_after)}"
        ),
    )


@click.group()
def calls() -> None:
    """Call charges."""


@calls.command()
@click.argument("call_id")
@click.option("--amount", default=None, help="Decimal amount; default: everything still refundable.")
@click.option("--reason", required=True)
@actor_option
@key_option
@json_option
@handles_errors
def refund(
    call_id: str, amount: str | None, reason: str, actor: str, idempotency_key: str | None, as_json: bool
) -> None:
    """Refund a call charge (fully or partly) back to the prepaid balance."""
    with services() as svc:
        money = None
        if amount is not None:
            money = Money.parse(amount, svc.charging.get_charge(call_id).amount.currency)
        result = svc.refunds.refund_call(
            call_id=call_id, amount=money, reason=reason, actor=actor, idempotency_key=idempotency_key
        )
    emit(
        result.as_json(),
        as_json,
        lambda: click.echo(
            f"refunded {money_text(result.amount)} of {money_text(result.charged)} ({result.refund_status}), "
            f"balance now {money_text(result.balance_after)}"
        ),
    )


@calls.command()
@click.argument("call_id")
@click.option("--reason", default="released by an operator", show_default=True)
@actor_option
@json_option
@handles_errors
def release(call_id: str, reason: str, actor: str, as_json: bool) -> None:
    """Give back what a call still holds (its call_ended never came); audited; a second time changes nothing."""
    with services() as svc:
        result = svc.charging.release_hold(call_id=call_id, actor=actor, reason=reason)
    emit(
        result.as_json(),
        as_json,
        lambda: click.echo(
            f"released {money_text(result.amount)} held for call {call_id} (company {result.company_id})"
            if result.released_now
            else f"call {call_id} holds nothing any more ({result.status}); nothing changed"
        ),
    )


@click.group()
def topups() -> None:
    """Top-ups."""


@topups.command()
@click.option("--company", "company_id", type=ID, required=True)
@click.option("--amount", required=True, help="Decimal amount received, e.g. 100.00.")
@click.option("--reference", required=True, help="Bank transfer reference.")
@actor_option
@json_option
@handles_errors
def record(company_id: int, amount: str, reference: str, actor: str, as_json: bool) -> None:
    """Record a payment received outside Stripe (bank transfer) as a succeeded, credited top-up."""
    with services() as svc:
        currency = svc.companies.show(company_id).currency
        result = svc.topups.record_payment(
            company_id=company_id, amount=Money.parse(amount, currency), reference=reference, actor=actor
        )
    emit(
        result.as_json(),
        as_json,
        lambda: click.echo(
            f"top-up {result.topup.id}: {money_text(result.topup.amount)} credited"
            f"{' (already recorded)' if not result.credited_now else ''}"
            f"{f', bonus {money_text(result.topup.bonus)}' if result.topup.bonus.cents else ''}, "
            f"balance now {money_text(result.balance_after)}"
        ),
    )


@click.group(name="bonus-rules")
def bonus_rules() -> None:
    """Bonus credit on large top-ups."""


@bonus_rules.command(name="add")
@click.option("--name", required=True)
@click.option("--min-topup", required=True, help="Decimal amount from which the rule applies.")
@click.option("--max-topup", default=None)
@click.option("--percent", callback=parse_decimal, default="0", help="Bonus percentage, e.g. 10.")
@click.option("--fixed", default=None, help="Fixed bonus amount.")
@click.option("--max-bonus", default=None)
@click.option("--currency", default=None)
@click.option("--company", "company_id", type=ID, default=None, help="Only for this company (default: all).")
@click.option("--valid-from", callback=parse_datetime)
@click.option("--valid-until", callback=parse_datetime)
@actor_option
@json_option
@handles_errors
def add_rule(
    name: str,
    min_topup: str,
    max_topup: str | None,
    percent: Decimal,
    fixed: str | None,
    max_bonus: str | None,
    currency: str | None,
    company_id: int | None,
    valid_from: datetime | None,
    valid_until: datetime | None,
    actor: str,
    as_json: bool,
) -> None:
    """Add a bonus rule."""
    with services() as svc:
        cur = currency or svc.ctx.settings.default_currency

        def money(value: str | None) -> Money | None:
            return None if value is None else Money.parse(value, cur)

        rule = svc.bonus_rules.add(
            name=name,
            min_topup=Money.parse(min_topup, cur),
            max_topup=money(max_topup),
            bonus_percent=percent,
            bonus_fixed=money(fixed),
            max_bonus=money(max_bonus),
            company_id=company_id,
            valid_from=valid_from,
            valid_until=valid_until,
            actor=actor,
        )
    emit(rule, as_json, lambda: click.echo(f"bonus rule {rule['id']} added"))


@bonus_rules.command(name="list")
@json_option
@handles_errors
def list_rules(as_json: bool) -> None:
    """All bonus rules."""
    with services() as svc:
        rules = svc.bonus_rules.list()

    def human() -> None:
        for r in rules:
            click.echo(
                f"{r['id']:>4}  {r['name']:<30} from {r['min_topup']['cents']} {r['currency']} "
                f"+{r['bonus_percent']}% {'active' if r['active'] else 'inactive'}"
            )

    emit(rules, as_json, human)
