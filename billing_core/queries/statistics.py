"""Payment statistics for a period, for one company or the whole business, with a daily series.

Everything is aggregated in SQL, one range aggregate per local day of the seller's calendar (see
:mod:`billing_core.queries.periods`); only those rows reach Python, which adds integers and divides once.
For the whole business the per-day sums come from the worker's daily roll-ups plus the journal rows it has
not folded yet (:mod:`billing_core.queries.rollups`), in the same shapes, whenever roll-ups exist in the
asked time zone; the figures are identical either way.
Money figures are in one currency (the company's, or the one asked for): sums across currencies would mean
nothing.

Definitions:
- revenue: top-ups credited (``succeeded_at``) in the period, gross; net revenue subtracts the top-up refunds
  that succeeded in the period (created in it);
- top-ups by status and by method: top-ups *created* in the period; failure rate = failed / (failed +
  credited) among them, null when there were none;
- auto top-up attempts: top-ups with source ``auto_topup`` created in the period;
- bonus granted: bonus credited with the revenue's top-ups;
- call refunds: ``refund`` ledger entries in the period;
- active companies: companies with at least one charged call in the period;
- average balance: the current balance of the companies in this currency (a balance has no history to average);
- webhook processing time: receipt to processing, exact to the microsecond, average and maximum (not
  percentiles: those cannot be computed in portable SQL), over the events received and processed in the
  period; whole business only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, func, literal_column, select, union_all

from billing_core.db.tables import (
    balances,
    call_charges,
    companies,
    invoices,
    ledger,
    topup_refunds,
    topups,
    webhook_events,
)
from billing_core.errors import CompanyNotFound
from billing_core.money import normalize_currency
from billing_core.queries.periods import as_date, duration_microseconds, local_day, offset_segments
from billing_core.queries.rollups import rolled_up_rows
from billing_core.read_models.base import MoneyView
from billing_core.read_models.periods import Period
from billing_core.read_models.statistics import (
    AutoTopupTotals,
    CallTotals,
    DailyStatistics,
    MethodCount,
    PaymentStatistics,
    RefundTotals,
    StatusCount,
    TaxLine,
    TaxTotals,
    WebhookTiming,
)

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = [
    "AutoTopupTotals",
    "CallTotals",
    "DailyStatistics",
    "MethodCount",
    "PaymentStatistics",
    "RefundTotals",
    "StatusCount",
    "TaxLine",
    "TaxTotals",
    "WebhookTiming",
]

CREDITED = ("succeeded", "partially_refunded", "refunded")


@dataclass(slots=True)
class _Day:
    revenue: int = 0
    credited: int = 0
    created: int = 0
    failed: int = 0
    auto_attempts: int = 0
    auto_failures: int = 0
    bonus: int = 0
    refunded: int = 0
    calls: int = 0
    call_seconds: int = 0
    call_charges: int = 0
    active: int = 0
    webhooks: int = 0
    webhook_us: int = 0


def _divide(total: int, count: int) -> int:
    """Integer division rounded half up (exact, the same on every backend)."""
    if count == 0:
        return 0
    return int((Decimal(total) / Decimal(count)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _seconds(microseconds: int, count: int = 1) -> float:
    return round(_divide(microseconds, count * 1000) / 1000, 3)


Segments = tuple[tuple[datetime | None, int], ...]


@lru_cache(maxsize=64)
def _statements(dialect: str, day_count: int, by_company: bool, segments: Segments | None) -> dict[str, Any]:
    """The statistics' statements for periods of ``day_count`` days, built once (they then hit SQLAlchemy's
    compiled cache); the local midnights are bound as ``d0 .. dN``.

    Two shapes, chosen by the caller, with identical results. With ``segments`` (the period's UTC offsets):
    one ``GROUP BY`` of the local date (:func:`local_day`), which MariaDB computes cheaply. Without: a
    ``UNION ALL`` of one range aggregate per local day, for SQLite over the whole business, where a date
    function and a sort per row cost more than thirty range scans of a covering index."""

    def scope(table: Any, time_column: Any, low: Any, high: Any) -> list[Any]:
        conditions = [time_column >= low, time_column < high, table.c.currency == bindparam("currency")]
        if by_company:
            conditions.append(table.c.company_id == bindparam("company_id"))
        return conditions

    whole: tuple[Any, Any] = (bindparam("d0"), bindparam(f"d{day_count}"))

    def per_day(
        table: Any, time_column: Any, *columns: Any, extra: tuple[Any, ...] = (), by: tuple[Any, ...] = ()
    ) -> Any:
        if segments is not None:
            day = local_day(time_column, segments, dialect).label("day")
            query = select(day, *by, *columns).where(*scope(table, time_column, *whole), *extra)
            return query.group_by(literal_column("day"), *by)
        return union_all(
            *(
                select(literal_column(str(index)).label("day"), *by, *columns)
                .where(*scope(table, time_column, bindparam(f"d{index}"), bindparam(f"d{index + 1}")), *extra)
                .group_by(*by)
                for index in range(day_count)
            )
        )

    balance_scope = [balances.c.currency == bindparam("currency")]
    if by_company:
        balance_scope.append(balances.c.company_id == bindparam("company_id"))
    elapsed = duration_microseconds(webhook_events.c.received_at, webhook_events.c.processed_at, dialect)
    webhook_columns = (func.count(), func.sum(elapsed), func.max(elapsed))
    webhook_by = (webhook_events.c.provider, webhook_events.c.event_type)
    return {
        "topups_created": per_day(
            topups, topups.c.created_at, func.count(), func.sum(topups.c.amount), by=(topups.c.status, topups.c.source)
        ),
        "topups_credited": per_day(
            topups,
            topups.c.succeeded_at,
            func.count(),
            func.sum(topups.c.amount),
            func.sum(topups.c.bonus_amount),
            extra=(topups.c.status.in_(CREDITED),),
        ),
        "topup_refunds": per_day(
            topup_refunds,
            topup_refunds.c.created_at,
            func.count(),
            func.sum(topup_refunds.c.amount),
            func.sum(topup_refunds.c.bonus_reversed),
            extra=(topup_refunds.c.status == "succeeded",),
        ),
        "call_refunds": per_day(
            ledger, ledger.c.created_at, func.count(), func.sum(ledger.c.amount), extra=(ledger.c.type == "refund",)
        ),
        "calls": per_day(
            call_charges,
            call_charges.c.charged_at,
            func.count(),
            func.sum(call_charges.c.billed_seconds),
            func.sum(call_charges.c.amount_charged),
            func.count(call_charges.c.company_id.distinct()),
        ),
        "active_companies": select(func.count(call_charges.c.company_id.distinct())).where(
            *scope(call_charges, call_charges.c.charged_at, *whole)
        ),
        "balances": select(func.count(), func.coalesce(func.sum(balances.c.balance), 0)).where(*balance_scope),
        # per day and type: the totals per type are sums (and the maximum of maxima) of these rows
        "webhooks": _webhooks_per_day(dialect, day_count, segments, webhook_by, webhook_columns),
    }


def _webhooks_per_day(
    dialect: str, day_count: int, segments: Segments | None, by: tuple[Any, ...], columns: tuple[Any, ...]
) -> Any:
    if segments is not None:
        day = local_day(webhook_events.c.received_at, segments, dialect).label("day")
        window = _webhook_window(bindparam("d0"), bindparam(f"d{day_count}"))
        return select(day, *by, *columns).where(*window).group_by(literal_column("day"), *by)
    elapsed = duration_microseconds(webhook_events.c.received_at, webhook_events.c.processed_at, dialect)

    def branch(index: int) -> Any:
        # SQLite evaluates the duration once per aggregate using it; the LIMIT keeps this subquery from being
        # flattened into the outer one, so it is computed once per row
        timed = (
            select(*by, elapsed.label("elapsed"))
            .where(*_webhook_window(bindparam(f"d{index}"), bindparam(f"d{index + 1}")))
            .limit(-1)
            .subquery()
        )
        grouping = [timed.c[column.name] for column in by]
        return select(
            literal_column(str(index)).label("day"),
            *grouping,
            func.count(),
            func.sum(timed.c.elapsed),
            func.max(timed.c.elapsed),
        ).group_by(*grouping)

    return union_all(*(branch(index) for index in range(day_count)))


def _currency_and_locale(
    conn: Connection, company_id: int | None, currency: str | None, *, default_currency: str, default_locale: str
) -> tuple[str, str]:
    """The currency a report is in and the locale it is formatted for: one company's own (its currency unless
    one is asked for), else the defaults; a company that does not exist is an error."""
    locale = default_locale
    if company_id is not None:
        row = conn.execute(select(companies.c.currency, companies.c.locale).where(companies.c.id == company_id)).first()
        if row is None:
            raise CompanyNotFound(company_id)
        currency, locale = currency or row.currency, row.locale
    return normalize_currency(currency or default_currency), locale


def payment_statistics(
    conn: Connection,
    period: Period,
    *,
    timezone: str,
    company_id: int | None = None,
    currency: str | None = None,
    default_currency: str,
    default_locale: str,
    use_rollups: bool = True,
) -> PaymentStatistics:
    """The statistics of ``period``; for the whole business from the worker's roll-ups plus the journal when
    there are roll-ups in ``timezone`` (identical figures, see :mod:`billing_core.queries.rollups`), else
    (and for one company, whose rows are few) aggregated from the base tables."""
    currency, locale = _currency_and_locale(
        conn, company_id, currency, default_currency=default_currency, default_locale=default_locale
    )
    day_list = list(period.days())
    bounds = period.day_bounds(timezone)
    days: dict[int, _Day] = {index: _Day() for index in range(len(day_list))}

    def money(cents: int) -> MoneyView:
        return MoneyView.of(cents, currency, locale)

    dialect = conn.dialect.name
    segments: Segments | None = None
    if dialect != "sqlite" or company_id is not None:
        found = offset_segments(bounds[0], bounds[-1], timezone)
        # the first segment's start is not part of the SQL: every period of one shape shares the statements
        segments = ((None, found[0][1]), *found[1:])
    statements = _statements(dialect, len(day_list), company_id is not None, segments)
    params: dict[str, Any] = {f"d{index}": instant for index, instant in enumerate(bounds)}
    params.update(currency=currency, company_id=company_id)

    rolled = None
    if use_rollups and company_id is None:
        rolled = rolled_up_rows(conn, first_day=period.start, bounds=bounds, timezone=timezone, currency=currency)

    def run(name: str) -> Sequence[Any]:
        if rolled is not None and name in rolled:
            return rolled[name]
        return conn.execute(statements[name], params).all()

    def index(day: Any) -> int:
        """The day's position: a branch number from the per-day ranges, or the local date from GROUP BY."""
        return day if isinstance(day, int) else (as_date(day) - period.start).days

    # top-ups created in the period: status, method, auto top-up attempts
    by_status: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_method: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for day, status, source, count, amount in run("topups_created"):
        count, amount = int(count), int(amount or 0)
        bucket = days[index(day)]
        by_status[status][0] += count
        by_status[status][1] += amount
        method = by_method[source]
        method[0] += count
        bucket.created += count
        if status in CREDITED:
            method[1] += count
            method[3] += amount
        if status == "failed":
            method[2] += count
            bucket.failed += count
        if source == "auto_topup":
            bucket.auto_attempts += count
            bucket.auto_failures += count if status == "failed" else 0

    # revenue and bonus: top-ups credited in the period
    for day, count, amount, bonus in run("topups_credited"):
        bucket = days[index(day)]
        bucket.credited += int(count)
        bucket.revenue += int(amount or 0)
        bucket.bonus += int(bonus or 0)

    topup_refund_count = topup_refunded = bonus_reversed = 0
    for day, count, amount, bonus in run("topup_refunds"):
        topup_refund_count += int(count)
        topup_refunded += int(amount or 0)
        bonus_reversed += int(bonus or 0)
        days[index(day)].refunded += int(amount or 0)

    call_refund_count = call_refunded = 0
    for day, count, amount in run("call_refunds"):
        call_refund_count += int(count)
        call_refunded += int(amount or 0)
        days[index(day)].refunded += int(amount or 0)

    for day, count, seconds, charged, active in run("calls"):
        bucket = days[index(day)]
        bucket.calls, bucket.call_seconds = int(count), int(seconds or 0)
        bucket.call_charges, bucket.active = int(charged or 0), int(active)
    active_companies = int(run("active_companies")[0][0])
    company_count, total_balance = run("balances")[0]

    timings: tuple[WebhookTiming, ...] = ()
    if company_id is None:
        per_type: dict[tuple[str, str], list[int]] = {}
        for day, provider, event_type, count, total_us, max_us in run("webhooks"):
            bucket = days[index(day)]
            bucket.webhooks += int(count)
            bucket.webhook_us += int(total_us)
            kind = per_type.setdefault((provider, event_type), [0, 0, 0])
            kind[0] += int(count)
            kind[1] += int(total_us)
            kind[2] = max(kind[2], int(max_us))
        timings = tuple(
            WebhookTiming(
                provider=provider,
                event_type=event_type,
                count=count,
                avg_seconds=_seconds(total_us, count),
                max_seconds=_seconds(max_us),
            )
            for (provider, event_type), (count, total_us, max_us) in sorted(per_type.items())
        )

    credited = sum(d.credited for d in days.values())
    failed = by_status.get("failed", [0, 0])[0]
    credited_created = sum(by_status[s][0] for s in CREDITED if s in by_status)
    revenue = sum(d.revenue for d in days.values())
    call_seconds = sum(d.call_seconds for d in days.values())
    return PaymentStatistics(
        period=period,
        timezone=timezone,
        company_id=company_id,
        currency=currency,
        revenue=money(revenue),
        net_revenue=money(revenue - topup_refunded),
        topups_credited=credited,
        topups_by_status=tuple(
            StatusCount(status=status, count=count, amount=money(amount))
            for status, (count, amount) in sorted(by_status.items())
        ),
        topups_by_method=tuple(
            MethodCount(method=name, count=c, credited=ok, failed=bad, credited_amount=money(amount))
            for name, (c, ok, bad, amount) in sorted(by_method.items())
        ),
        failed_topups=failed,
        failure_rate=round(failed / (failed + credited_created), 4) if failed + credited_created else None,
        refunds=RefundTotals(
            topup_refunds=topup_refund_count,
            topup_refunded=money(topup_refunded),
            bonus_reversed=money(bonus_reversed),
            call_refunds=call_refund_count,
            call_refunded=money(call_refunded),
        ),
        auto_topup=AutoTopupTotals(
            attempts=by_method.get("auto_topup", [0, 0, 0, 0])[0],
            credited=by_method.get("auto_topup", [0, 0, 0, 0])[1],
            failed=by_method.get("auto_topup", [0, 0, 0, 0])[2],
        ),
        bonus_granted=money(sum(d.bonus for d in days.values())),
        calls=CallTotals(
            count=sum(d.calls for d in days.values()),
            billed_seconds=call_seconds,
            billed_minutes=(Decimal(call_seconds) / 60).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
            charged=money(sum(d.call_charges for d in days.values())),
        ),
        active_companies=active_companies,
        companies=int(company_count),
        total_balance=money(int(total_balance)),
        average_balance=money(_divide(int(total_balance), int(company_count))),
        webhook_processing=timings,
        daily=tuple(
            DailyStatistics(
                day=day,
                revenue=money(d.revenue),
                topups_credited=d.credited,
                topups_created=d.created,
                topups_failed=d.failed,
                auto_topup_attempts=d.auto_attempts,
                auto_topup_failures=d.auto_failures,
                bonus_granted=money(d.bonus),
                refunded=money(d.refunded),
                calls=d.calls,
                call_seconds=d.call_seconds,
                call_charges=money(d.call_charges),
                active_companies=d.active,
                webhook_events=d.webhooks,
                webhook_avg_seconds=_seconds(d.webhook_us, d.webhooks) if d.webhooks else None,
            )
            for day, d in zip(day_list, days.values(), strict=True)
        ),
    )


def _webhook_window(since: Any, until: Any | None) -> list[Any]:
    window = [webhook_events.c.received_at >= since, webhook_events.c.processed_at.is_not(None)]
    if until is not None:
        window.append(webhook_events.c.received_at < until)
    return window


@lru_cache(maxsize=4)
def _webhook_processing_statement(dialect: str, bounded: bool) -> Any:
    elapsed = duration_microseconds(webhook_events.c.received_at, webhook_events.c.processed_at, dialect)
    return (
        select(
            webhook_events.c.provider,
            webhook_events.c.event_type,
            func.count(),
            func.sum(elapsed),
            func.max(elapsed),
        )
        .where(*_webhook_window(bindparam("start"), bindparam("end") if bounded else None))
        .group_by(webhook_events.c.provider, webhook_events.c.event_type)
        .order_by(webhook_events.c.provider, webhook_events.c.event_type)
    )


def webhook_processing(conn: Connection, *, since: datetime, until: datetime | None) -> tuple[WebhookTiming, ...]:
    """Per provider and event type: count, average and maximum seconds from receipt to processing."""
    query = _webhook_processing_statement(conn.dialect.name, until is not None)
    return tuple(
        WebhookTiming(
            provider=provider,
            event_type=event_type,
            count=int(count),
            avg_seconds=_seconds(int(total_us), int(count)),
            max_seconds=_seconds(int(max_us)),
        )
        for provider, event_type, count, total_us, max_us in conn.execute(query, {"start": since, "end": until})
    )


