"""``billing worker`` keeps the statistics roll-ups: the test only writes billing data through the services and
watches the database; it never calls the job. The worker folds the journal every second
(``BILLING_JOB_STATISTICS_ROLLUPS_SECONDS=1``), and statistics read from its roll-ups equal the live ones.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from billing_core.bootstrap import build_services
from billing_core.db.tables import statistics_journal, statistics_rollup_state
from billing_core.money import Money
from billing_core.queries import statistics
from billing_core.queries.periods import Period
from tests.conftest import Clock, make_settings
from tests.support.processes import SELLER_ENV, WorkerProcess, clean_env


def test_the_worker_process_folds_the_journal_into_rollups_that_equal_the_live_statistics(
    database_url: str, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    svc = build_services(make_settings(database_url, timezone="Asia/Kolkata"), clock=clock)
    env = clean_env(
        DATABASE_URL=database_url,
        BILLING_TIMEZONE="Asia/Kolkata",
        BILLING_JOB_STATISTICS_ROLLUPS_SECONDS="1",
        **SELLER_ENV,
    )
    worker = WorkerProcess(tmp_path / "run", env, name="worker-rollups").start()

    def journal() -> int:
        return int(svc.db.read(lambda c: c.execute(select(func.count()).select_from(statistics_journal)).scalar()))

    def state() -> str | None:
        return svc.db.read(lambda c: c.execute(select(statistics_rollup_state.c.zone)).scalar())

    def wait_until_folded() -> None:
        deadline = time.monotonic() + 60
        while state() != "Asia/Kolkata" or journal():
            assert time.monotonic() < deadline and worker.running(), worker.log_tail()
            time.sleep(0.2)

    def stats(use_rollups: bool) -> statistics.PaymentStatistics:
        period = Period(start=date(2026, 11, 19), end=date(2026, 11, 21))
        return svc.db.read(
            lambda c: statistics.payment_statistics(
                c,
                period,
                timezone="Asia/Kolkata",
                default_currency="EUR",
                default_locale="de_DE",
                use_rollups=use_rollups,
            )
        )

    try:
        company = svc.companies.add(
            name="Praxis Weber", email="weber@example.com", actor="test", rate_per_minute=Decimal("0.42")
        ).id
        svc.topups.record_payment(company_id=company, amount=Money(5_000, "EUR"), reference="t1", actor="test")
        for n in range(20):
            svc.charging.charge_call(call_id=f"c{n}", company_id=company, duration_seconds=30 + n, started_at=clock.now)
        wait_until_folded()
        assert stats(True) == stats(False)
        assert stats(True).calls.count == 20 and stats(True).revenue.cents == 5_000

        clock.advance(hours=2)  # more after the first fold: a refund and new calls
        svc.refunds.refund_call(call_id="c3", amount=Money(5, "EUR"), reason="echo", actor="test")
        for n in range(20, 30):
            svc.charging.charge_call(call_id=f"c{n}", company_id=company, duration_seconds=60, started_at=clock.now)
        wait_until_folded()
        folded = stats(True)
        assert folded == stats(False)
        assert (folded.calls.count, folded.refunds.call_refunds, folded.active_companies) == (30, 1, 1)
    finally:
        worker.stop()
        svc.close()
