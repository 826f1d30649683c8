"""The schema, as SQLAlchemy 2 typed declarative classes.

Money columns are BIGINT minor units next to a currency column. Services use these classes' tables
through lean Core statements on the hot paths; the ORM mapping documents the schema and serves the
shell commands and Alembic.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from billing_core.db.types import ExactDecimal, Id, UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[int]:
    return mapped_column(Id, primary_key=True, autoincrement=True)


def _company_fk(*, nullable: bool = False) -> Mapped[int]:
    return mapped_column(Id, ForeignKey("companies.id"), nullable=nullable)


def _money(*, default: int | None = 0, nullable: bool = False) -> Mapped[int]:
    server_default = None if default is None else text(str(default))
    return mapped_column(BigInteger, nullable=nullable, default=default, server_default=server_default)


def _currency() -> Mapped[str]:
    return mapped_column(String(3), nullable=False)


def _timestamp(*, nullable: bool = False) -> Mapped[datetime]:
    return mapped_column(UtcDateTime(), nullable=nullable)


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    currency: Mapped[str] = _currency()
    locale: Mapped[str] = mapped_column(String(16), default="de_DE")
    vat_id: Mapped[str | None] = mapped_column(String(32))
    tax_number: Mapped[str | None] = mapped_column(String(32))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    prepaid_billing_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("1"))
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


class PrepaidBalance(Base):
    """One row per company: the stored balance (always the sum of its ledger) and its settings."""

    __tablename__ = "prepaid_balances"

    id: Mapped[int] = _id()
    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id"), unique=True)
    currency: Mapped[str] = _currency()
    balance: Mapped[int] = _money()
    reserved_balance: Mapped[int] = _money()
    low_balance_threshold: Mapped[int] = _money()
    auto_topup_enabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    auto_topup_threshold: Mapped[int] = _money()
    auto_topup_amount: Mapped[int] = _money()
    auto_topup_daily_limit: Mapped[int] = mapped_column(Integer, server_default=text("2"))
    auto_topup_monthly_limit: Mapped[int | None] = _money(default=None, nullable=True)
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(64))
    auto_topup_consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    auto_topup_disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # Bumped by every guard that counts rows and then inserts without moving money (see ledger.write_guard),
    # so two such transactions on two Galera nodes write the same row and the second fails certification.
    guard_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


class BalanceTopup(Base):
    __tablename__ = "balance_topups"
    __table_args__ = (
        Index("ix_balance_topups_company_created", "company_id", "created_at"),
        # payment statistics: covering indexes for top-ups created / credited in a period
        Index("ix_balance_topups_created_stats", "created_at", "currency", "status", "source", "amount"),
        Index("ix_balance_topups_succeeded_stats", "succeeded_at", "currency", "status", "amount", "bonus_amount"),
    )

    id: Mapped[int] = _id()
    company_id: Mapped[int] = _company_fk()
    amount: Mapped[int] = _money(default=None)
    bonus_amount: Mapped[int] = _money()
    currency: Mapped[str] = _currency()
    status: Mapped[str] = mapped_column(String(24), index=True)
    source: Mapped[str] = mapped_column(String(24))
    reference: Mapped[str | None] = mapped_column(String(200))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(64), index=True)
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(64))
    payment_method_type: Mapped[str | None] = mapped_column(String(32))
    checkout_url: Mapped[str | None] = mapped_column(String(1000))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    invoice_id: Mapped[int | None] = mapped_column(Id)
    initiated_by: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(191), unique=True)
    refunded_amount: Mapped[int] = _money()
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()
    succeeded_at: Mapped[datetime | None] = _timestamp(nullable=True)


class BalanceTransaction(Base):
    """The ledger: append-only, each entry chained to the previous one through balance_before/after."""

    __tablename__ = "balance_transactions"
    __table_args__ = (
        Index("ix_balance_transactions_company_id_id", "company_id", "id"),
        Index("ix_balance_transactions_reference", "reference_type", "reference_id"),
        Index("ix_balance_transactions_type_created", "type", "created_at"),
    )

    id: Mapped[int] = _id()
    company_id: Mapped[int] = _company_fk()
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = _money(default=None)
    currency: Mapped[str] = _currency()
    balance_before: Mapped[int] = _money(default=None)
    balance_after: Mapped[int] = _money(default=None)
    description: Mapped[str] = mapped_column(String(500))
    reference_type: Mapped[str | None] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(191), unique=True)
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _timestamp()


class TopupRefund(Base):
    """A refund of a top-up back to the card or account, through Stripe (two-phase: pending, then settled)."""

    __tablename__ = "topup_refunds"
    __table_args__ = (Index("ix_topup_refunds_created", "created_at"),)

    id: Mapped[int] = _id()
    topup_id: Mapped[int] = mapped_column(Id, ForeignKey("balance_topups.id"), index=True)
    company_id: Mapped[int] = _company_fk()
    amount: Mapped[int] = _money(default=None)
    bonus_reversed: Mapped[int] = _money()
    currency: Mapped[str] = _currency()
    status: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(16))  # ours | stripe_dashboard
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(200))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(191), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


class Notification(Base):
    """The mail outbox: rows written in the billing transaction, sent later by the worker."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = _id()
    company_id: Mapped[int | None] = mapped_column(Id, index=True)
    kind: Mapped[str] = mapped_column(String(48))
    recipient: Mapped[str] = mapped_column(String(16))  # company | admin
    payload: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(191), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime] = _timestamp()
    created_at: Mapped[datetime] = _timestamp()
    sent_at: Mapped[datetime | None] = _timestamp(nullable=True)


