"""Resources an application loads as context: a balance, the latest transactions, an invoice PDF, daily revenue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from billing_core.errors import BillingError
from mcp_server.app import BillingApp
from mcp_server.caller import READ, Caller


@contextmanager
def resource_errors() -> Iterator[None]:
    try:
        yield
    except ToolError as error:
        raise ResourceError(str(error)) from None
    except BillingError as error:
        raise ResourceError(f"{error.code}: {error.message}") from None


def _company(app: BillingApp, company_id: str) -> int:
    if not company_id.isdigit() or int(company_id) < 1:
        raise ResourceError("company_id must be a positive whole number")
    caller: Caller = app.caller()
    caller.require(READ)
    cid = caller.company(int(company_id))
    assert cid is not None
    return cid


def register_resources(server: MCPServer, app: BillingApp) -> None:
    @server.resource("billing://companies/{company_id}/balance", name="company_balance", mime_type="application/json")
    async def company_balance(company_id: str) -> str:
        """A company's balance, reserved and available amounts and low-balance threshold (JSON)."""
        with resource_errors():
            cid = _company(app, company_id)
            view = await app.services.call(app.services.queries.balance, cid)
            return view.model_dump_json()

    @server.resource(
        "billing://companies/{company_id}/transactions", name="company_transactions", mime_type="application/json"
    )
    async def company_transactions(company_id: str) -> str:
        """A company's latest 50 ledger entries, newest first (JSON page; list_transactions pages further)."""
        from billing_core.read_models.ledger import LedgerFilters
        from mcp_server.read_tools import as_data  # the read models: loaded on the first read, not at start

        with resource_errors():
            cid = _company(app, company_id)
            page = await app.services.call(
                lambda: app.services.queries.ledger_entries(LedgerFilters(company_id=cid), limit=50)
            )
            return as_data(page).model_dump_json()

    @server.resource("billing://invoices/{number}", name="invoice_pdf", mime_type="application/pdf")
    async def invoice_pdf(number: str) -> bytes:
        """The PDF of an invoice or credit note (PDF/A-3 with its Factur-X XML)."""
        with resource_errors():
            caller = app.caller()
            caller.require(READ)
            detail = await app.services.call(app.services.queries.invoice, number)
            caller.owns(detail.company_id, f"invoice {number} does not exist")
            return await app.services.call.blocking(app.services.invoice_files.pdf, number)

    @server.resource("billing://reports/daily-revenue", name="daily_revenue", mime_type="text/csv")
    async def daily_revenue() -> str:
        """Revenue and activity per day of the last 30 days in the seller's time zone (CSV)."""
        from mcp_server.reports import build_report, report_csv

        with resource_errors():
            caller = app.caller()
            caller.require(READ)
            period = app.services.queries.period(30)
            report = await app.services.call(lambda: build_report(app.services, "detailed", period, caller.company_id))
            return report_csv(report)
