"""The worker: retries due inbox events, runs follow-ups (auto top-up), renders invoice PDFs in a process
pool, sends the mail outbox, and sweeps for missed auto top-ups, low balances and payment failure spikes.

It runs inside the webhook process by default (``BILLING_WEBHOOK_WORKER``) or as ``billing worker``
processes when scaled out; the inbox's ``FOR UPDATE SKIP LOCKED`` claim keeps several of them apart.
"""

from __future__ import annotations

import logging
import time

import anyio

from billing_core.bootstrap import Services
from billing_core.errors import BillingError
from billing_core.services.webhooks.inbox import EventOutcome, FollowUp
from webhook_app.metrics import WebhookMetrics

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self, services: Services, metrics: WebhookMetrics, *, poll_seconds: float = 0.5, sweep_seconds: float = 60
    ) -> None:
        self._services = services
        self._metrics = metrics
        self._poll = poll_seconds
        self._sweep_every = sweep_seconds

    async def run(self, *, stop: anyio.Event | None = None) -> None:
        next_sweep = 0.0
        while stop is None or not stop.is_set():
            try:
                outcomes = await self._services.call(self._services.webhooks.process_due)
                for outcome in outcomes:
                    self.observe(outcome)
                    await self.follow_up(outcome.follow_ups)
                self._metrics.set_backlog(await self._services.call(self._services.webhooks.backlog))
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._sweep_every
                    await self.sweep_auto_topups()
            except BillingError as error:  # database down: keep trying, quietly
                log.warning("worker cycle failed", extra={"error": error.code})
            except Exception as error:  # never let the loop die
                log.error("worker cycle failed", extra={"error": type(error).__name__})
            if stop is None:
                await anyio.sleep(self._poll)
            else:
                with anyio.move_on_after(self._poll):
                    await stop.wait()

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
        stripe = self._services.stripe_services
        for item in follow_ups:
            if item.kind != "auto_topup" or stripe is None:
                continue
            try:
                outcome = await self._services.call(stripe.auto_topup.trigger, item.company_id)
                log.info(
                    "auto top-up check",
                    extra={"company_id": item.company_id, "triggered": outcome.triggered, "reason": outcome.reason},
                )
            except BillingError as error:
                log.warning("auto top-up check failed", extra={"company_id": item.company_id, "error": error.code})

    async def sweep_auto_topups(self) -> None:
        """Catch the auto top-ups whose follow-up was lost (a crash right after the charge)."""
        if self._services.stripe_services is None:
            return
        companies = await self._services.call(self._services.stripe.auto_topup.due_companies)
        await self.follow_up(tuple(FollowUp("auto_topup", company) for company in companies))
