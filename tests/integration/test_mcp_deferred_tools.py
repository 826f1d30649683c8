"""Tools listed from the schema cache and built on their first call answer exactly as tools built at start:
the same results, structured content and validation errors, on both protocol generations and databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing_core.bootstrap import Services
from mcp_server import deferred_tools
from tests.integration.helpers import charge, new_company
from tests.integration.mcp_helpers import connect

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["legacy", "2026-07-28"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def calls(company_id: int, call_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("get_balance", {"company_id": company_id}),
        ("get_balance", {"company_id": 0}),
        ("get_balance", {"company_id": "one"}),
        ("find_company", {"query": ""}),
        ("list_transactions", {"company_id": company_id, "types": ["charge"]}),
        ("list_transactions", {"company_id": company_id, "types": ["gift"], "limit": 500}),
        ("get_call_charge", {"call_id": call_id}),
        ("generate_financial_report", {"report_type": "tax", "start": "2026-11-01", "end": "2026-11-30"}),
        ("refund_call_charge", {"call_id": call_id}),
        ("adjust_balance", {"company_id": company_id, "amount_cents": "ten", "reason": "x"}),
        ("decide_approval", {"approval_id": 1, "decision": "maybe"}),
        ("no_such_tool", {}),
    ]


async def answers(services: Services, mode: str, company_id: int, call_id: str) -> list[dict[str, Any]]:
    async with connect(services, mode) as client:
        results = [await client.call_tool(name, arguments) for name, arguments in calls(company_id, call_id)]
    return [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in results]


async def test_tools_built_on_their_first_call_answer_as_tools_built_at_start(
    services: Services, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    company = new_company(services, funded="100.00")
    charge(services, company.id, "call-deferred-1", 600, datetime(2026, 11, 2, 8, 0, tzinfo=UTC))
    deferred = await answers(services, mode, company.id, "call-deferred-1")
    monkeypatch.setattr(deferred_tools, "load", lambda: None)  # as with a cache of other library versions
    built = await answers(services, mode, company.id, "call-deferred-1")
    assert deferred == built
    assert [a.get("isError", False) for a in deferred[:8]] == [False, True, True, True, False, True, False, False]
    assert [a.get("isError", False) for a in deferred[8:]] == [True, True, True, True]
    assert deferred[0]["structuredContent"]["balance"]["cents"] == 10000 - 420
