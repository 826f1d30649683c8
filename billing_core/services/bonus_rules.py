"""Bonus rules: volume tiers of free credit on top-ups, global or for one company, optionally time-boxed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select, update

from billing_core.db.database import inserted_id
from billing_core.db.ledger import company_exists
from billing_core.db.tables import bonus_rules
from billing_core.errors import CompanyNotFound, InvalidInput, NotFound
from billing_core.money import Money, normalize_currency
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext


def rule_json(row: Any) -> dict[str, Any]:
    currency = row["currency"]

    def money(value: int | None) -> dict[str, Any] | None:
        return None if value is None else Money(value, currency).as_json()

    return {
        "id": row["id"],
        "name": row["name"],
        "company_id": row["company_id"],
        "currency": currency,
        "min_topup": money(row["min_topup_amount"]),
        "max_topup": money(row["max_topup_amount"]),
        "bonus_percent": str(row["bonus_percent"]),
        "bonus_fixed": money(row["bonus_fixed_amount"]),
        "max_bonus": money(row["max_bonus_amount"]),
        "active": row["active"],
        "valid_from": row["valid_from"].isoformat() if row["valid_from"] else None,
        "valid_until": row["valid_until"].isoformat() if row["valid_until"] else None,
    }


class BonusRuleService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def add(
        self,
        *,
        name: str,
        min_topup: Money,
        actor: str,
        bonus_percent: Decimal = Decimal(0),
        bonus_fixed: Money | None = None,
        max_topup: Money | None = None,
        max_bonus: Money | None = None,
        company_id: int | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> dict[str, Any]:
        name = validation.text(name, "name", max_length=200)
        actor = validation.text(actor, "actor", max_length=200)
        currency = normalize_currency(min_topup.currency)
        for amount in (bonus_fixed, max_topup, max_bonus):
            if amount is not None and amount.currency != currency:
                raise InvalidInput("all amounts of a bonus rule must share one currency")
        if min_topup.cents < 0 or not (Decimal(0) <= bonus_percent <= Decimal(100)):
            raise InvalidInput("minimum top-up must be >= 0 and the bonus percentage between 0 and 100")
        if bonus_percent == 0 and (bonus_fixed is None or bonus_fixed.cents <= 0):
            raise InvalidInput("a bonus rule needs a percentage or a fixed bonus")
        if max_topup is not None and max_topup < min_topup:
            raise InvalidInput("the maximum top-up is below the minimum")
        if valid_from and valid_until and valid_until <= valid_from:
            raise InvalidInput("valid_until must be after valid_from")

        def work(conn: Connection) -> dict[str, Any]:
            if company_id is not None and not company_exists(conn, company_id):
                raise CompanyNotFound(company_id)
            now = self._ctx.clock()
            rule_id = inserted_id(
                conn.execute(
                    insert(bonus_rules).values(
                        name=name,
                        company_id=company_id,
                        currency=currency,
                        min_topup_amount=min_topup.cents,
                        max_topup_amount=max_topup.cents if max_topup else None,
                        bonus_percent=bonus_percent,
                        bonus_fixed_amount=bonus_fixed.cents if bonus_fixed else 0,
                        max_bonus_amount=max_bonus.cents if max_bonus else None,
                        valid_from=valid_from,
                        valid_until=valid_until,
                        active=True,
                        created_at=now,
                    )
                )
            )
            row = conn.execute(select(bonus_rules).where(bonus_rules.c.id == rule_id)).mappings().one()
            audit.record(
                conn,
                actor=actor,
                action="bonus_rule.created",
                entity_type="bonus_rule",
                entity_id=rule_id,
                company_id=company_id,
                details=rule_json(row),
                now=now,
            )
            return rule_json(row)

        return self._ctx.db.write(work)

    def list(self) -> list[dict[str, Any]]:
        return self._ctx.db.read(
            lambda conn: [rule_json(r) for r in conn.execute(select(bonus_rules).order_by(bonus_rules.c.id)).mappings()]
        )

    def deactivate(self, rule_id: int, *, actor: str) -> None:
        actor = validation.text(actor, "actor", max_length=200)

        def work(conn: Connection) -> None:
            if conn.execute(update(bonus_rules).where(bonus_rules.c.id == rule_id).values(active=False)).rowcount == 0:
                raise NotFound(f"bonus rule {rule_id} does not exist")
            audit.record(
                conn,
                actor=actor,
                action="bonus_rule.deactivated",
                entity_type="bonus_rule",
                entity_id=rule_id,
                company_id=None,
                details={},
                now=self._ctx.clock(),
            )

        self._ctx.db.write(work)
