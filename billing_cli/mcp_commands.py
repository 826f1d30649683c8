"""``billing mcp`` (the MCP server), ``billing tokens``, ``billing approvals`` and ``billing audit``."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from typing import Any

import click

from billing_cli.main import default_actor, emit, emit_page, handles_errors, parse_datetime, services

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def mcp(transport: str, host: str, port: int) -> None:
    """Serve the MCP server: over stdio for a local client (logs go to stderr), or over HTTP at /mcp."""
    from mcp_server.settings import McpSettings

    # force: the group put a NullHandler on the root logger, which would make this call a no-op
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    settings = McpSettings()
    if transport == "stdio":
        from mcp_server.server import build_server
        from mcp_server.services_on_demand import ServicesOnDemand

        # The client lists the tools first: the database and the services are built on the first call.
        on_demand = ServicesOnDemand.from_environment()
        try:
            build_server(on_demand, settings=settings).run("stdio")
        finally:
            on_demand.close()
        return
    import uvicorn

    from billing_core.bootstrap import build_services
    from mcp_server.http import build_http_app

    built = build_services()
    try:
        app = build_http_app(built, settings=settings, host=host, port=port)
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5)
    finally:
        built.close()


@click.group()
def tokens() -> None:
    """Bearer tokens for the MCP server over HTTP."""


@tokens.command("create")
@click.option("--name", required=True, help="Who uses the token (a person or an assistant); shown in the audit log.")
@click.option(
    "--scopes",
    required=True,
    help="Comma or space separated: billing:read billing:refund billing:adjust billing:approve billing:admin.",
)
@click.option("--company", "company_id", type=click.IntRange(min=1), help="Bind the token to this company.")
@click.option("--expires", callback=parse_datetime, help="ISO 8601 with a timezone, e.g. 2027-01-01T00:00:00+00:00.")
@json_option
@handles_errors
def create_token(name: str, scopes: str, company_id: int | None, expires: datetime | None, as_json: bool) -> None:
    """Create a token. It is shown once, here; only its hash is stored."""
    from billing_core.services.api_tokens import ApiTokenService

    with services() as built:
        token, view = ApiTokenService(built.ctx).create(
            name=name, scopes=scopes, actor=default_actor(), company_id=company_id, expires_at=expires
        )
    emit(
        {**view.as_json(), "token": token},
        as_json,
        lambda: click.echo(
            f"token {view.id} ({view.name}, {' '.join(view.scopes)}): {token}\nstore it now: it is not shown again"
        ),
    )


@tokens.command("list")
@json_option
@handles_errors
def list_tokens(as_json: bool) -> None:
    """Every token with its scopes and state (never the token itself)."""
    from billing_core.services.api_tokens import ApiTokenService

    with services() as built:
        views = ApiTokenService(built.ctx).list()
        now = built.ctx.clock()

    def human() -> None:
        for v in views:
            state = "revoked" if v.revoked_at else ("active" if v.active(now) else "expired")
            company = f" company {v.company_id}" if v.company_id else ""
            click.echo(f"{v.id:>4} {v.prefix}… {v.name} [{' '.join(v.scopes)}]{company} {state}")

    emit([v.as_json() for v in views], as_json, human)


@tokens.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
@json_option
@handles_errors
def revoke_token(token_id: int, as_json: bool) -> None:
    """Revoke a token (servers stop accepting it within seconds)."""
    from billing_core.services.api_tokens import ApiTokenService

    with services() as built:
        view = ApiTokenService(built.ctx).revoke(token_id, actor=default_actor())
    emit(view.as_json(), as_json, lambda: click.echo(f"token {view.id} ({view.name}) revoked"))


@click.group()
def approvals() -> None:
    """Four-eyes requests filed by MCP tools above the configured limits."""


def _approval_line(a: Any) -> str:
    from billing_core.money import Money

    amount = f" {Money(a.amount, a.currency).to_decimal()} {a.currency}" if a.amount is not None else ""
    return f"{a.id:>4} {a.status:<9} {a.tool}{amount} by {a.requested_by}: {a.preview.get('action', '')[:120]}"


@approvals.command("list")
@click.option("--company", "company_id", type=click.IntRange(min=1))
@json_option
@handles_errors
def list_approvals(company_id: int | None, as_json: bool) -> None:
    """Requests waiting for a decision."""
    from billing_core.services.approvals import ApprovalService

    with services() as built:
        items = ApprovalService(built.ctx).pending(company_id=company_id, limit=500)

    def human() -> None:
        for a in items:
            click.echo(_approval_line(a))

    emit([a.as_json() for a in items], as_json, human)


def _decide(approval_id: int, approve: bool, reason: str | None, as_json: bool) -> None:
    from mcp_server.app import BillingApp
    from mcp_server.approval_tools import execute_approved
    from mcp_server.caller import Caller
    from mcp_server.settings import McpSettings

    with services() as built:
        app = BillingApp(built, McpSettings(), Caller(default_actor(), frozenset()))
        decided = app.approvals.decide(approval_id, approve=approve, decided_by=default_actor(), reason=reason)
        if decided.status == "approved":
            decided = execute_approved(app, decided)
    emit(decided.as_json(), as_json, lambda: click.echo(_approval_line(decided)))
    if decided.status == "failed":
        sys.exit(1)


@approvals.command("approve")
@click.argument("approval_id", type=click.IntRange(min=1))
@click.option("--reason", help="Recorded with the decision.")
@json_option
@handles_errors
def approve(approval_id: int, reason: str | None, as_json: bool) -> None:
    """Approve a request: its write runs now, exactly as requested. Not for the requester."""
    _decide(approval_id, True, reason, as_json)


@approvals.command("reject")
@click.argument("approval_id", type=click.IntRange(min=1))
@click.option("--reason", help="Recorded with the decision.")
@json_option
@handles_errors
def reject(approval_id: int, reason: str | None, as_json: bool) -> None:
    """Reject a request: nothing is changed."""
    _decide(approval_id, False, reason, as_json)


@click.command()
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", help="The cursor printed after the previous page.")
@click.option("--actor", help="Only this caller's entries.")
@click.option("--tool", help="Only calls of this MCP tool.")
@click.option("--company", "company_id", type=click.IntRange(min=1))
@json_option
@handles_errors
def audit(
    limit: int, cursor: str | None, actor: str | None, tool: str | None, company_id: int | None, as_json: bool
) -> None:
    """The audit log, newest first: every MCP tool call and every change made through the CLI or services."""
    from billing_core.read_models.operations import AuditFilters
    from billing_core.services.tool_calls import TOOL_CALL_ACTION

    filters = AuditFilters(
        actor=actor, action=TOOL_CALL_ACTION if tool else None, entity_id=tool, company_id=company_id
    )
    with services() as built:
        page = built.queries.audit_log(filters, limit=limit, cursor=cursor)

    def human() -> None:
        for r in page.items:
            what = f"{r.action} {r.entity_id or ''}".strip()
            amount = f" {r.amount.formatted}" if r.amount else ""
            click.echo(
                f"{r.created_at.isoformat(timespec='seconds')} {r.actor} {what} {r.outcome or ''}{amount}".rstrip()
            )

    emit_page(page, as_json, human)
