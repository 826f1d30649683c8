"""On a Galera cluster the statistics triggers are not installed (MariaDB 10.11 can lose a table's triggers for
good on a node when Galera aborts a statement that is opening it: tests/integration/
test_mariadb_killed_trigger_load.py), the worker's job keeps no roll-ups, and whole-business statistics
aggregate the base tables, exactly, on every node."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, text

from billing_core.bootstrap import Services, build_services
from billing_core.db import migrate
from billing_core.db.statistics_triggers import create_triggers
from billing_core.db.tables import statistics_journal, statistics_rollup_state
from billing_core.queries.periods import Period
from tests.conftest import Clock, make_settings
from tests.integration.test_statistics_rollups import read

pytestmark = [pytest.mark.mariadb_only, pytest.mark.slow]

STARTED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def statistics_triggers(svc: Services) -> int:
    query = text(
        "SELECT COUNT(*) FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE 'trg_statistics_%'"
    )
    return int(svc.db.read(lambda conn: conn.execute(query).scalar_one()))


def count(svc: Services, table) -> int:  # type: ignore[no-untyped-def]
    return int(svc.db.read(lambda conn: conn.execute(select(func.count()).select_from(table)).scalar_one()))


def test_a_cluster_has_no_statistics_triggers_and_its_statistics_come_exactly_from_the_base_tables(
    galera_urls: list[str],
) -> None:
    clock = Clock(STARTED)
    nodes = [build_services(make_settings(url, timezone="Europe/Berlin"), clock=clock) for url in galera_urls]
    try:
        charger = nodes[2]
        company = charger.companies.add(
            name="Praxis Weber", email="weber@example.com", actor="test", rate_per_minute=Decimal("0.42")
        ).id
        for n in range(50):
            charger.charging.charge_call(
                call_id=f"a{n}", company_id=company, duration_seconds=30 + n, started_at=STARTED
            )
        run = nodes[0].rollups.run()
        assert (run.rebuilt, run.folded) == (False, 0)
        period = Period(start=date(2026, 11, 19), end=date(2026, 11, 21))
        for svc in nodes:
            assert statistics_triggers(svc) == 0
            assert count(svc, statistics_journal) == count(svc, statistics_rollup_state) == 0
            statistics = read(svc, period, use_rollups=True)
            assert statistics == read(svc, period, use_rollups=False)
            assert statistics.calls.count == 50 and statistics.active_companies == 1
    finally:
        for svc in nodes:
            svc.close()


def test_the_upgrade_drops_statistics_triggers_and_roll_ups_left_on_a_cluster(galera_urls: list[str]) -> None:
    """A schema migrated before 0011 (or on a server that became a Galera node) still has them."""
    svc = build_services(make_settings(galera_urls[0]))
    try:

        def leave_behind(conn) -> None:  # type: ignore[no-untyped-def]
            for statement in create_triggers("mysql"):
                conn.execute(text(statement))
            conn.execute(
                insert(statistics_rollup_state).values(id=1, zone="UTC", rebuilt_at=STARTED, folded_at=STARTED)
            )

        svc.db.write(leave_behind)
        assert statistics_triggers(svc) > 0
        migrate.downgrade(galera_urls[0], "0010")
        migrate.upgrade(galera_urls[0])
        assert statistics_triggers(svc) == 0
        assert count(svc, statistics_rollup_state) == 0
    finally:
        svc.close()