class WebhookEvent(Base):
    """The inbox: every verified webhook, stored before it is acknowledged, processed exactly once."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event"),
        Index("ix_webhook_events_status_due", "status", "next_attempt_at"),
        # processing-time statistics read only this index
        Index("ix_webhook_events_received_stats", "received_at", "provider", "event_type", "processed_at"),
        Index("ix_webhook_events_type", "event_type"),
    )

    id: Mapped[int] = _id()
    provider: Mapped[str] = mapped_column(String(16))  # stripe | retell
    event_id: Mapped[str] = mapped_column(String(191))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))
    status: Mapped[str] = mapped_column(String(16))  # pending | processed | ignored | failed | dead
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    next_attempt_at: Mapped[datetime] = _timestamp()
    received_at: Mapped[datetime] = _timestamp()
    processed_at: Mapped[datetime | None] = _timestamp(nullable=True)


class RetellAgent(Base):
    """Which company a Retell agent answers for, when a call carries no company id in its metadata."""

    __tablename__ = "retell_agents"

    id: Mapped[int] = _id()
    agent_id: Mapped[str] = mapped_column(String(128), unique=True)
    company_id: Mapped[int] = _company_fk()
    created_at: Mapped[datetime] = _timestamp()


class Dispute(Base):
    """A card dispute on a top-up: its amount is held back until Stripe closes it."""

    __tablename__ = "disputes"

    id: Mapped[int] = _id()
    stripe_dispute_id: Mapped[str] = mapped_column(String(64), unique=True)
    stripe_charge_id: Mapped[str] = mapped_column(String(64))
    topup_id: Mapped[int] = mapped_column(Id, ForeignKey("balance_topups.id"))
    company_id: Mapped[int] = _company_fk()
    amount: Mapped[int] = _money(default=None)
    currency: Mapped[str] = _currency()
    status: Mapped[str] = mapped_column(String(16))  # open | won | lost
    reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _timestamp()
    closed_at: Mapped[datetime | None] = _timestamp(nullable=True)


class Invoice(Base):
    """An invoice (top-up) or credit note (top-up refund): the document as issued, its number and its PDF.

    ``document`` holds everything printed (seller, buyer, lines, totals) as JSON, so a re-render never
    changes a number or an amount.
    """

    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_company_issued", "company_id", "issued_at"),)

    id: Mapped[int] = _id()
    number: Mapped[str] = mapped_column(String(32), unique=True)
    source_key: Mapped[str] = mapped_column(String(64), unique=True)  # topup:<id> | topup_refund:<id>
    kind: Mapped[str] = mapped_column(String(16))  # invoice | credit_note
    company_id: Mapped[int] = _company_fk()
    topup_id: Mapped[int] = mapped_column(Id, ForeignKey("balance_topups.id"))
    topup_refund_id: Mapped[int | None] = mapped_column(Id, ForeignKey("topup_refunds.id"))
    corrects_invoice_id: Mapped[int | None] = mapped_column(Id, ForeignKey("invoices.id"))
    currency: Mapped[str] = _currency()
    net_amount: Mapped[int] = _money(default=None)
    vat_amount: Mapped[int] = _money(default=None)
    gross_amount: Mapped[int] = _money(default=None)
    vat_rate: Mapped[Decimal] = mapped_column(ExactDecimal(5, 2))
    vat_category: Mapped[str] = mapped_column(String(4))
    document: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"))
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime] = _timestamp()
    rendered_at: Mapped[datetime | None] = _timestamp(nullable=True)


class JobSchedule(Base):
    """One row per scheduled worker job: whoever moves ``next_run_at`` ahead in a transaction runs it.

    ``claimed_by`` is the claim's token (host, process, random part); the claimant's finish is fenced on
    it, so a worker whose lease ran out cannot move the schedule of a newer claim.
    """

    __tablename__ = "job_schedule"

    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    next_run_at: Mapped[datetime] = _timestamp()
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    last_started_at: Mapped[datetime | None] = _timestamp(nullable=True)
    last_finished_at: Mapped[datetime | None] = _timestamp(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500))


class InvoiceCounter(Base):
    """The next number of a series in a year, taken under a row lock: gap-free, also on Galera."""

    __tablename__ = "invoice_counters"
    __table_args__ = (UniqueConstraint("series", "year", name="uq_invoice_counters_series_year"),)

    id: Mapped[int] = _id()
    series: Mapped[str] = mapped_column(String(8))
    year: Mapped[int] = mapped_column(Integer)
    last_number: Mapped[int] = mapped_column(Integer)


class CallCharge(Base):
    __tablename__ = "call_charges"
    __table_args__ = (
        Index("ix_call_charges_company_charged", "company_id", "charged_at"),
        # payment statistics over a period read only this index
        Index(
            "ix_call_charges_charged_stats", "charged_at", "currency", "company_id", "billed_seconds", "amount_charged"
        ),
        Index("ix_call_charges_refund_status", "refund_status"),
    )

    id: Mapped[int] = _id()
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    company_id: Mapped[int] = _company_fk()
    duration_seconds: Mapped[int] = mapped_column(Integer)
    billed_seconds: Mapped[int] = mapped_column(Integer)
    rate_per_minute: Mapped[Decimal] = mapped_column(ExactDecimal())
    billing_increment_seconds: Mapped[int] = mapped_column(Integer)
    amount_charged: Mapped[int] = _money(default=None)
    currency: Mapped[str] = _currency()
    refund_status: Mapped[str] = mapped_column(String(16), server_default=text("'none'"))
    refunded_amount: Mapped[int] = _money()
    call_started_at: Mapped[datetime] = _timestamp()
    call_ended_at: Mapped[datetime | None] = _timestamp(nullable=True)
    charged_at: Mapped[datetime] = _timestamp()
    caller_number: Mapped[str | None] = mapped_column(String(32))


class CallReservation(Base):
    """Balance held while a call runs; released (or rejected when nothing was available)."""

    __tablename__ = "call_reservations"
    __table_args__ = (
        Index("ix_call_reservations_company_status", "company_id", "status"),
        Index("ix_call_reservations_status_created", "status", "created_at"),  # the worker's expiry of stale holds
    )

    id: Mapped[int] = _id()
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    company_id: Mapped[int] = _company_fk()
    amount: Mapped[int] = _money(default=None)
    currency: Mapped[str] = _currency()
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _timestamp()
    released_at: Mapped[datetime | None] = _timestamp(nullable=True)


class BonusRule(Base):
    __tablename__ = "bonus_rules"

    id: Mapped[int] = _id()
    company_id: Mapped[int | None] = _company_fk(nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = _currency()
    min_topup_amount: Mapped[int] = _money(default=None)
    max_topup_amount: Mapped[int | None] = _money(default=None, nullable=True)
    bonus_percent: Mapped[Decimal] = mapped_column(ExactDecimal(7, 4))
    bonus_fixed_amount: Mapped[int] = _money()
    max_bonus_amount: Mapped[int | None] = _money(default=None, nullable=True)
    valid_from: Mapped[datetime | None] = _timestamp(nullable=True)
    valid_until: Mapped[datetime | None] = _timestamp(nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("1"))
    created_at: Mapped[datetime] = _timestamp()


class StatisticsJournal(Base):
    """What changed in the payment statistics, one signed row per fact a base row gains or loses.

    Written only by triggers (migration 0010) in the transaction that changes the base row, so it is exact
    and never a shared row: each change appends its own rows. The worker folds rows into
    ``statistics_rollups`` and deletes them in one transaction (see :mod:`billing_core.services.rollups`);
    a statistics query reads the roll-ups plus the rows still here.
    """

    __tablename__ = "statistics_journal"
    __table_args__ = (Index("ix_statistics_journal_fact_at", "fact", "currency", "at"),)

    id: Mapped[int] = _id()
    fact: Mapped[str] = mapped_column(String(16))  # calls | call_refunds | topups_created | topups_credited | ...
    at: Mapped[datetime] = _timestamp()  # the fact's time (charged_at, created_at, succeeded_at)
    currency: Mapped[str] = _currency()
    company_id: Mapped[int | None] = mapped_column(Id)
    k1: Mapped[str] = mapped_column(String(32), server_default=text("''"))  # status / provider
    k2: Mapped[str] = mapped_column(String(64), server_default=text("''"))  # source / event type
    n: Mapped[int] = mapped_column(BigInteger)  # +1 or -1
    a: Mapped[int] = mapped_column(BigInteger)  # an amount (or billed seconds), signed like n
    b: Mapped[int] = mapped_column(BigInteger)  # a second amount (bonus, charged), signed like n


class StatisticsRollup(Base):
    """Sums of journal rows per local day of one time zone (the worker's BILLING_TIMEZONE), fact and key."""

    __tablename__ = "statistics_rollups"
    __table_args__ = (
        UniqueConstraint("zone", "fact", "day", "currency", "k1", "k2", name="uq_statistics_rollups_key"),
    )

    id: Mapped[int] = _id()
    zone: Mapped[str] = mapped_column(String(64))
    fact: Mapped[str] = mapped_column(String(16))
    day: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = _currency()
    k1: Mapped[str] = mapped_column(String(32))
    k2: Mapped[str] = mapped_column(String(64))
    n: Mapped[int] = mapped_column(BigInteger)
    a: Mapped[int] = mapped_column(BigInteger)
    b: Mapped[int] = mapped_column(BigInteger)
    # calls: the distinct companies of the day, sorted 64-bit little-endian ids (active companies are not sums)
    companies: Mapped[bytes | None] = mapped_column(LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"))


class StatisticsRollupState(Base):
    """One row: the time zone the roll-ups are kept in. Written only by the roll-up job (never by a charge)."""

    __tablename__ = "statistics_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    zone: Mapped[str] = mapped_column(String(64))
    rebuilt_at: Mapped[datetime] = _timestamp()
    folded_at: Mapped[datetime] = _timestamp()
    folded_rows: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class BillingRate(Base):
    """A company's per-minute rate from ``effective_from`` on; calls use the rate in force at their start."""

    __tablename__ = "billing_rates"
    __table_args__ = (UniqueConstraint("company_id", "effective_from", name="uq_billing_rates_company_from"),)

    id: Mapped[int] = _id()
    company_id: Mapped[int] = _company_fk()
    rate_per_minute: Mapped[Decimal] = mapped_column(ExactDecimal())
    billing_increment_seconds: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    effective_from: Mapped[datetime] = _timestamp()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _timestamp()


class AuditLog(Base):
    """Who changed what: every setting change and money movement made by a person or a tool."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_company_created", "company_id", "created_at"),
        Index("ix_audit_log_actor", "actor"),
        Index("ix_audit_log_action", "action"),
        Index("ix_audit_log_actor_created", "actor", "created_at"),
    )

    id: Mapped[int] = _id()
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    company_id: Mapped[int | None] = mapped_column(Id)
    details: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp()
    # Set on the rows of MCP tool calls: how the call ended, and the money it moved (for per-caller daily limits).
    outcome: Mapped[str | None] = mapped_column(String(24))
    amount: Mapped[int | None] = _money(default=None, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3))


class ApiToken(Base):
    """A bearer token for the MCP server over HTTP; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(200))
    company_id: Mapped[int | None] = _company_fk(nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _timestamp()
    expires_at: Mapped[datetime | None] = _timestamp(nullable=True)
    revoked_at: Mapped[datetime | None] = _timestamp(nullable=True)


class ToolConfirmation(Base):
    """A single-use confirmation token of a write tool: bound to the caller, the tool and its exact arguments."""

    __tablename__ = "tool_confirmations"

    id: Mapped[int] = _id()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(64))
    arguments_hash: Mapped[str] = mapped_column(String(64))
    preview: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp()
    expires_at: Mapped[datetime] = _timestamp()
    used_at: Mapped[datetime | None] = _timestamp(nullable=True)
    result: Mapped[str | None] = mapped_column(Text)


class ToolApproval(Base):
    """A write above the configured limits, waiting for a second person (four-eyes) to approve or reject it."""

    __tablename__ = "tool_approvals"
    __table_args__ = (Index("ix_tool_approvals_status_created", "status", "created_at"),)

    id: Mapped[int] = _id()
    tool: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(Text)
    arguments_hash: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    company_id: Mapped[int | None] = mapped_column(Id)
    amount: Mapped[int | None] = _money(default=None, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3))
    preview: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected | expired | failed
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp()
    expires_at: Mapped[datetime] = _timestamp()
    decided_at: Mapped[datetime | None] = _timestamp(nullable=True)


