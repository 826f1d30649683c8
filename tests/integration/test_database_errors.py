"""The database boundary on the real drivers: what escapes Database.write/read is typed, nothing is kept."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from billing_core.bootstrap import build_services
from billing_core.db.database import Database
from billing_core.db.tables import balances, companies
from billing_core.errors import DatabaseNotMigrated, DatabaseRejected, DatabaseUnavailable
from tests.conftest import empty_mariadb, make_settings
from tests.integration.helpers import new_company


def daily_limit(services, company_id: int) -> int:
    return services.db.read(
        lambda conn: conn.execute(
            select(balances.c.auto_topup_daily_limit).where(balances.c.company_id == company_id)
        ).scalar_one()
    )


def test_a_number_out_of_range_is_rejected_for_good_and_changes_nothing(services):
    company = new_company(services)
    before = daily_limit(services, company.id)

    with pytest.raises(DatabaseRejected) as rejected:
        services.db.write(
            lambda conn: conn.execute(
                update(balances).where(balances.c.company_id == company.id).values(auto_topup_daily_limit=2**70)
            )
        )

    assert rejected.value.retryable is False
    assert daily_limit(services, company.id) == before


def test_a_text_too_long_for_its_column_is_rejected_on_mariadb(mariadb_template_url, clock):
    empty_mariadb(mariadb_template_url)
    services = build_services(make_settings(mariadb_template_url), clock=clock)
    try:
        company = new_company(services)
        rename = update(companies).where(companies.c.id == company.id).values(name="x" * 201)
        with pytest.raises(DatabaseRejected) as rejected:
            services.db.write(lambda conn: conn.execute(rename))
        assert "1406" in rejected.value.message
        assert services.companies.show(company.id).name == company.name
    finally:
        services.close()


def test_a_missing_table_tells_the_operator_to_run_the_upgrade(services):
    with pytest.raises(DatabaseNotMigrated) as missing:
        services.db.read(lambda conn: conn.execute(text("SELECT id FROM table_of_a_later_migration")).all())
    assert "billing db upgrade" in missing.value.message


def test_a_unique_key_conflict_stays_an_integrity_error_for_the_services(services):
    company = new_company(services)
    other = new_company(services, name="Autohaus Berger")
    services.db.write(
        lambda conn: conn.execute(
            update(companies).where(companies.c.id == company.id).values(stripe_customer_id="cus_1")
        )
    )

    with pytest.raises(IntegrityError):
        services.db.write(
            lambda conn: conn.execute(
                update(companies).where(companies.c.id == other.id).values(stripe_customer_id="cus_1")
            )
        )


def test_an_unreachable_server_is_unavailable_and_worth_a_retry_later():
    db = Database("mysql+pymysql://billing:secret-pw@127.0.0.1:1/billing", pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as unavailable:
            db.read(lambda conn: conn.execute(text("SELECT 1")).all())
    finally:
        db.dispose()
    assert unavailable.value.retryable is True
    assert "secret-pw" not in unavailable.value.message
