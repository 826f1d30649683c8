"""The webhook sidecar: ``build_app(services)`` returns the Starlette application.

A verified event is stored in the inbox (and, when it can be, processed in the same transaction) before
the 2xx goes out. Bad input is a 4xx with a short reason and stores nothing; a database outage is a 503
so the sender retries; nothing ever answers with a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing_core.bootstrap import Services
from billing_core.errors import BillingError, DatabaseError, DatabaseRejected, InvalidInput
from billing_core.services.webhooks.inbox import InboundEvent
from billing_core.services.webhooks.retell_events import event_identity
from webhook_app.metrics import WebhookMetrics
from webhook_app.signatures import SignatureError, verify_retell, verify_stripe
from webhook_app.worker import Worker

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def refuse(metrics: WebhookMetrics, provider: str, status: int, reason: str) -> JSONResponse:
    metrics.rejected.labels(provider, reason).inc()
    return JSONResponse({"error": reason}, status_code=status)


def stripe_identity(data: dict[str, Any]) -> tuple[str, str]:
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise InvalidInput("a Stripe event needs 'id' and 'type'")
    return event_id, event_type


def build_app(services: Services, *, run_worker: bool | None = None) -> Starlette:
    settings = services.ctx.settings
    metrics = WebhookMetrics()
    worker = Worker(services, metrics)
    tolerance = settings.webhook_tolerance_seconds

    def receiver(
        provider: str,
        secret: Callable[[], str],
        verify: Callable[..., None],
        header: str,
        identify: Callable[[dict[str, Any]], tuple[str, str]],
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            key = secret()
            if not key:
                log.error("webhook secret not configured", extra={"provider": provider})
                return refuse(metrics, provider, 503, "webhook receiver not configured")
            try:
                body = await read_body(request)
            except BodyTooLarge:
                return refuse(metrics, provider, 413, "body larger than 1 MiB")
            try:
                verify(body, request.headers.get(header), key, tolerance=tolerance)
            except SignatureError as error:
                return refuse(metrics, provider, 400, error.reason)
            try:
                data = json.loads(body)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                event_id, event_type = identify(data)
            except (ValueError, UnicodeDecodeError):
                return refuse(metrics, provider, 400, "malformed JSON")
            except InvalidInput as error:
                return refuse(metrics, provider, 400, error.message)
            metrics.received.labels(provider, event_type).inc()
            event = InboundEvent(provider, event_id, event_type, data)
            try:
                outcome = await services.call(services.webhooks.receive, event, body)
            except DatabaseRejected as error:  # the event holds a value the database cannot store: never fits
                return refuse(metrics, provider, 400, error.message)
            except DatabaseError:  # unavailable or not migrated: a 5xx, so the sender delivers again later
                metrics.rejected.labels(provider, "database unavailable").inc()
                return JSONResponse(
                    {"error": "database unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"}
                )
            except BillingError as error:
                return refuse(metrics, provider, 400, error.message)
            worker.observe(outcome)
            task = BackgroundTask(worker.follow_up, outcome.follow_ups) if outcome.follow_ups else None
            return JSONResponse({"received": True, "status": outcome.status}, background=task)

        return endpoint

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ok = await services.call(services.db.ping)
        return JSONResponse({"database": "ok" if ok else "unreachable"}, status_code=200 if ok else 503)

    async def metrics_endpoint(_: Request) -> Response:
        try:
            metrics.set_backlog(await services.call(services.webhooks.backlog))
        except BillingError:
            pass  # the counters are still worth serving while the database is away
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        start_worker = settings.run_worker_in_webhook_process if run_worker is None else run_worker
        async with anyio.create_task_group() as group:
            stop = anyio.Event()
            if start_worker:
                group.start_soon(lambda: worker.run(stop=stop))
            try:
                yield
            finally:
                stop.set()

    routes = [
        Route(
            "/api/stripe/webhook",
            receiver(
                "stripe",
                lambda: settings.stripe_webhook_secret.get_secret_value(),
                verify_stripe,
                "stripe-signature",
                stripe_identity,
            ),
            methods=["POST"],
        ),
        Route(
            "/api/retell/webhook",
            receiver(
                "retell",
                lambda: settings.retell_api_key.get_secret_value(),
                verify_retell,
                "x-retell-signature",
                event_identity,
            ),
            methods=["POST"],
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]

    async def server_error(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", extra={"error": type(exc).__name__})
        return JSONResponse({"error": "internal error"}, status_code=500)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: server_error})
    app.state.metrics = metrics
    app.state.worker = worker
    return app
