"""The app as uvicorn builds it in each of its worker processes (``billing webhooks --workers N``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from billing_core.bootstrap import build_services
from billing_core.config import Settings
from webhook_app.app import build_app
from webhook_app.logs import configure_logging


def create_app() -> Starlette:
    """One process's sidecar: its own services and database pool, closed when the process stops."""
    configure_logging()
    services = build_services(Settings())
    app = build_app(services)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Starlette) -> AsyncIterator[None]:
        try:
            async with inner(app_):
                yield
        finally:
            services.close()

    app.router.lifespan_context = lifespan
    return app
