"""Prompts a person picks in their client: a monthly report, investigating a failed payment, refunding a call.

Arguments are what the person typed; they are placed in the message as quoted data.
"""

from __future__ import annotations

import json
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.text import capped


def _quoted(value: str, limit: int = 100) -> str:
    return json.dumps(capped(value, limit), ensure_ascii=False)


def register_prompts(server: MCPServer) -> None:
    @server.prompt(name="monthly_financial_report", title="Monthly financial report")
    def monthly_financial_report(
        month: Annotated[str, Field(description="The month, as YYYY-MM.")],
        company_id: Annotated[str | None, Field(description="Only this company (optional).")] = None,
    ) -> str:
        """Write the financial report of one month from the billing data."""
        scope = f"company {_quoted(company_id, 20)}" if company_id else "the whole business"
        return (
            f"Prepare the financial report for the month {_quoted(month, 7)} for {scope}.\n"
            "1. Call generate_financial_report with report_type 'summary' for that month (and the company, if given).\n"
            "2. Call get_payment_overview for the same period.\n"
            "3. Report revenue, top-ups by status, the failure rate, refunds, auto top-up activity and low balances, "
            "as a short table with the amounts as formatted. Name anything unusual and what to check next.\n"
            "Change nothing: this report only reads."
        )

    @server.prompt(name="investigate_failed_payment", title="Investigate a failed payment")
    def investigate_failed_payment(
        company_id: Annotated[str, Field(description="The company whose payment failed.")],
    ) -> str:
        """Find out why a company's top-up failed and what to do about it."""
        return (
            f"A top-up of company {_quoted(company_id, 20)} failed. Investigate:\n"
            "1. find_company / get_balance for the company's state and auto top-up settings.\n"
            "2. list_topups with status 'failed' for the company: the failure reasons and codes.\n"
            "3. list_webhook_events for dead or failed events around that time.\n"
            "Explain the cause in plain words. Suggest one action: retry_failed_topup when a saved method should "
            "work now, create_topup_link to let the customer pay again, or replay_webhook_event when an event was "
            "lost. Do not run a write tool before the user agrees."
        )

    @server.prompt(name="refund_call", title="Refund a call")
    def refund_call(
        call_id: Annotated[str, Field(description="The Retell call id.")],
        reason: Annotated[str, Field(description="Why the customer should get the money back.")],
    ) -> str:
        """Check a call's charge and refund it with the user's consent."""
        return (
            f"The user asks to refund the call {_quoted(call_id, 128)} because {_quoted(reason, 300)}.\n"
            "1. Call get_call_charge to see what was charged and what is still refundable.\n"
            "2. Tell the user the amount. Call refund_call_charge with the call id and the reason (leave the amount "
            "out for a full refund) and an idempotency_key of your choice.\n"
            "3. If the answer is confirmation_required, show the preview; call again with the confirmation_token only "
            "after the user says yes. If it is approval_requested, tell the user a second person must approve it."
        )
