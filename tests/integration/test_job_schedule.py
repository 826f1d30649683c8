"""The worker's database-backed schedule: each job runs once per interval, however many workers claim it."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from tests.conftest import Clock

JOBS = {
    "invoice_pdfs": timedelta(seconds=10),
    "mail_outbox": timedelta(seconds=10),
    "low_balance_alerts": timedelta(minutes=5),
    "expire_holds": timedelta(minutes=5),
}
POLL = timedelta(seconds=1)


def claimed_names(services: Services, jobs: dict[str, timedelta] = JOBS) -> list[str]:
    return sorted(claim.job for claim in services.schedule.claim_due(jobs, retry_after=POLL).claims)


def test_every_job_is_due_on_first_sight_and_not_again_while_it_runs(services: Services):
    assert claimed_names(services) == sorted(JOBS)
    assert claimed_names(services) == []


def test_a_finished_job_is_due_again_one_interval_after_it_finished(services: Services, clock: Clock):
    claims = {c.job: c for c in services.schedule.claim_due(JOBS, retry_after=POLL).claims}
    clock.advance(seconds=3)
    finished_at = clock.now
    assert services.schedule.finish(claims["invoice_pdfs"]) == finished_at + timedelta(seconds=10)
    clock.advance(seconds=9)
    assert claimed_names(services) == []
    clock.advance(seconds=1)
    assert claimed_names(services) == ["invoice_pdfs"]


def test_next_check_is_the_earliest_next_run(services: Services, clock: Clock):
    claims = services.schedule.claim_due(JOBS, retry_after=POLL).claims
    for claim in claims:
        services.schedule.finish(claim)
    claimed = services.schedule.claim_due(JOBS, retry_after=POLL)
    assert claimed.claims == ()
    assert claimed.next_check_at == clock.now + timedelta(seconds=10)


def test_a_worker_that_died_mid_job_loses_the_job_when_its_lease_ends_and_its_late_finish_changes_nothing(
    services: Services, clock: Clock
):
    [stale] = services.schedule.claim_due({"invoice_pdfs": timedelta(seconds=10)}, retry_after=POLL).claims
    clock.advance(minutes=9)
    assert claimed_names(services, {"invoice_pdfs": timedelta(seconds=10)}) == []
    clock.advance(minutes=1)
    [fresh] = services.schedule.claim_due({"invoice_pdfs": timedelta(seconds=10)}, retry_after=POLL).claims
    assert fresh.token != stale.token
    assert services.schedule.finish(stale, error="late") is None
    assert services.schedule.finish(fresh) is not None
    [state] = services.schedule.states()
    assert state.name == "invoice_pdfs" and state.last_error is None and state.claimed_by == fresh.token


def test_a_failed_job_records_its_error_and_is_retried_after_its_interval(services: Services, clock: Clock):
    [claim] = services.schedule.claim_due({"mail_outbox": timedelta(seconds=10)}, retry_after=POLL).claims
    services.schedule.finish(claim, error="database_unavailable: try again")
    [state] = services.schedule.states()
    assert state.last_error == "database_unavailable: try again"
    clock.advance(seconds=10)
    assert claimed_names(services, {"mail_outbox": timedelta(seconds=10)}) == ["mail_outbox"]


def claim_together(workers: list[Services]) -> Counter[str]:
    """Every worker claims (and finishes) the due jobs at the same moment; how often each job was claimed."""
    start = threading.Barrier(len(workers))
    claimed: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claim(worker: Services) -> None:
        try:
            start.wait(timeout=30)
            result = worker.schedule.claim_due(JOBS, retry_after=POLL)
            for item in result.claims:
                worker.schedule.finish(item)
            with lock:
                claimed.update(item.job for item in result.claims)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return claimed


def test_workers_claiming_the_schedule_concurrently_run_each_job_once_per_interval(
    settings: Settings, clock: Clock
):
    workers = [build_services(settings, clock=clock) for _ in range(4)]
    try:
        for round_ in range(5):
            expected = sorted(JOBS) if round_ in (0, 4) else ["invoice_pdfs", "mail_outbox"]
            assert claim_together(workers) == Counter(expected), f"round {round_}"
            clock.advance(seconds=10 if round_ < 3 else 300)
    finally:
        for worker in workers:
            worker.close()