def tax_totals(
    conn: Connection,
    period: Period,
    *,
    timezone: str,
    company_id: int | None = None,
    currency: str | None = None,
    default_currency: str,
    default_locale: str,
) -> TaxTotals:
    """Invoices and credit notes issued in the period (seller's calendar), by kind and VAT treatment."""
    currency, locale = _currency_and_locale(
        conn, company_id, currency, default_currency=default_currency, default_locale=default_locale
    )
    start, end = period.utc_bounds(timezone)
    query = (
        select(
            invoices.c.kind,
            invoices.c.vat_category,
            invoices.c.vat_rate,
            func.count(),
            func.sum(invoices.c.net_amount),
            func.sum(invoices.c.vat_amount),
            func.sum(invoices.c.gross_amount),
        )
        .where(invoices.c.issued_at >= start, invoices.c.issued_at < end, invoices.c.currency == currency)
        .group_by(invoices.c.kind, invoices.c.vat_category, invoices.c.vat_rate)
        .order_by(invoices.c.kind.desc(), invoices.c.vat_category, invoices.c.vat_rate)
    )
    if company_id is not None:
        query = query.where(invoices.c.company_id == company_id)

    def money(cents: int) -> MoneyView:
        return MoneyView.of(cents, currency, locale)

    lines = []
    totals = [0, 0, 0]
    for kind, category, rate, count, net, vat, gross in conn.execute(query):
        sums = [int(net or 0), int(vat or 0), int(gross or 0)]
        sign = -1 if kind == "credit_note" else 1
        totals = [total + sign * value for total, value in zip(totals, sums, strict=True)]
        lines.append(
            TaxLine(
                type=kind,
                vat_category=category,
                vat_rate=format(Decimal(rate).normalize(), "f"),
                documents=int(count),
                net=money(sums[0]),
                vat=money(sums[1]),
                gross=money(sums[2]),
            )
        )
    return TaxTotals(
        period=period,
        timezone=timezone,
        company_id=company_id,
        currency=currency,
        lines=tuple(lines),
        net=money(totals[0]),
        vat=money(totals[1]),
        gross=money(totals[2]),
    )
