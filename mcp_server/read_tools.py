"""The read tools: thin adapters from tool arguments to the read side (``billing_core.queries``).

Every answer is a read model of the read side (money as cents, currency and formatted text; lists as cursor
pages with ``has_more``). A company-bound caller's company replaces whatever company id it passes.
Text that customers or webhooks control is length-capped on the way out.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent, TextResourceContents, ToolAnnotations
from pydantic import BaseModel, Field

from billing_core.errors import CompanyNotFound
from billing_core.read_models.base import MoneyView, Page
from billing_core.read_models.companies import BalanceOverview, CompanyMatch, LowBalanceCompany, LowBalanceFilters
from billing_core.read_models.invoices import InvoiceDetail, InvoiceFilters, InvoiceSummary
from billing_core.read_models.ledger import CallChargeView, LedgerEntryView, LedgerFilters
from billing_core.read_models.operations import WebhookEventView, WebhookFilters
from billing_core.read_models.payments import (
    DisputeFilters,
    DisputeView,
    TopupFilters,
    TopupRefundFilters,
    TopupRefundView,
    TopupView,
)
from billing_core.read_models.periods import Period
from mcp_server.app import BillingApp, record, tool_errors
from mcp_server.caller import READ, Caller
from mcp_server.reports import (
    FinancialReport,
    PaymentOverview,
    build_overview,
    build_report,
    report_chart_png,
    report_csv,
)
from mcp_server.shared_read import SharedRead
from mcp_server.text import capped
from mcp_server.tool_specs import ToolSpecs

if TYPE_CHECKING:
    from sqlalchemy import Connection

M = TypeVar("M", bound=BaseModel)
READ_TOOLS = (
    "find_company",
    "get_balance",
    "get_payment_overview",
    "get_customer_payment_history",
    "list_transactions",
    "list_topups",
    "list_low_balance_companies",
    "get_call_charge",
    "list_invoices",
    "get_invoice",
    "generate_financial_report",
    "list_webhook_events",
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
TEXT_LIMIT = 500

Limit = Annotated[int, Field(ge=1, le=200, description="Entries per page (1-200).")]
Cursor = Annotated[str | None, Field(None, max_length=200, description="next_cursor of the previous page.")]
CompanyId = Annotated[int | None, Field(None, ge=1, description="One company; all companies when left out.")]
Since = Annotated[datetime | None, Field(None, description="From this instant (ISO 8601 with a timezone).")]
Until = Annotated[datetime | None, Field(None, description="Before this instant (ISO 8601 with a timezone).")]


def _balances(conn: Connection, company_ids: list[int]) -> dict[int, BalanceOverview]:
    from billing_core.queries.companies import balance_overviews  # SQLAlchemy: loaded on the first call

    return balance_overviews(conn, company_ids)


BALANCES = SharedRead(_balances, CompanyNotFound)  # concurrent get_balance calls read in one statement


def _capped(value: Any) -> Any:
    """``value`` with every text in it capped; the very same object when nothing needed it (so a large answer,
    such as a statistics period, is neither copied nor validated again)."""
    if isinstance(value, str):
        text = capped(value, TEXT_LIMIT)
        return value if text == value else text
    if isinstance(value, MoneyView):
        return value  # amounts the read side formatted itself
    if isinstance(value, BaseModel):
        changed = {}
        for name in type(value).model_fields:
            field = getattr(value, name)
            new = _capped(field)
            if new is not field:
                changed[name] = new
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, dict):
        pairs = [(k, v, _capped(v)) for k, v in value.items()]
        return {k: new for k, _, new in pairs} if any(new is not v for _, v, new in pairs) else value
    if isinstance(value, list | tuple):
        items = [_capped(v) for v in value]
        return type(value)(items) if any(new is not v for new, v in zip(items, value, strict=True)) else value
    return value


def as_data(model: M) -> M:
    """The model with every text capped (names, descriptions, errors and payload text are customer data)."""
    return _capped(model)  # type: ignore[no-any-return]


class CompanyMatches(BaseModel):
    items: list[CompanyMatch] = Field(description="Companies matching the query, best match first.")
    has_more: bool = Field(description="True when more companies match than were listed; narrow the query.")


class CustomerPaymentHistory(BaseModel):
    company_id: int
    topups: Page[TopupView] = Field(description="Top-ups, newest first (page with the cursor).")
    refunds: Page[TopupRefundView] = Field(description="The latest top-up refunds.")
    disputes: Page[DisputeView] = Field(description="The latest card disputes.")


def _period(start: date | None, end: date | None, days: int, app: BillingApp) -> Period:
    if start is None and end is None:
        return app.services.queries.period(days)
    if start is None or end is None:
        raise ToolError("give both start and end (or neither, for the last days)")
    return Period.of(start, end)


def register_read_tools(tools: ToolSpecs, app: BillingApp) -> None:
    def reader() -> Caller:
        caller = app.caller()
        caller.require(READ)
        return caller

    def company_of(company_id: int | None) -> int | None:
        """The company a read is about (a bound token's own); the call's audit row is filed under it."""
        cid = reader().company(company_id)
        record().company_id = cid
        return cid

    @tools.tool(name="find_company", annotations=READ_ONLY, structured_output=True)
    async def find_company(
        query: Annotated[
            str,
            Field(
                min_length=1,
                max_length=200,
                description="A name or part of it, an email, a Stripe customer id (cus_...), a Retell agent id, an id.",
            ),
        ],
        limit: Annotated[int, Field(ge=1, le=50, description="At most this many matches.")] = 10,
    ) -> CompanyMatches:
        """Find companies by name, email, Stripe customer id or Retell agent id."""
        with tool_errors():
            caller = reader()
            found = await app.services.call(lambda: app.services.queries.find_companies(query, limit=limit + 1))
            if caller.company_id is not None:
                found = tuple(m for m in found if m.id == caller.company_id)
            return as_data(CompanyMatches(items=list(found[:limit]), has_more=len(found) > limit))

    @tools.tool(name="get_balance", annotations=READ_ONLY, structured_output=True)
    async def get_balance(
        company_id: Annotated[int, Field(ge=1, description="The company.")],
    ) -> BalanceOverview:
        """A company's prepaid balance: balance, reserved for running calls, available, low-balance threshold."""
        with tool_errors():
            cid = company_of(company_id)
            assert cid is not None
            return await app.read_audited(BALANCES, cid)

    @tools.tool(name="get_payment_overview", annotations=READ_ONLY, structured_output=True)
    async def get_payment_overview(
        days: Annotated[int, Field(ge=1, le=366, description="The last this many days, today included.")] = 30,
        start: Annotated[date | None, Field(None, description="First day (YYYY-MM-DD), instead of days.")] = None,
        end: Annotated[date | None, Field(None, description="Last day (YYYY-MM-DD), instead of days.")] = None,
        company_id: CompanyId = None,
    ) -> PaymentOverview:
        """Payments over a period, for one company or the whole business: revenue, top-ups by status and method,
        failure rate, refunds, auto top-up activity, calls, balances, the daily series, the companies low on
        balance and the latest ledger activity."""
        with tool_errors():
            cid = company_of(company_id)
            period = _period(start, end, days, app)
            return as_data(await app.services.call(lambda: build_overview(app.services, period, cid)))

    @tools.tool(name="get_customer_payment_history", annotations=READ_ONLY, structured_output=True)
    async def get_customer_payment_history(
        company_id: Annotated[int, Field(ge=1, description="The company.")],
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> CustomerPaymentHistory:
        """One customer's payments: top-ups (paged), and the latest top-up refunds and disputes."""
        with tool_errors():
            cid = company_of(company_id)
            assert cid is not None
            q = app.services.queries

            def work() -> CustomerPaymentHistory:
                return CustomerPaymentHistory(
                    company_id=cid,
                    topups=q.topups(TopupFilters(company_id=cid), limit=limit, cursor=cursor),
                    refunds=q.topup_refunds(TopupRefundFilters(company_id=cid), limit=20),
                    disputes=q.disputes(DisputeFilters(company_id=cid), limit=20),
                )

            return as_data(await app.services.call(work))

    @tools.tool(name="list_transactions", annotations=READ_ONLY, structured_output=True)
    async def list_transactions(
        company_id: CompanyId = None,
        types: Annotated[
            list[Literal["topup", "bonus", "charge", "refund", "adjustment", "reversal"]] | None,
            Field(None, description="Only these ledger entry types."),
        ] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[LedgerEntryView]:
        """Ledger entries (every balance change), newest first."""
        with tool_errors():
            cid = company_of(company_id)
            filters = LedgerFilters(company_id=cid, types=tuple(types) if types else None, since=since, until=until)
            page = await app.services.call(
                lambda: app.services.queries.ledger_entries(filters, limit=limit, cursor=cursor)
            )
            return as_data(page)

    @tools.tool(name="list_topups", annotations=READ_ONLY, structured_output=True)
    async def list_topups(
        statuses: Annotated[
            list[str] | None, Field(None, description="e.g. ['failed'] to find failed payments.")
        ] = None,
        company_id: CompanyId = None,
        methods: Annotated[
            list[str] | None,
            Field(None, description="How it was paid: checkout, payment_intent, auto_topup, bank_transfer, manual."),
        ] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[TopupView]:
        """Top-ups filtered by status, company, method and period, newest first; the way to find failed payments."""
        with tool_errors():
            cid = company_of(company_id)
            filters = TopupFilters.model_validate(
                {
                    "company_id": cid,
                    "statuses": tuple(statuses) if statuses else None,
                    "methods": tuple(methods) if methods else None,
                    "since": since,
                    "until": until,
                }
            )
            page = await app.services.call(lambda: app.services.queries.topups(filters, limit=limit, cursor=cursor))
            return as_data(page)

    @tools.tool(name="list_low_balance_companies", annotations=READ_ONLY, structured_output=True)
    async def list_low_balance_companies(
        auto_topup_enabled: Annotated[
            bool | None, Field(None, description="Only companies with auto top-up on (true) or off (false).")
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[LowBalanceCompany]:
        """Companies whose balance is below their low-balance threshold."""
        with tool_errors():
            caller = reader()
            filters = LowBalanceFilters(auto_topup_enabled=auto_topup_enabled)
            page = await app.services.call(
                lambda: app.services.queries.low_balance_companies(filters, limit=limit, cursor=cursor)
            )
            if caller.company_id is not None:
                own = tuple(c for c in page.items if c.company_id == caller.company_id)
                page = type(page)(items=own, has_more=False, next_cursor=None)
            return as_data(page)

    @tools.tool(name="get_call_charge", annotations=READ_ONLY, structured_output=True)
    async def get_call_charge(
        call_id: Annotated[str, Field(min_length=1, max_length=128, description="The Retell call id.")],
    ) -> CallChargeView:
        """What a call cost: duration, billed seconds, rate, amount charged, refunded so far and refund status."""
        with tool_errors():
            caller = reader()
            view = await app.services.call(app.services.queries.call_charge, call_id)
            caller.owns(view.company_id, f"no charge for call {call_id}")
            record().company_id = view.company_id
            return view

    @tools.tool(name="list_invoices", annotations=READ_ONLY, structured_output=True)
    async def list_invoices(
        company_id: CompanyId = None,
        type: Annotated[
            Literal["invoice", "credit_note"] | None, Field(None, description="Only invoices or credit notes.")
        ] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[InvoiceSummary]:
        """Invoices and credit notes, newest first."""
        with tool_errors():
            cid = company_of(company_id)
            filters = InvoiceFilters(company_id=cid, type=type, since=since, until=until)
            return await app.services.call(lambda: app.services.queries.invoices(filters, limit=limit, cursor=cursor))

    @tools.tool(name="get_invoice", annotations=READ_ONLY, structured_output=True)
    async def get_invoice(
        number: Annotated[str, Field(min_length=1, max_length=32, description="The invoice or credit note number.")],
    ) -> InvoiceDetail:
        """One invoice or credit note with everything printed on it (the PDF is billing://invoices/{number})."""
        with tool_errors():
            caller = reader()
            detail = await app.services.call(app.services.queries.invoice, number)
            caller.owns(detail.company_id, f"invoice {number} does not exist")
            record().company_id = detail.company_id
            return as_data(detail)

    @tools.tool(name="list_webhook_events", annotations=READ_ONLY, structured_output=True)
    async def list_webhook_events(
        statuses: Annotated[
            list[Literal["pending", "processed", "ignored", "failed", "dead"]] | None,
            Field(None, description="e.g. ['dead', 'failed'] for the ones to look at."),
        ] = None,
        provider: Annotated[Literal["stripe", "retell"] | None, Field(None)] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[WebhookEventView]:
        """Received Stripe and Retell webhook events with their processing state, newest first."""
        with tool_errors():
            caller = reader()
            if caller.company_id is not None:
                raise ToolError("webhook events belong to no single company; a company-bound token cannot list them")
            filters = WebhookFilters(
                statuses=tuple(statuses) if statuses else None, provider=provider, since=since, until=until
            )
            page = await app.services.call(
                lambda: app.services.queries.webhook_events(filters, limit=limit, cursor=cursor)
            )
            return as_data(page)

    @tools.tool(name="generate_financial_report", annotations=READ_ONLY)
    async def generate_financial_report(
        report_type: Annotated[
            Literal["summary", "detailed", "tax"],
            Field(description="summary: the key figures; detailed: plus the daily series; tax: invoiced VAT."),
        ] = "summary",
        start: Annotated[date | None, Field(None, description="First day (YYYY-MM-DD).")] = None,
        end: Annotated[date | None, Field(None, description="Last day (YYYY-MM-DD).")] = None,
        days: Annotated[int, Field(ge=1, le=366, description="Without start/end: the last this many days.")] = 30,
        company_id: CompanyId = None,
        include_csv: Annotated[bool, Field(description="Also attach the daily series as CSV.")] = False,
        include_chart: Annotated[bool, Field(description="Also attach a PNG chart of daily revenue.")] = False,
    ) -> Annotated[CallToolResult, FinancialReport]:
        """A financial report over a date range, for the business or one company, covering the reference's
        Operations and Monitoring metrics; optionally with the daily series as CSV and a chart as PNG."""
        with tool_errors():
            cid = company_of(company_id)
            period = _period(start, end, days, app)
            report = await app.services.call(lambda: build_report(app.services, report_type, period, cid))
            data = report.model_dump(mode="json")
            content: list[Any] = [TextContent(type="text", text=report.headline)]
            if include_csv:
                content.append(
                    EmbeddedResource(
                        type="resource",
                        resource=TextResourceContents(
                            uri=f"billing://reports/{report_type}-{period.start}-{period.end}.csv",
                            mime_type="text/csv",
                            text=report_csv(report),
                        ),
                    )
                )
            if include_chart:
                png = await app.services.call.blocking(report_chart_png, report)
                content.append(ImageContent(type="image", data=png, mime_type="image/png"))
            return CallToolResult(content=content, structured_content=data)
