"""Top-ups (how failed payments are found), their refunds, and card disputes, paged newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from billing_core.db.tables import companies, disputes, topup_refunds, topups
from billing_core.errors import TopupNotFound
from billing_core.queries.base import keyset_page, narrowed
from billing_core.read_models.base import DEFAULT_LIMIT, MoneyView, Page
from billing_core.read_models.payments import (
    DisputeFilters,
    DisputeView,
    TopupFilters,
    TopupMethod,
    TopupRefundFilters,
    TopupRefundView,
    TopupStatus,
    TopupView,
)

# The models of these reads are in billing_core.read_models (loadable without SQLAlchemy); they can still
# be imported from here.
__all__ = [
    "DisputeFilters",
    "DisputeView",
    "TopupFilters",
    "TopupMethod",
    "TopupRefundFilters",
    "TopupRefundView",
    "TopupStatus",
    "TopupView",
]


def _topup(row: Any) -> TopupView:
    currency, locale = row["currency"], row["locale"]
    return TopupView(
        id=row["id"],
        company_id=row["company_id"],
        amount=MoneyView.of(row["amount"], currency, locale),
        bonus=MoneyView.of(row["bonus_amount"], currency, locale),
        status=row["status"],
        source=row["source"],
        payment_method_type=row["payment_method_type"],
        reference=row["reference"],
        initiated_by=row["initiated_by"],
        stripe_payment_intent_id=row["stripe_payment_intent_id"],
        stripe_checkout_session_id=row["stripe_checkout_session_id"],
        stripe_charge_id=row["stripe_charge_id"],
        stripe_payment_method_id=row["stripe_payment_method_id"],
        checkout_url=row["checkout_url"],
        refunded=MoneyView.of(row["refunded_amount"], currency, locale),
        failure_reason=row["failure_reason"],
        failure_code=row["failure_code"],
        created_at=row["created_at"],
        succeeded_at=row["succeeded_at"],
    )


def _topup_query() -> Any:
    return select(topups, companies.c.locale).join(companies, companies.c.id == topups.c.company_id)


def list_topups(
    conn: Connection, filters: TopupFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[TopupView]:
    filters = filters or TopupFilters()
    query = _topup_query()
    query = narrowed(
        query,
        equal=[(topups.c.company_id, filters.company_id)],
        among=[(topups.c.status, filters.statuses), (topups.c.source, filters.methods)],
        period=(topups.c.created_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        topups.c.id,
        _topup,
        kind="topups",
        noun="top-up",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


def topup(conn: Connection, topup_id: int) -> TopupView:
    row = conn.execute(_topup_query().where(topups.c.id == topup_id)).mappings().first()
    if row is None:
        raise TopupNotFound(topup_id)
    return _topup(row)


def _refund(row: Any) -> TopupRefundView:
    currency, locale = row["currency"], row["locale"]
    return TopupRefundView(
        id=row["id"],
        topup_id=row["topup_id"],
        company_id=row["company_id"],
        amount=MoneyView.of(row["amount"], currency, locale),
        bonus_reversed=MoneyView.of(row["bonus_reversed"], currency, locale),
        status=row["status"],
        source=row["source"],
        reason=row["reason"],
        actor=row["actor"],
        stripe_refund_id=row["stripe_refund_id"],
        failure_reason=row["failure_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def list_topup_refunds(
    conn: Connection,
    filters: TopupRefundFilters | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[TopupRefundView]:
    filters = filters or TopupRefundFilters()
    query = select(topup_refunds, companies.c.locale).join(companies, companies.c.id == topup_refunds.c.company_id)
    query = narrowed(
        query,
        equal=[(topup_refunds.c.company_id, filters.company_id), (topup_refunds.c.topup_id, filters.topup_id)],
        among=[(topup_refunds.c.status, filters.statuses)],
        period=(topup_refunds.c.created_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        topup_refunds.c.id,
        _refund,
        kind="topup_refunds",
        noun="refund",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )


def _dispute(row: Any) -> DisputeView:
    return DisputeView(
        id=row["id"],
        stripe_dispute_id=row["stripe_dispute_id"],
        stripe_charge_id=row["stripe_charge_id"],
        topup_id=row["topup_id"],
        company_id=row["company_id"],
        amount=MoneyView.of(row["amount"], row["currency"], row["locale"]),
        status=row["status"],
        reason=row["reason"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )


def list_disputes(
    conn: Connection, filters: DisputeFilters | None = None, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[DisputeView]:
    filters = filters or DisputeFilters()
    query = select(disputes, companies.c.locale).join(companies, companies.c.id == disputes.c.company_id)
    query = narrowed(
        query,
        equal=[(disputes.c.company_id, filters.company_id)],
        among=[(disputes.c.status, filters.statuses)],
        period=(disputes.c.created_at, filters.since, filters.until),
    )
    return keyset_page(
        conn,
        query,
        disputes.c.id,
        _dispute,
        kind="disputes",
        noun="dispute",
        filters=filters,
        limit=limit,
        cursor=cursor,
        company_id=filters.company_id,
    )
