"""Two replicas folding the statistics journal at once on a real 3-node Galera cluster count nothing twice.

The state row's ``FOR UPDATE`` holds only on the node that runs it: two folds on two nodes find out about each
other at commit, when the second to certify fails (a deadlock error) and leaves its rows for the next run.
Charges keep arriving on the third node meanwhile: the write path appends journal rows, never a shared row.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import statistics_journal
from billing_core.errors import BillingError
from billing_core.queries.periods import Period
from tests.conftest import Clock, make_settings
from tests.integration.test_statistics_rollups import read

pytestmark = [pytest.mark.mariadb_only, pytest.mark.slow]


def test_folds_on_two_nodes_while_a_third_charges_equal_the_live_statistics(galera_urls: list[str]) -> None:
    clock = Clock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    nodes: list[Services] = [
        build_services(make_settings(url, timezone="Europe/Berlin"), clock=clock) for url in galera_urls
    ]
    try:
        charger = nodes[2]
        company = charger.companies.add(
            name="Praxis Weber", email="weber@example.com", actor="test", rate_per_minute=Decimal("0.42")
        ).id
        for n in range(50):
            charger.charging.charge_call(
                call_id=f"a{n}", company_id=company, duration_seconds=30 + n, started_at=clock.now
            )
        nodes[0].rollups.run()
        start = threading.Barrier(3)
        conflicts: list[str] = []

        def fold(svc: Services) -> None:
            start.wait(timeout=30)
            for _ in range(10):
                try:
                    svc.rollups.run()
                except BillingError as error:
                    conflicts.append(error.code)

        def charge() -> None:
            start.wait(timeout=30)
            for n in range(150):
                charger.charging.charge_call(
                    call_id=f"b{n}", company_id=company, duration_seconds=60, started_at=clock.now
                )

        threads = [threading.Thread(target=fold, args=(svc,)) for svc in nodes[:2]]
        threads.append(threading.Thread(target=charge))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        nodes[1].rollups.run()
        left = nodes[0].db.read(lambda c: c.execute(select(func.count()).select_from(statistics_journal)).scalar())
        assert left == 0
        period = Period(start=date(2026, 11, 19), end=date(2026, 11, 21))
        for svc in nodes:
            rolled = read(svc, period, use_rollups=True)
            assert rolled == read(svc, period, use_rollups=False)
            assert rolled.calls.count == 200 and rolled.active_companies == 1
    finally:
        for svc in nodes:
            svc.close()
