"""Companies, their balance settings and their rates (the reference's tinker and admin-panel tasks)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select, update

from billing_core.db.database import inserted_id
from billing_core.db.tables import balances, billing_rates, companies, retell_agents
from billing_core.errors import CompanyNotFound, InvalidInput
from billing_core.money import Money, normalize_currency
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext

# A company's first rate covers every call it will ever have, so changing DEFAULT_BILLING_RATE later
# never re-prices a company that exists.
BEGINNING_OF_TIME = datetime(1970, 1, 1, tzinfo=UTC)

COMPANY_FIELDS = (
    "name",
    "email",
    "locale",
    "vat_id",
    "tax_number",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "country",
    "prepaid_billing_enabled",
)
BALANCE_MONEY_FIELDS = (
    "low_balance_threshold",
    "auto_topup_threshold",
    "auto_topup_amount",
    "auto_topup_monthly_limit",
)
BALANCE_FIELDS = (*BALANCE_MONEY_FIELDS, "auto_topup_enabled", "auto_topup_daily_limit")


@dataclass(frozen=True, slots=True)
class RateView:
    rate_per_minute: Decimal
    billing_increment_seconds: int
    effective_from: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "rate_per_minute": str(self.rate_per_minute),
            "billing_increment_seconds": self.billing_increment_seconds,
            "effective_from": self.effective_from.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class CompanyView:
    id: int
    name: str
    email: str
    currency: str
    locale: str
    prepaid_billing_enabled: bool
    balance: Money
    reserved: Money
    low_balance_threshold: Money
    auto_topup_enabled: bool
    auto_topup_threshold: Money
    auto_topup_amount: Money
    auto_topup_daily_limit: int
    auto_topup_monthly_limit: Money | None
    stripe_customer_id: str | None
    stripe_payment_method_id: str | None
    auto_topup_disabled_reason: str | None = None
    details: dict[str, str | None] = field(default_factory=dict)
    rates: tuple[RateView, ...] = ()

    @property
    def available(self) -> Money:
        return self.balance - self.reserved

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "currency": self.currency,
            "locale": self.locale,
            "prepaid_billing_enabled": self.prepaid_billing_enabled,
            "balance": self.balance.as_json(),
            "reserved": self.reserved.as_json(),
            "available": self.available.as_json(),
            "low_balance_threshold": self.low_balance_threshold.as_json(),
            "auto_topup_enabled": self.auto_topup_enabled,
            "auto_topup_threshold": self.auto_topup_threshold.as_json(),
            "auto_topup_amount": self.auto_topup_amount.as_json(),
            "auto_topup_daily_limit": self.auto_topup_daily_limit,
            "auto_topup_monthly_limit": (
                self.auto_topup_monthly_limit.as_json() if self.auto_topup_monthly_limit else None
            ),
            "stripe_customer_id": self.stripe_customer_id,
            "stripe_payment_method_id": self.stripe_payment_method_id,
            "auto_topup_disabled_reason": self.auto_topup_disabled_reason,
            **self.details,
            "rates": [r.as_json() for r in self.rates],
        }


class CompanyService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def add(
        self,
        *,
        name: str,
        email: str,
        actor: str,
        currency: str | None = None,
        locale: str | None = None,
        rate_per_minute: Decimal | None = None,
        billing_increment_seconds: int | None = None,
        low_balance_threshold: Money | None = None,
        **details: Any,
    ) -> CompanyView:
        settings = self._ctx.settings
        name = validation.text(name, "name", max_length=200)
        email = _email(email)
        actor = validation.text(actor, "actor", max_length=200)
        currency = normalize_currency(currency or settings.default_currency)
        locale = validation.locale(locale or settings.default_locale)
        rate = validation.rate(
            rate_per_minute if rate_per_minute is not None else settings.default_billing_rate,
            settings.max_rate_per_minute,
        )
        increment = _increment(
            settings.default_billing_increment_seconds
            if billing_increment_seconds is None
            else billing_increment_seconds
        )
        unknown = set(details) - set(COMPANY_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown company fields: {', '.join(sorted(unknown))}")
        threshold = low_balance_threshold or settings.money(settings.default_low_balance_threshold, currency)
        _same_currency(threshold, currency)
        if threshold.cents < 0:
            raise InvalidInput("low_balance_threshold cannot be negative")
        validation.within(threshold, settings.money(settings.max_operation_amount, currency), "low_balance_threshold")
        details = _clean(details)

        def work(conn: Connection) -> CompanyView:
            now = self._ctx.clock()
            company_id = inserted_id(
                conn.execute(
                    insert(companies).values(
                        name=name,
                        email=email,
                        currency=currency,
                        locale=locale,
                        created_at=now,
                        updated_at=now,
                        **details,
                    )
                )
            )
            conn.execute(
                insert(balances).values(
                    company_id=company_id,
                    currency=currency,
                    balance=0,
                    reserved_balance=0,
                    low_balance_threshold=threshold.cents,
                    auto_topup_threshold=settings.money(settings.default_auto_topup_threshold, currency).cents,
                    auto_topup_amount=settings.money(settings.default_auto_topup_amount, currency).cents,
                    auto_topup_daily_limit=settings.auto_topup_daily_limit,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(billing_rates).values(
                    company_id=company_id,
                    rate_per_minute=rate,
                    billing_increment_seconds=increment,
                    effective_from=BEGINNING_OF_TIME,
                    created_by=actor,
                    created_at=now,
                )
            )
            audit.record(
                conn,
                actor=actor,
                action="company.created",
                entity_type="company",
                entity_id=company_id,
                company_id=company_id,
                now=now,
                details={"name": name, "currency": currency, "rate_per_minute": str(rate), "increment": increment},
            )
            return _load(conn, company_id)

        return self._ctx.db.write(work)

    def show(self, company_id: int) -> CompanyView:
        return self._ctx.db.read(lambda conn: _load(conn, validation.company_id(company_id)))

    def list(self) -> list[CompanyView]:
        def work(conn: Connection) -> list[CompanyView]:
            ids = conn.execute(select(companies.c.id).order_by(companies.c.id)).scalars().all()
            return [_load(conn, company_id, with_rates=False) for company_id in ids]

        return self._ctx.db.read(work)

    def set(
        self,
        company_id: int,
        *,
        actor: str,
        rate_per_minute: Decimal | None = None,
        billing_increment_seconds: int | None = None,
        rate_effective_from: datetime | None = None,
        **changes: Any,
    ) -> CompanyView:
        """Change settings. A new rate or increment applies to calls starting from ``rate_effective_from`` (now)."""
        company_id = validation.company_id(company_id)
        actor = validation.text(actor, "actor", max_length=200)
        unknown = set(changes) - set(COMPANY_FIELDS) - set(BALANCE_FIELDS) - {"stripe_payment_method_id"}
        if unknown:
            raise InvalidInput(f"unknown settings: {', '.join(sorted(unknown))}")
        if "email" in changes:
            changes["email"] = _email(changes["email"])
        if "name" in changes:
            changes["name"] = validation.text(changes["name"], "name", max_length=200)
        if "locale" in changes:
            changes["locale"] = validation.locale(changes["locale"])
        settings = self._ctx.settings
        if rate_per_minute is not None:
            rate_per_minute = validation.rate(rate_per_minute, settings.max_rate_per_minute)
        if billing_increment_seconds is not None:
            billing_increment_seconds = _increment(billing_increment_seconds)
        if "auto_topup_daily_limit" in changes:
            daily = changes["auto_topup_daily_limit"]
            if isinstance(daily, bool) or not isinstance(daily, int) or not 0 <= daily <= 100:
                raise InvalidInput("auto_topup_daily_limit must be a whole number from 0 to 100")
        if changes.get("auto_topup_amount") is not None and changes["auto_topup_amount"].cents == 0:
            raise InvalidInput("auto_topup_amount must be more than zero")
        company_changes = _clean({k: v for k, v in changes.items() if k in COMPANY_FIELDS})

        def work(conn: Connection) -> CompanyView:
            before = _load(conn, company_id)
            now = self._ctx.clock()
            company_values = company_changes
            balance_values: dict[str, Any] = {}
            for key, value in changes.items():
                if key in BALANCE_MONEY_FIELDS:
                    if value is not None:
                        _same_currency(value, before.currency)
                        if value.cents < 0:
                            raise InvalidInput(f"{key} cannot be negative")
                        validation.within(value, settings.money(settings.max_operation_amount, value.currency), key)
                    balance_values[key] = None if value is None else value.cents
                elif key in BALANCE_FIELDS or key == "stripe_payment_method_id":
                    balance_values[key] = value
            if company_values:
                conn.execute(
                    update(companies)
                    .where(companies.c.id == company_id)
                    .values(updated_at=now, **company_values)
                )
            if balance_values:
                conn.execute(
                    update(balances).where(balances.c.company_id == company_id).values(updated_at=now, **balance_values)
                )
            if rate_per_minute is not None or billing_increment_seconds is not None:
                starts = validation.aware(rate_effective_from, "effective from") if rate_effective_from else now
                if any(r.effective_from == starts for r in before.rates):
                    raise InvalidInput(f"a rate already starts at {starts.isoformat()}; choose another instant")
                # the other half of the pair is the one in force at that instant, not a later scheduled one
                current = [r for r in before.rates if r.effective_from <= starts][-1]
                conn.execute(
                    insert(billing_rates).values(
                        company_id=company_id,
                        rate_per_minute=rate_per_minute if rate_per_minute is not None else current.rate_per_minute,
                        billing_increment_seconds=billing_increment_seconds or current.billing_increment_seconds,
                        effective_from=starts,
                        created_by=actor,
                        created_at=now,
                    )
                )
            after = _load(conn, company_id)
            audit.record(
                conn,
                actor=actor,
                action="company.updated",
                entity_type="company",
                entity_id=company_id,
                company_id=company_id,
                now=now,
                details=_diff(before.as_json(), after.as_json()),
            )
            return after

        return self._ctx.db.write(work)

    def map_retell_agent(self, agent_id: str, company_id: int, *, actor: str) -> None:
        """Calls of this Retell agent bill this company when they carry no company id of their own."""
        agent_id = validation.identifier(agent_id, "agent id")
        company_id = validation.company_id(company_id)
        actor = validation.text(actor, "actor", max_length=200)

        def work(conn: Connection) -> None:
            _load(conn, company_id, with_rates=False)
            now = self._ctx.clock()
            current = conn.execute(
                select(retell_agents.c.company_id).where(retell_agents.c.agent_id == agent_id)
            ).scalar()
            if current is None:
                conn.execute(insert(retell_agents).values(agent_id=agent_id, company_id=company_id, created_at=now))
            elif current != company_id:
                conn.execute(
                    update(retell_agents).where(retell_agents.c.agent_id == agent_id).values(company_id=company_id)
                )
            audit.record(
                conn,
                actor=actor,
                action="retell_agent.mapped",
                entity_type="retell_agent",
                entity_id=agent_id,
                company_id=company_id,
                now=now,
                details={"agent_id": agent_id, "previous_company": current},
            )

        self._ctx.db.write(work)

    def retell_agents(self) -> builtins.list[tuple[str, int]]:
        query = select(retell_agents.c.agent_id, retell_agents.c.company_id).order_by(retell_agents.c.agent_id)
        return self._ctx.db.read(lambda conn: [(a, c) for a, c in conn.execute(query)])


def _load(conn: Connection, company_id: int, *, with_rates: bool = True) -> CompanyView:
    row = (
        conn.execute(
            select(companies, balances)
            .join(balances, balances.c.company_id == companies.c.id)
            .where(companies.c.id == company_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise CompanyNotFound(company_id)
    currency = row[companies.c.currency]
    rates: tuple[RateView, ...] = ()
    if with_rates:
        rates = tuple(
            RateView(r.rate_per_minute, r.billing_increment_seconds, r.effective_from)
            for r in conn.execute(
                select(billing_rates)
                .where(billing_rates.c.company_id == company_id)
                .order_by(billing_rates.c.effective_from)
            )
        )
    monthly = row[balances.c.auto_topup_monthly_limit]
    return CompanyView(
        id=company_id,
        name=row[companies.c.name],
        email=row[companies.c.email],
        currency=currency,
        locale=row[companies.c.locale],
        prepaid_billing_enabled=row[companies.c.prepaid_billing_enabled],
        balance=Money(row[balances.c.balance], currency),
        reserved=Money(row[balances.c.reserved_balance], currency),
        low_balance_threshold=Money(row[balances.c.low_balance_threshold], currency),
        auto_topup_enabled=row[balances.c.auto_topup_enabled],
        auto_topup_threshold=Money(row[balances.c.auto_topup_threshold], currency),
        auto_topup_amount=Money(row[balances.c.auto_topup_amount], currency),
        auto_topup_daily_limit=row[balances.c.auto_topup_daily_limit],
        auto_topup_monthly_limit=None if monthly is None else Money(monthly, currency),
        stripe_customer_id=row[companies.c.stripe_customer_id],
        stripe_payment_method_id=row[balances.c.stripe_payment_method_id],
        auto_topup_disabled_reason=row[balances.c.auto_topup_disabled_reason],
        details={
            k: row[companies.c[k]]
            for k in COMPANY_FIELDS
            if k not in ("name", "email", "locale", "prepaid_billing_enabled")
        },
        rates=rates,
    )


def _email(value: str) -> str:
    email = validation.text(value, "email", max_length=320)
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        raise InvalidInput(f"{value!r} is not an email address")
    return email


def _increment(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
        raise InvalidInput("billing increment must be between 1 and 3600 seconds")
    return value


def _same_currency(amount: Money, currency: str) -> None:
    if amount.currency != currency:
        raise InvalidInput(f"amount in {amount.currency} given for a company billed in {currency}")


# The longest text each company column holds (see db.tables.Company).
TEXT_LIMITS = {
    "vat_id": 32,
    "tax_number": 32,
    "address_line1": 200,
    "address_line2": 200,
    "postal_code": 16,
    "city": 100,
    "country": 8,
}


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    """Stripped text (empty becomes NULL), no control characters, within its column; VAT ids checked."""
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str) and key in TEXT_LIMITS:
            value = validation.text(value, key, max_length=TEXT_LIMITS[key]) if value.strip() else None
        cleaned[key] = value
    if cleaned.get("vat_id"):
        cleaned["vat_id"] = validation.vat_id(cleaned["vat_id"])
    country = cleaned.get("country")
    if country:
        cleaned["country"] = country = str(country).upper()
        if len(country) != 2 or not (country.isascii() and country.isalpha()):
            raise InvalidInput("country must be a two-letter ISO code such as DE")
    return cleaned


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: {"from": before.get(k), "to": v} for k, v in after.items() if before.get(k) != v}
