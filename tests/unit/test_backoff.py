"""The one backoff rule used by webhook retries, mail retries and transaction retries."""

from __future__ import annotations

from datetime import timedelta

from billing_core.backoff import backoff
from billing_core.db.errors import retry_wait


def test_the_wait_doubles_from_the_base_and_stops_at_the_cap():
    waits = [backoff(n, base=timedelta(minutes=1), cap=timedelta(hours=1)) for n in range(1, 9)]
    assert [w.total_seconds() / 60 for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_huge_attempt_count_still_waits_the_cap():
    assert backoff(10_000, base=timedelta(seconds=2), cap=timedelta(minutes=30)) == timedelta(minutes=30)


def test_jitter_spreads_the_wait_around_the_doubled_base():
    waits = {backoff(3, base=timedelta(seconds=1), cap=timedelta(minutes=1), jitter=0.5) for _ in range(50)}
    assert all(timedelta(seconds=2) <= w <= timedelta(seconds=6) for w in waits)
    assert len(waits) > 1


def test_transactions_retry_within_milliseconds_and_never_wait_more_than_three_quarters_of_a_second():
    assert 0.005 <= retry_wait(1) <= 0.015
    assert all(retry_wait(n) <= 0.75 for n in range(1, 40))