class ToolIdempotency(Base):
    """The first outcome of a write tool call per (caller, idempotency key), returned again on a retry."""

    __tablename__ = "tool_idempotency"

    id: Mapped[int] = _id()
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(64))
    arguments_hash: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp()


# The Core tables, for the lean statements of the services.
companies = cast(Table, Company.__table__)
balances = cast(Table, PrepaidBalance.__table__)
topups = cast(Table, BalanceTopup.__table__)
ledger = cast(Table, BalanceTransaction.__table__)
call_charges = cast(Table, CallCharge.__table__)
reservations = cast(Table, CallReservation.__table__)
bonus_rules = cast(Table, BonusRule.__table__)
billing_rates = cast(Table, BillingRate.__table__)
audit_log = cast(Table, AuditLog.__table__)
topup_refunds = cast(Table, TopupRefund.__table__)
notifications = cast(Table, Notification.__table__)
webhook_events = cast(Table, WebhookEvent.__table__)
retell_agents = cast(Table, RetellAgent.__table__)
disputes = cast(Table, Dispute.__table__)
invoices = cast(Table, Invoice.__table__)
invoice_counters = cast(Table, InvoiceCounter.__table__)
job_schedule = cast(Table, JobSchedule.__table__)
api_tokens = cast(Table, ApiToken.__table__)
tool_confirmations = cast(Table, ToolConfirmation.__table__)
tool_approvals = cast(Table, ToolApproval.__table__)
tool_idempotency = cast(Table, ToolIdempotency.__table__)
statistics_journal = cast(Table, StatisticsJournal.__table__)
statistics_rollups = cast(Table, StatisticsRollup.__table__)
statistics_rollup_state = cast(Table, StatisticsRollupState.__table__)
