"""The worker: processes due inbox events, and runs the scheduled jobs of :data:`JOBS`.

It runs inside the webhook process by default (``BILLING_WEBHOOK_WORKER``) or as ``billing worker``
processes when scaled out. Two loops run side by side, so a slow job never holds back the inbox:

- the inbox: every poll, due events are claimed row by row (``FOR UPDATE SKIP LOCKED``), so any number of
  workers share them;
- the schedule: each job has a row in ``job_schedule``; a worker runs a job only after moving its
  ``next_run_at`` ahead in a transaction (see :mod:`billing_core.services.schedule`), so with several
  workers each job still runs once per interval (``BILLING_JOB_<NAME>_SECONDS``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from billing_core.bootstrap import Services
from billing_core.concurrency import exit_with_parent
from billing_core.config import Settings
from billing_core.errors import BillingError
from billing_core.services.webhooks.inbox import EventOutcome, FollowUp
from webhook_app.metrics import WebhookMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    interval: Callable[[Settings], int]  # seconds
    run: Callable[[Worker], Awaitable[int]]  # returns how many things it did, for the log
    available: Callable[[Services], bool] = lambda _services: True


# -- the jobs: one function each ---------------------------------------------------------------------


async def render_invoice_pdfs(worker: Worker) -> int:
    """PDFs of newly issued invoices and credit notes, in a process pool; each first rendering queues its mail."""
    svc = worker.services
    rendered = await svc.call.blocking(svc.invoice_files.render_pending, executor=worker.pdf_pool())
    return len(rendered)


async def send_mail(worker: Worker) -> int:
    """The outbox, batch after batch until it has nothing due (only with SMTP_URL)."""
    mailer = worker.services.mailer
    assert mailer is not None
    sent = 0
    while batch := await mailer.send_due(limit=50):
        sent += sum(1 for delivery in batch if delivery.status == "sent")
        if len(batch) < 50:
            break
    return sent


async def queue_low_balance_alerts(worker: Worker) -> int:
    svc = worker.services
    return await svc.call(svc.alerts.queue_low_balance_alerts)


async def queue_failure_rate_alert(worker: Worker) -> int:
    svc = worker.services
    return int(await svc.call(svc.alerts.queue_failure_rate_alert))


async def sweep_auto_topups(worker: Worker) -> int:
    """Catch the auto top-ups whose follow-up was lost (a crash right after the charge)."""
    companies = await worker.services.call(worker.services.stripe.auto_topup.due_companies)
    await worker.follow_up(tuple(FollowUp("auto_topup", company) for company in companies))
    return len(companies)


async def expire_holds(worker: Worker) -> int:
    """Release call holds older than the longest call (``BILLING_MAX_CALL_SECONDS``), with an audit entry."""
    svc = worker.services
    return len(await svc.call(svc.charging.expire_holds))


async def fold_statistics(worker: Worker) -> int:
    """Fold the statistics journal into the daily roll-ups that payment statistics read.

    In a worker thread: a run reads and sums up to 20,000 journal rows a batch (two rows per charged call), CPU
    work that in the event loop stalled every request of the process, 100-250 ms at a time for the rows of
    eight seconds of webhooks; a thread hands the loop the interpreter every few milliseconds."""
    svc = worker.services
    return (await svc.call.blocking(svc.rollups.run)).folded


JOBS: tuple[Job, ...] = (
    Job("invoice_pdfs", lambda s: s.job_invoice_pdfs_seconds, render_invoice_pdfs),
    Job("mail_outbox", lambda s: s.job_mail_outbox_seconds, send_mail, lambda svc: svc.mailer is not None),
    Job("low_balance_alerts", lambda s: s.job_low_balance_alerts_seconds, queue_low_balance_alerts),
    Job("failure_rate_alert", lambda s: s.job_failure_rate_alert_seconds, queue_failure_rate_alert),
    Job(
        "auto_topup_sweep",
        lambda s: s.job_auto_topup_sweep_seconds,
        sweep_auto_topups,
        lambda svc: svc.stripe_services is not None,
    ),
    Job("expire_holds", lambda s: s.job_expire_holds_seconds, expire_holds),
    Job("statistics_rollups", lambda s: s.job_statistics_rollups_seconds, fold_statistics),
)


class Worker:
    def __init__(
        self,
        services: Services,
        metrics: WebhookMetrics,
        *,
        poll_seconds: float = 0.5,
        jobs: tuple[Job, ...] = JOBS,
    ) -> None:
        self.services = services
        self._metrics = metrics
        self._poll = poll_seconds
        self._jobs = {job.name: job for job in jobs if job.available(services)}
        self._next_check: datetime | None = None
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, *, stop: anyio.Event | None = None) -> None:
        stop = stop or anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._repeat, "inbox", self.process_inbox, stop)
                group.start_soon(self._repeat, "schedule", self.run_due_jobs, stop)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    async def _repeat(self, loop: str, step: Callable[[], Awaitable[None]], stop: anyio.Event) -> None:
        while not stop.is_set():
            try:
                await step()
            except BillingError as error:  # database down: keep trying, quietly
                log.warning("worker cycle failed", extra={"loop": loop, "error": error.code})
            except Exception as error:  # never let the loop die
                log.error("worker cycle failed", extra={"loop": loop, "error": type(error).__name__})
            with anyio.move_on_after(self._poll):
                await stop.wait()

    # -- the inbox --------------------------------------------------------------------------------

    async def process_inbox(self) -> None:
        outcomes = await self.services.call(self.services.webhooks.process_due)
        for outcome in outcomes:
            self.observe(outcome)
            await self.follow_up(outcome.follow_ups)
        self._metrics.set_backlog(await self.services.call(self.services.webhooks.backlog))

    def observe(self, outcome: EventOutcome) -> None:
        self._metrics.outcomes.labels(outcome.provider, outcome.event_type, outcome.status).inc()
        if outcome.processed_at and outcome.received_at:
            seconds = (outcome.processed_at - outcome.received_at).total_seconds()
            self._metrics.latency.labels(outcome.provider).observe(max(seconds, 0))
        if outcome.status in ("failed", "dead"):
            log.warning(
                "webhook event not processed",
                extra={
                    "provider": outcome.provider,
                    "event_type": outcome.event_type,
                    "event_id": outcome.event_id,
                    "status": outcome.status,
                    "reason": outcome.note,
                },
            )

    async def follow_up(self, follow_ups: tuple[FollowUp, ...]) -> None:
        stripe = self.services.stripe_services
        for item in follow_ups:
            if item.kind != "auto_topup" or stripe is None:
                continue
            try:
                outcome = await self.services.call.blocking(stripe.auto_topup.trigger, item.company_id)
                log.info(
                    "auto top-up check",
                    extra={"company_id": item.company_id, "triggered": outcome.triggered, "reason": outcome.reason},
                )
            except BillingError as error:
                log.warning("auto top-up check failed", extra={"company_id": item.company_id, "error": error.code})

    # -- the schedule -----------------------------------------------------------------------------

    async def run_due_jobs(self) -> None:
        """Claim the jobs that are due, run them one after the other, and book their next runs."""
        svc = self.services
        if not self._jobs or (self._next_check is not None and svc.ctx.clock() < self._next_check):
            return
        intervals = {name: timedelta(seconds=job.interval(svc.ctx.settings)) for name, job in self._jobs.items()}
        claimed = await svc.call(svc.schedule.claim_due, intervals, retry_after=timedelta(seconds=self._poll))
        next_check = claimed.next_check_at
        for claim in claimed.claims:
            error: str | None = None
            try:
                done = await self._jobs[claim.job].run(self)
                log.info("job finished", extra={"job": claim.job, "count": done})
            except BillingError as failure:
                error = f"{failure.code}: {failure.message}"
                log.warning("job failed", extra={"job": claim.job, "error": failure.code})
            except Exception as failure:  # one broken job must not stop the others
                error = type(failure).__name__
                log.error("job failed", extra={"job": claim.job, "error": error})
            next_run = await svc.call(svc.schedule.finish, claim, error=error)
            if next_run is not None:
                next_check = min(next_check, next_run)
        self._next_check = next_check

    def pdf_pool(self) -> ProcessPoolExecutor:
        """Made on first use; fresh processes (spawn), never forks of a process that runs threads."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.services.ctx.settings.pdf_processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool
