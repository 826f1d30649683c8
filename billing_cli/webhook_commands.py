"""``billing webhooks`` (serve, failed, replay, stats), ``billing worker`` and ``billing agents``."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import click

from billing_cli.main import (
    ID,
    AsciiInt,
    cursor_option,
    default_actor,
    emit,
    emit_page,
    handles_errors,
    script_json,
    services,
)
from billing_core.config import Settings
from billing_core.read_models.base import MAX_LIMIT
from billing_core.read_models.operations import WebhookFilters

if TYPE_CHECKING:
    from webhook_app.worker import Worker

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=AsciiInt(1, 65535), default=8001, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes; they share the database like any other replicas.",
)
@click.pass_context
def webhooks(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the webhook sidecar (with no sub-command), or operate its inbox."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from webhook_app.limits import MAX_HEADER_BYTES
    from webhook_app.logs import configure_logging

    Settings()  # bad configuration fails here, once, not in every server process
    configure_logging()
    uvicorn.run(
        "webhook_app.server:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # bounds the header block when uvicorn runs h11; webhook_app.limits applies it for httptools too
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


@webhooks.command()
@click.option("--all", "include_failed", is_flag=True, help="Also list events still being retried.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=MAX_LIMIT, show_default=True)
@cursor_option
@json_option
@handles_errors
def failed(include_failed: bool, limit: int, cursor: str | None, as_json: bool) -> None:
    """Dead-lettered events with their errors, oldest first (the reference's queue:failed)."""
    filters = WebhookFilters(statuses=("dead", "failed") if include_failed else ("dead",))
    with services() as svc:
        page = svc.queries.webhook_events(filters, limit=limit, cursor=cursor, oldest_first=True)

    def human() -> None:
        for e in page.items:
            click.echo(
                f"{e.id:>6}  {e.provider:<6} {e.event_type:<34} {e.status:<6} attempts {e.attempts}  "
                f"{e.last_error or ''}"
            )
        click.echo(f"{len(page.items)} event(s){' (more: see --cursor)' if page.has_more else ''}")

    emit_page(page, as_json, human)


@webhooks.command()
@click.argument("event_ids", type=ID, nargs=-1)
@click.option("--all-failed", is_flag=True, help="Replay every dead or failed event.")
@json_option
@handles_errors
def replay(event_ids: tuple[int, ...], all_failed: bool, as_json: bool) -> None:
    """Reprocess dead-lettered events now (the reference's queue:retry)."""
    if not event_ids and not all_failed:
        raise click.UsageError("give event ids or --all-failed")
    with services() as svc:
        outcomes = svc.webhooks.replay(None if all_failed else list(event_ids))
    rows = [{"event_id": o.event_id, "event_type": o.event_type, "status": o.status, "note": o.note} for o in outcomes]

    def human() -> None:
        for row in rows:
            click.echo(f"{row['event_id']}  {row['event_type']}: {row['status']} {row['note']}")
        click.echo(f"{len(rows)} replayed")

    emit(rows, as_json, human)
    if any(o.status in ("failed", "dead") for o in outcomes):
        sys.exit(1)


@webhooks.command()
@click.option("--hours", type=click.IntRange(1, 24 * 366), default=24, show_default=True)
@json_option
@handles_errors
def stats(hours: int, as_json: bool) -> None:
    """Webhook processing time per provider and type (receipt to processed: average and maximum)."""
    with services() as svc:
        rows = svc.queries.webhook_processing(hours=hours)
        backlog = svc.queries.webhook_backlog()

    def human() -> None:
        for r in rows:
            click.echo(
                f"{r.provider:<6} {r.event_type:<34} {r.count:>7}  avg {r.avg_seconds:.3f} s  max {r.max_seconds:.3f} s"
            )
        click.echo(f"backlog: {backlog or 'empty'}")

    emit({"processing_times": script_json(rows), "backlog": backlog}, as_json, human)


@click.command()
def worker() -> None:
    """Run a standalone worker: inbox retries and follow-ups, and every scheduled job (invoice PDFs, mail,
    alerts, auto top-up sweep, expiry of stale call holds). Run as many as needed; SIGTERM stops it after
    the step at hand."""
    import anyio

    from billing_core.bootstrap import build_services
    from webhook_app.logs import configure_logging
    from webhook_app.metrics import WebhookMetrics
    from webhook_app.worker import Worker

    configure_logging()
    built = build_services(Settings())
    try:
        anyio.run(_work_until_signalled, Worker(built, WebhookMetrics()))
    except KeyboardInterrupt:
        pass
    finally:
        built.close()


async def _work_until_signalled(worker: Worker) -> None:
    import anyio

    stop = anyio.Event()

    async def on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()
                return

    async with anyio.create_task_group() as group:
        group.start_soon(on_signal)
        await worker.run(stop=stop)
        group.cancel_scope.cancel()


@click.group()
def agents() -> None:
    """Which company a Retell agent's calls bill."""


@agents.command(name="add")
@click.argument("agent_id")
@click.option("--company", "company_id", type=ID, required=True)
@click.option("--actor", default=default_actor)
@handles_errors
def add_agent(agent_id: str, company_id: int, actor: str) -> None:
    with services() as svc:
        svc.companies.map_retell_agent(agent_id, company_id, actor=actor)
    click.echo(f"calls of {agent_id} bill company {company_id}")


@agents.command(name="list")
@json_option
@handles_errors
def list_agents(as_json: bool) -> None:
    with services() as svc:
        rows = svc.companies.retell_agents()

    def human() -> None:
        for agent_id, company_id in rows:
            click.echo(f"{agent_id}  company {company_id}")

    emit([{"agent_id": a, "company_id": c} for a, c in rows], as_json, human)
