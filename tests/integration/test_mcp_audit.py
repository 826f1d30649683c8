"""The audit rows of concurrent tool calls share transactions (mcp_server.audit), on both databases:
every call's row is committed before the call answers, and a row the database refuses costs no other its row."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import func, select

from billing_core.bootstrap import Services
from billing_core.db.tables import audit_log
from billing_core.services.tool_calls import ToolCallStore
from mcp_server.audit import AuditWriter
from tests.integration.helpers import new_company
from tests.integration.mcp_helpers import call, connect

pytestmark = pytest.mark.anyio

CALLS = 24


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def audit_rows(services: Services, *, outcome: str | None = None) -> int:
    query = select(func.count()).select_from(audit_log).where(audit_log.c.entity_type == "mcp_tool")
    if outcome is not None:
        query = query.where(audit_log.c.outcome == outcome)
    return int(services.ctx.db.read(lambda conn: conn.execute(query).scalar_one()))


async def test_concurrent_calls_are_each_audited_before_they_answer(services: Services) -> None:
    company_id = new_company(services, funded="12.00").id
    answered = 0
    rows_seen_by_answer: list[tuple[int, int]] = []

    async with connect(services, "legacy") as client:

        async def one() -> None:
            nonlocal answered
            data = await call(client, "get_balance", company_id=company_id)
            assert data["balance"]["cents"] == 1200
            answered += 1
            rows_seen_by_answer.append((answered, audit_rows(services, outcome="ok")))

        async with anyio.create_task_group() as tg:
            for _ in range(CALLS):
                tg.start_soon(one)

    assert audit_rows(services, outcome="ok") == CALLS
    assert all(rows >= count for count, rows in rows_seen_by_answer), rows_seen_by_answer


async def test_concurrent_balance_reads_of_different_companies_each_get_their_own_answer(services: Services) -> None:
    funded = {new_company(services, funded=f"{n}.00").id: n * 100 for n in range(1, 5)}
    missing = 987654
    answers: dict[int, object] = {}

    async with connect(services, "legacy") as client:

        async def one(company_id: int) -> None:
            answer = await client.call_tool("get_balance", {"company_id": company_id})
            answers[company_id] = answer.structured_content if not answer.is_error else "error"

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                for company_id in [*funded, missing]:
                    tg.start_soon(one, company_id)

    assert answers[missing] == "error"
    assert {cid: answers[cid]["balance"]["cents"] for cid in funded} == funded  # type: ignore[index]
    assert audit_rows(services, outcome="ok") == 3 * len(funded)
    assert audit_rows(services, outcome="error") == 3


async def test_a_read_that_fails_is_audited_once_with_its_error(services: Services) -> None:
    async with connect(services, "legacy") as client:
        answer = await client.call_tool("get_balance", {"company_id": 987654})
    rows = services.ctx.db.read(
        lambda conn: conn.execute(
            select(audit_log.c.outcome, audit_log.c.details).where(audit_log.c.entity_id == "get_balance")
        ).all()
    )
    assert answer.is_error and "company_not_found" in answer.content[0].text  # type: ignore[union-attr]
    assert [outcome for outcome, _ in rows] == ["error"]
    assert "company_not_found" in rows[0][1] and '"company_id": 987654' in rows[0][1]


async def test_a_row_the_database_refuses_costs_no_other_call_its_row(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    store = ToolCallStore(services.ctx)
    writer = AuditWriter(services, store)

    def row(number: int, amount: int | None = None) -> dict[str, object]:
        return store.audit_row(
            actor="alice", tool="adjust_balance", outcome="error", arguments={"n": number}, amount=amount
        )

    async with anyio.create_task_group() as tg:
        for number in range(9):
            tg.start_soon(writer.write, row(number))
        tg.start_soon(writer.write, row(99, amount=2**70))  # beyond any integer column: refused, logged

    assert audit_rows(services, outcome="error") == 9
    assert [r.getMessage() for r in caplog.records if r.name == "mcp_server"] == [
        "the database refused the audit row of a tool call"
    ]


async def test_read_calls_about_a_company_are_filed_under_it_in_the_audit_log(services: Services) -> None:
    company_id = new_company(services, funded="5.00").id
    other_id = new_company(services, funded="1.00").id
    async with connect(services, "legacy") as client:
        await call(client, "get_balance", company_id=company_id)
        await call(client, "list_transactions", company_id=company_id)
        await call(client, "get_payment_overview", company_id=company_id)
        await call(client, "list_topups")  # the whole business: no company
    filed = services.ctx.db.read(
        lambda conn: conn.execute(
            select(audit_log.c.entity_id, audit_log.c.company_id)
            .where(audit_log.c.entity_type == "mcp_tool")
            .order_by(audit_log.c.id)
        ).all()
    )
    assert [tuple(row) for row in filed] == [
        ("get_balance", company_id),
        ("list_transactions", company_id),
        ("get_payment_overview", company_id),
        ("list_topups", None),
    ]
    assert other_id not in {company for _, company in filed}
