"""Hot-path statements run on the driver's cursor (billing_core.db.direct) store and read values exactly as
``conn.execute`` does, on both databases; what they cannot run the same way is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, create_engine, insert, select, update

from billing_core.db.direct import DirectStatement
from billing_core.db.tables import balances, billing_rates, call_charges
from billing_core.services.charging import INSERT_CHARGE
from tests.integration.helpers import new_company

RATE_AND_SWITCH = DirectStatement(
    select(billing_rates.c.rate_per_minute, billing_rates.c.effective_from, balances.c.auto_topup_enabled)
    .join(balances, balances.c.company_id == billing_rates.c.company_id)
    .where(billing_rates.c.company_id == bindparam("company_id"))
    .order_by(billing_rates.c.effective_from.desc())
)


def test_a_row_written_directly_reads_back_through_core_with_the_same_values(services, clock):
    firm = new_company(services, funded="10.00")
    started = datetime(2026, 11, 2, 8, 59, 30, 123456, tzinfo=UTC)
    values = {
        "call_id": "direct-1",
        "company_id": firm.id,
        "duration_seconds": 30,
        "billed_seconds": 30,
        "rate_per_minute": Decimal("0.4217"),
        "billing_increment_seconds": 1,
        "amount_charged": 21,
        "currency": "EUR",
        "call_started_at": started,
        "call_ended_at": None,
        "charged_at": clock.now,
        "refund_status": "none",
        "refunded_amount": 0,
        "caller_number": None,
    }
    charge_id = services.db.write(lambda conn: INSERT_CHARGE.insert(conn, values))
    row = services.db.read(
        lambda conn: conn.execute(select(call_charges).where(call_charges.c.id == charge_id)).mappings().one()
    )
    assert {key: row[key] for key in values} == values


def test_a_row_written_through_core_reads_back_directly_with_python_types(services, clock):
    firm = new_company(services, funded="10.00")
    since = clock.now - timedelta(days=3, microseconds=7)

    def write_then_read(conn):
        conn.execute(
            insert(billing_rates).values(
                company_id=firm.id,
                rate_per_minute=Decimal("0.5"),
                billing_increment_seconds=6,
                effective_from=since,
                created_at=clock.now,
            )
        )
        conn.execute(update(balances).where(balances.c.company_id == firm.id).values(auto_topup_enabled=True))
        return RATE_AND_SWITCH.first(conn, {"company_id": firm.id})

    row = services.db.write(write_then_read)
    assert row.rate_per_minute == Decimal("0.5") and isinstance(row.rate_per_minute, Decimal)
    assert row.effective_from == since and row.effective_from.tzinfo is UTC
    assert row.auto_topup_enabled is True


def test_nothing_found_is_none(services):
    assert services.db.read(lambda conn: RATE_AND_SWITCH.first(conn, {"company_id": 999_999})) is None


def test_a_statement_that_needs_a_python_side_default_is_refused():
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("kind", String(8), default="x"))
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn, pytest.raises(ValueError, match="no Python-side defaults"):
        DirectStatement(insert(table), column_keys=["id"]).insert(conn, {"id": 1})


@pytest.mark.parametrize("params", [{"id": 1}, {"id": 1, "kind": "a", "note": "b"}], ids=["missing", "extra"])
def test_parameters_other_than_the_statement_takes_are_refused_before_anything_is_sent(params):
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("kind", String(8)))
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="do not match"):
            DirectStatement(insert(table), column_keys=["id", "kind"]).insert(conn, params)
        assert conn.execute(select(table)).all() == []
