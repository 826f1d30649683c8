"""Companies: the overview (data, balance, rates, auto top-up state), search, the list and low balances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from billing_core.config import Settings
from billing_core.db.tables import balances, billing_rates, companies, retell_agents
from billing_core.errors import CompanyNotFound, InvalidInput
from billing_core.queries.base import check_limit, decode_cursor, page_of
from billing_core.read_models.base import DEFAULT_LIMIT, MoneyView, Page
from billing_core.read_models.companies import (
    BalanceOverview,
    CompanyFilters,
    CompanyMatch,
    CompanyOverview,
    LowBalanceCompany,
    LowBalanceFilters,
    RateView,
)

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = [
    "BalanceOverview",
    "CompanyFilters",
    "CompanyMatch",
    "CompanyOverview",
    "LowBalanceCompany",
    "LowBalanceFilters",
    "RateView",
]

ADDRESS_FIELDS = ("vat_id", "tax_number", "address_line1", "address_line2", "postal_code", "city", "country")


def _company_query() -> Any:
    return select(companies, balances).join(balances, balances.c.company_id == companies.c.id)


def _rate(row: Any) -> RateView:
    return RateView(
        rate_per_minute=row.rate_per_minute,
        billing_increment_seconds=row.billing_increment_seconds,
        effective_from=row.effective_from,
    )


def _overview(
    row: Any,
    *,
    rates: tuple[RateView, ...] = (),
    now: datetime | None = None,
    agents: tuple[str, ...] = (),
    show_history: bool = True,
) -> CompanyOverview:
    currency, locale = row[companies.c.currency], row[companies.c.locale]

    def money(value: int) -> MoneyView:
        return MoneyView.of(value, currency, locale)

    balance, reserved = row[balances.c.balance], row[balances.c.reserved_balance]
    threshold = row[balances.c.low_balance_threshold]
    monthly = row[balances.c.auto_topup_monthly_limit]
    current = None
    scheduled: tuple[RateView, ...] = ()
    if now is not None:
        past = [r for r in rates if r.effective_from <= now]
        current = past[-1] if past else None
        scheduled = tuple(r for r in rates if r.effective_from > now)
    return CompanyOverview(
        id=row[companies.c.id],
        name=row[companies.c.name],
        email=row[companies.c.email],
        currency=currency,
        locale=locale,
        prepaid_billing_enabled=row[companies.c.prepaid_billing_enabled],
        balance=money(balance),
        reserved=money(reserved),
        available=money(balance - reserved),
        low_balance_threshold=money(threshold),
        is_low=balance < threshold,
        auto_topup_enabled=row[balances.c.auto_topup_enabled],
        auto_topup_threshold=money(row[balances.c.auto_topup_threshold]),
        auto_topup_amount=money(row[balances.c.auto_topup_amount]),
        auto_topup_daily_limit=row[balances.c.auto_topup_daily_limit],
        auto_topup_monthly_limit=None if monthly is None else money(monthly),
        auto_topup_consecutive_failures=row[balances.c.auto_topup_consecutive_failures],
        auto_topup_disabled_reason=row[balances.c.auto_topup_disabled_reason],
        stripe_customer_id=row[companies.c.stripe_customer_id],
        stripe_payment_method_id=row[balances.c.stripe_payment_method_id],
        **{name: row[companies.c[name]] for name in ADDRESS_FIELDS},
        retell_agent_ids=agents,
        current_rate=current,
        scheduled_rates=scheduled,
        rates=rates if show_history else (),
        created_at=row[companies.c.created_at],
    )


def company_overview(conn: Connection, company_id: int, *, now: datetime) -> CompanyOverview:
    """One company with everything an operator looks at first."""
    row = conn.execute(_company_query().where(companies.c.id == company_id)).mappings().first()
    if row is None:
        raise CompanyNotFound(company_id)
    rates = tuple(
        _rate(r)
        for r in conn.execute(
            select(billing_rates)
            .where(billing_rates.c.company_id == company_id)
            .order_by(billing_rates.c.effective_from)
        )
    )
    agents = tuple(
        conn.execute(
            select(retell_agents.c.agent_id)
            .where(retell_agents.c.company_id == company_id)
            .order_by(retell_agents.c.agent_id)
        ).scalars()
    )
    return _overview(row, rates=rates, now=now, agents=agents)


def balance_overview(conn: Connection, company_id: int) -> BalanceOverview:
    found = balance_overviews(conn, [company_id]).get(company_id)
    if found is None:
        raise CompanyNotFound(company_id)
    return found


def balance_overviews(conn: Connection, company_ids: list[int]) -> dict[int, BalanceOverview]:
    """The balances of these companies in one statement, by id (a missing company is left out)."""
    rows = conn.execute(
        select(balances, companies.c.locale)
        .join(companies, companies.c.id == balances.c.company_id)
        .where(balances.c.company_id.in_(company_ids))
    ).mappings()
    found = {}
    for row in rows:
        company_id, currency, locale = row["company_id"], row["currency"], row["locale"]
        balance, reserved, threshold = row["balance"], row["reserved_balance"], row["low_balance_threshold"]
        found[company_id] = BalanceOverview(
            company_id=company_id,
            balance=MoneyView.of(balance, currency, locale),
            reserved=MoneyView.of(reserved, currency, locale),
            available=MoneyView.of(balance - reserved, currency, locale),
            low_balance_threshold=MoneyView.of(threshold, currency, locale),
            is_low=balance < threshold,
        )
    return found


def list_companies(
    conn: Connection,
    filters: CompanyFilters | None = None,
    *,
    now: datetime,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[CompanyOverview]:
    """Companies in id order (oldest first) with their current and scheduled rates, without the history."""
    filters = filters or CompanyFilters()
    check_limit(limit)
    query = _company_query()
    if cursor:
        query = query.where(companies.c.id > decode_cursor(cursor, "companies", filters, noun="company list"))
    if filters.name_contains:
        query = query.where(func.lower(companies.c.name).contains(filters.name_contains.lower(), autoescape=True))
    if filters.prepaid_billing_enabled is not None:
        query = query.where(companies.c.prepaid_billing_enabled == filters.prepaid_billing_enabled)
    if filters.auto_topup_enabled is not None:
        query = query.where(balances.c.auto_topup_enabled == filters.auto_topup_enabled)
    rows = conn.execute(query.order_by(companies.c.id).limit(limit + 1)).mappings().all()
    ids = [row[companies.c.id] for row in rows]
    rates: dict[int, list[RateView]] = {}
    if ids:
        for rate in conn.execute(
            select(billing_rates)
            .where(billing_rates.c.company_id.in_(ids))
            .order_by(billing_rates.c.company_id, billing_rates.c.effective_from)
        ):
            rates.setdefault(rate.company_id, []).append(_rate(rate))
    items = [_overview(r, rates=tuple(rates.get(r[companies.c.id], ())), now=now, show_history=False) for r in rows]
    return page_of(items, limit=limit, kind="companies", filters=filters, last_id=_id)


def _id(item: Any) -> int:
    return int(item.id)


def find_companies(conn: Connection, text: str, *, limit: int = 20) -> tuple[CompanyMatch, ...]:
    """Companies whose id, Stripe customer id, Retell agent id or email equals ``text``, or whose name or email
    contains it (case-insensitive); exact matches first."""
    needle = text.strip() if isinstance(text, str) else ""
    if not 1 <= len(needle) <= 200:
        raise InvalidInput("give 1 to 200 characters to search for")
    check_limit(limit)
    found: dict[int, tuple[Any, str]] = {}

    def collect(condition: Any, matched_on: str) -> None:
        if len(found) >= limit:
            return
        query = _company_query().where(condition).order_by(companies.c.id).limit(limit)
        for row in conn.execute(query).mappings():
            found.setdefault(row[companies.c.id], (row, matched_on))

    if needle.isdigit() and len(needle) < 19:
        collect(companies.c.id == int(needle), "id")
    collect(companies.c.stripe_customer_id == needle, "stripe_customer_id")
    agent_owner = select(retell_agents.c.company_id).where(retell_agents.c.agent_id == needle)
    collect(companies.c.id.in_(agent_owner.scalar_subquery()), "retell_agent_id")
    collect(func.lower(companies.c.email) == needle.lower(), "email")
    lowered = needle.lower()
    collect(func.lower(companies.c.name).contains(lowered, autoescape=True), "name")
    collect(func.lower(companies.c.email).contains(lowered, autoescape=True), "email")
    matches = []
    for row, matched_on in list(found.values())[:limit]:
        overview = _overview(row)
        matches.append(
            CompanyMatch(
                id=overview.id,
                name=overview.name,
                email=overview.email,
                currency=overview.currency,
                stripe_customer_id=overview.stripe_customer_id,
                balance=overview.balance,
                available=overview.available,
                matched_on=matched_on,
            )
        )
    return tuple(matches)


def low_balance_companies(
    conn: Connection,
    filters: LowBalanceFilters | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[LowBalanceCompany]:
    """Companies whose balance is below their low-balance threshold, in id order."""
    filters = filters or LowBalanceFilters()
    check_limit(limit)
    # Two steps: the balances below their threshold (one table; a comparison of two columns has no index, so
    # a scan, which MariaDB must not replace by 10,000 lookups through the company index for the ORDER BY),
    # then the names of that page's companies.
    hint = "IGNORE INDEX FOR ORDER BY (uq_prepaid_balances_company_id)"
    query = (
        select(
            balances.c.company_id,
            balances.c.balance,
            balances.c.currency,
            balances.c.low_balance_threshold,
            balances.c.auto_topup_enabled,
        )
        .where(balances.c.balance < balances.c.low_balance_threshold)
        .with_hint(balances, hint, dialect_name="mysql")
        .with_hint(balances, hint, dialect_name="mariadb")
    )
    if cursor:
        query = query.where(balances.c.company_id > decode_cursor(cursor, "low_balance", filters, noun="low-balance"))
    if filters.auto_topup_enabled is not None:
        query = query.where(balances.c.auto_topup_enabled == filters.auto_topup_enabled)
    rows = conn.execute(query.order_by(balances.c.company_id).limit(limit + 1)).all()
    names = {
        row.id: row
        for row in conn.execute(
            select(companies.c.id, companies.c.name, companies.c.locale).where(
                companies.c.id.in_([r.company_id for r in rows])
            )
        )
    }
    items = [
        LowBalanceCompany(
            company_id=r.company_id,
            name=names[r.company_id].name,
            balance=MoneyView.of(r.balance, r.currency, names[r.company_id].locale),
            low_balance_threshold=MoneyView.of(r.low_balance_threshold, r.currency, names[r.company_id].locale),
            auto_topup_enabled=r.auto_topup_enabled,
        )
        for r in rows
    ]
    return page_of(items, limit=limit, kind="low_balance", filters=filters, last_id=lambda i: i.company_id)


def company_locale(conn: Connection, company_id: int) -> tuple[str, str]:
    """(currency, locale) of a company; CompanyNotFound when it does not exist."""
    row = conn.execute(select(companies.c.currency, companies.c.locale).where(companies.c.id == company_id)).first()
    if row is None:
        raise CompanyNotFound(company_id)
    return row.currency, row.locale


def default_locale(settings: Settings) -> str:
    return settings.default_locale
