"""Ledger entries and call charges, paged newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from billing_core.db.tables import call_charges, companies, ledger
from billing_core.errors import CallChargeNotFound
from billing_core.queries.base import keyset_page, narrowed
from billing_core.read_models.base import DEFAULT_LIMIT, MoneyView, Page
from billing_core.read_models.ledger import (
    CallChargeFilters,
    CallChargeView,
    EntryType,
    LedgerEntryView,
    LedgerFilters,
    RefundStatus,
)

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = ["CallChargeFilters", "CallChargeView", "EntryType", "LedgerEntryView", "LedgerFilters", "RefundStatus"]


def _ledger_entry(row: Any) -> LedgerEntryView:
    currency, locale = row["currency"], row["locale"]
    return LedgerEntryView(
        id=row["id"],
        company_id=row["company_id"],
        type=row["type"],
        amount=MoneyView.of(row["amount"], currency, locale),
        balance_before=MoneyView.of(row["balance_before"], currency, locale),
        balance_after=MoneyView.of(row["balance_after"], currency, locale),
        description=row["description"],
        reference_type=row["reference_type"],
        reference_id=row["reference_id"],
        actor=row["actor"],
        created_at=row["created_at"],
    )


def list_ledger_entries(
    conn: Connection, filters: LedgerFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[LedgerEntryView]:
    filters = filters or LedgerFilters()
    query = (
        select(ledger, companies.c.locale)
        .join(companies, companies.c.id == ledger.c.company_id)
        # MariaDB otherwise reads companies first and sorts the whole ledger for a page of the newest entries
        .prefix_with("STRAIGHT_JOIN", dialect="mysql")
        .prefix_with("STRAIGHT_JOIN", dialect="mariadb")
    )
    query = narrowed(
        query,
        equal=[(ledger.c.company_id, filters.company_id)],
        among=[(ledger.c.type, filters.types)],
        period=(ledger.c.created_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        ledger.c.id,
        _ledger_entry,
        kind="ledger",
        noun="history",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


def _call_charge(row: Any) -> CallChargeView:
    currency, locale = row["currency"], row["locale"]
    return CallChargeView(
        id=row["id"],
        call_id=row["call_id"],
        company_id=row["company_id"],
        duration_seconds=row["duration_seconds"],
        billed_seconds=row["billed_seconds"],
        rate_per_minute=row["rate_per_minute"],
        billing_increment_seconds=row["billing_increment_seconds"],
        amount_charged=MoneyView.of(row["amount_charged"], currency, locale),
        refunded=MoneyView.of(row["refunded_amount"], currency, locale),
        refund_status=row["refund_status"],
        call_started_at=row["call_started_at"],
        call_ended_at=row["call_ended_at"],
        charged_at=row["charged_at"],
    )


def _call_query() -> Any:
    return select(call_charges, companies.c.locale).join(companies, companies.c.id == call_charges.c.company_id)


def list_call_charges(
    conn: Connection,
    filters: CallChargeFilters | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[CallChargeView]:
    filters = filters or CallChargeFilters()
    query = _call_query()
    query = narrowed(
        query,
        equal=[(call_charges.c.company_id, filters.company_id), (call_charges.c.refund_status, filters.refund_status)],
        period=(call_charges.c.charged_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        call_charges.c.id,
        _call_charge,
        kind="call_charges",
        noun="call charge",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


def call_charge(conn: Connection, call_id: str) -> CallChargeView:
    row = conn.execute(_call_query().where(call_charges.c.call_id == call_id)).mappings().first()
    if row is None:
        raise CallChargeNotFound(call_id)
    return _call_charge(row)
