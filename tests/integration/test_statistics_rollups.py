"""Payment statistics from the roll-ups plus the journal equal the live aggregation over the base tables.

Every check compares ``payment_statistics`` read through the roll-ups with the same call aggregating the base
tables (``use_rollups=False``), model for model, on SQLite and MariaDB: across daylight-saving days and odd
UTC offsets, before the job ever ran, after it ran, with rows arriving after the fold (late rows with old
times), status changes of folded top-ups and refunds, several currencies, one company and various periods.
The job is called directly here (the worker process runs it in tests/e2e/test_statistics_rollups_worker.py).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import statistics_journal, statistics_rollups, webhook_events
from billing_core.errors import BillingError
from billing_core.money import Money
from billing_core.queries import statistics
from billing_core.queries.periods import Period
from billing_core.queries.rollups import rolled_up_rows
from billing_core.services.topup_refunds import TopupRefundService
from tests.conftest import Clock, make_settings
from tests.integration.test_queries import add_company, add_webhook, call, failed_topup, pay

ZONES = ["Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham"]
DST_END = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # Europe's summer time ends at 01:00 UTC


def services(database_url: str, clock: Clock, zone: str) -> Services:
    return build_services(make_settings(database_url, timezone=zone), clock=clock)


def read(svc: Services, period: Period, *, use_rollups: bool, **filters: Any) -> statistics.PaymentStatistics:
    settings = svc.ctx.settings
    return svc.db.read(
        lambda conn: statistics.payment_statistics(
            conn,
            period,
            timezone=settings.timezone,
            default_currency=settings.default_currency,
            default_locale=settings.default_locale,
            use_rollups=use_rollups,
            **filters,
        )
    )


def rollups_in_use(svc: Services, period: Period) -> bool:
    bounds = period.day_bounds(svc.ctx.settings.timezone)
    found = svc.db.read(
        lambda conn: rolled_up_rows(
            conn, first_day=period.start, bounds=bounds, timezone=svc.ctx.settings.timezone, currency="EUR"
        )
    )
    return found is not None


PERIODS = [
    Period(start=date(2026, 10, 24), end=date(2026, 10, 26)),  # around the end of summer time
    Period(start=date(2026, 10, 25), end=date(2026, 10, 25)),  # the 25-hour day alone
    Period(start=date(2026, 10, 1), end=date(2026, 11, 30)),
    Period(start=date(2026, 1, 1), end=date(2026, 12, 31)),
]


def assert_rollups_equal_live(svc: Services, *, companies: dict[str, int]) -> None:
    for period in PERIODS:
        for currency in ("EUR", "USD"):
            assert read(svc, period, use_rollups=True, currency=currency) == read(
                svc, period, use_rollups=False, currency=currency
            ), (period, currency)
        for company in companies.values():
            assert read(svc, period, use_rollups=True, company_id=company) == read(
                svc, period, use_rollups=False, company_id=company
            )


def journal_rows(svc: Services) -> int:
    return int(svc.db.read(lambda conn: conn.execute(select(func.count()).select_from(statistics_journal)).scalar()))


def world(svc: Services, clock: Clock) -> dict[str, Any]:
    """Payments, failures, calls, refunds and webhooks spread over the end of summer time, in two currencies."""
    clock.now = DST_END - timedelta(days=3)
    weber = add_company(svc, "Praxis Weber", rate_per_minute=Decimal("0.60"))
    physio = add_company(svc, "Physio Nord", rate_per_minute=Decimal("0.30"))
    dollars = svc.companies.add(name="US Clinic", email="us@example.com", actor="test", currency="USD").id
    moments = [DST_END + timedelta(hours=h, minutes=m) for h in range(-30, 40, 5) for m in (0, 15, 44)]
    for n, moment in enumerate(moments):
        clock.now = moment
        company = (weber, physio)[n % 2]
        if n % 3 == 0:
            pay(svc, company, 1_000 + n, f"pay-{n}")
        if n % 4 == 1:
            failed_topup(svc, company, 700 + n, f"fail-{n}", source="auto_topup" if n % 8 == 1 else "checkout")
        call(svc, company, f"call-{n}", 30 + 7 * n, moment)
        if n % 5 == 0:
            call(svc, dollars, f"usd-{n}", 60 + n, moment)
        add_webhook(svc, f"evt-{n}", "call_ended" if n % 2 else "payment_intent.succeeded", moment, 5 + n * 3)
    svc.refunds.refund_call(call_id="call-2", amount=Money(10, "EUR"), reason="echo", actor="test")
    pending = svc.topups.create_pending(
        company_id=weber, amount=Money(3_000, "EUR"), source="checkout", initiated_by="test", idempotency_key="later"
    )
    return {"companies": {"weber": weber, "physio": physio, "dollars": dollars}, "pending": pending.id}


@pytest.mark.parametrize("zone", ZONES)
def test_rollups_equal_the_live_aggregation_before_and_after_folds_late_rows_and_status_changes(
    database_url: str, clock: Clock, zone: str
) -> None:
    svc = services(database_url, clock, zone)
    try:
        made = world(svc, clock)
        companies = made["companies"]
        period = PERIODS[0]
        assert not rollups_in_use(svc, period)  # the job never ran: the base tables answer
        assert_rollups_equal_live(svc, companies=companies)

        first = svc.rollups.run()
        assert first.rebuilt and journal_rows(svc) == 0 and rollups_in_use(svc, period)
        assert_rollups_equal_live(svc, companies=companies)

        # after the fold: a folded pending top-up succeeds, a folded credited one is refunded (status moves),
        # a call charged at an old time and a webhook received long ago arrive (late rows), nothing folded yet
        clock.now = DST_END + timedelta(days=2)
        svc.topups.settle(made["pending"])
        credited = pay(svc, companies["physio"], 9_900, "refund-me")
        clock.now = DST_END - timedelta(hours=20)  # an old event time, inserted after everything else
        call(svc, companies["weber"], "late-call", 90, clock.now)
        add_webhook(svc, "evt-late", "call_ended", clock.now, 77)
        assert journal_rows(svc) > 0
        assert_rollups_equal_live(svc, companies=companies)

        second = svc.rollups.run()
        assert not second.rebuilt and second.folded > 0 and journal_rows(svc) == 0
        assert_rollups_equal_live(svc, companies=companies)

        clock.now = DST_END + timedelta(days=3)  # the folded credited top-up is refunded in Stripe's dashboard
        refunds = TopupRefundService(svc.ctx, None, svc.topups)
        svc.db.write(
            lambda conn: refunds.record_stripe_refund_in(
                conn,
                topup=svc.topups.get(credited),
                stripe_refund_id="re_1",
                amount=9_900,
                status="succeeded",
                our_refund_id=None,
            )
        )
        assert_rollups_equal_live(svc, companies=companies)
        svc.rollups.run()
        assert_rollups_equal_live(svc, companies=companies)
        stats = read(svc, Period(start=date(2026, 10, 20), end=date(2026, 10, 31)), use_rollups=True)
        assert {s.status for s in stats.topups_by_status} >= {"refunded", "succeeded", "failed"}
        assert stats.refunds.topup_refunds == 1 and stats.refunds.topup_refunded.cents == 9_900
    finally:
        svc.close()


def test_a_webhook_that_loses_its_timing_is_timed_from_the_base_table(database_url: str, clock: Clock) -> None:
    svc = services(database_url, clock, "Europe/Berlin")
    try:
        world(svc, clock)
        svc.rollups.run()
        slowest = svc.db.read(
            lambda conn: conn.execute(select(webhook_events.c.id).order_by(webhook_events.c.id.desc()).limit(1))
        ).scalar()
        # no service does this; an operator might: the maximum in the roll-ups can no longer be trusted
        svc.db.write(
            lambda conn: conn.execute(
                update(webhook_events).where(webhook_events.c.id == slowest).values(processed_at=None, status="dead")
            )
        )
        assert_rollups_equal_live(svc, companies={})
        svc.rollups.run()
        assert_rollups_equal_live(svc, companies={})
    finally:
        svc.close()


def test_a_new_time_zone_rebuilds_the_rollups(database_url: str, clock: Clock) -> None:
    berlin = services(database_url, clock, "Europe/Berlin")
    kolkata = services(database_url, clock, "Asia/Kolkata")
    try:
        made = world(berlin, clock)
        berlin.rollups.run()
        assert not rollups_in_use(kolkata, PERIODS[0])  # kept in Berlin's days: Kolkata reads the base tables
        assert_rollups_equal_live(kolkata, companies=made["companies"])
        assert kolkata.rollups.run().rebuilt
        assert rollups_in_use(kolkata, PERIODS[0]) and not rollups_in_use(berlin, PERIODS[0])
        assert_rollups_equal_live(kolkata, companies=made["companies"])
        assert_rollups_equal_live(berlin, companies=made["companies"])
    finally:
        berlin.close()
        kolkata.close()


def test_two_workers_folding_at_once_count_nothing_twice(database_url: str, clock: Clock) -> None:
    first = services(database_url, clock, "Europe/Berlin")
    second = services(database_url, clock, "Europe/Berlin")
    try:
        made = world(first, clock)
        first.rollups.run()
        clock.now = DST_END + timedelta(days=1)
        weber = made["companies"]["weber"]
        for n in range(300):
            call(first, weber, f"burst-{n}", 10 + n, clock.now)
        start = threading.Barrier(2)
        errors: list[str] = []

        def fold(svc: Services) -> None:
            start.wait()
            for _ in range(5):
                try:
                    svc.rollups.run()
                except BillingError as error:  # the loser of a conflict rolls back; its rows wait for the next run
                    errors.append(error.code)

        threads = [threading.Thread(target=fold, args=(svc,)) for svc in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first.rollups.run()
        assert journal_rows(first) == 0
        assert_rollups_equal_live(first, companies=made["companies"])
        calls = first.db.read(
            lambda conn: conn.execute(
                select(func.sum(statistics_rollups.c.n)).where(statistics_rollups.c.fact == "calls")
            ).scalar()
        )
        assert calls == 42 + 9 + 300  # every EUR and USD call of the world and the burst, once
    finally:
        first.close()
        second.close()
