"""``billing mcp`` as real processes: over stdio (the way Claude Desktop starts it) and over HTTP with tokens.

The test process seeds the database the server uses and reads it back afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import ElicitResult

from billing_core.bootstrap import Services, build_services
from tests.conftest import make_settings
from tests.integration.helpers import charge, new_company
from tests.support.mcp_process import McpHttpProcess, mcp_env
from tests.support.processes import find_billing, run_billing

pytestmark = pytest.mark.anyio

STARTED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def seeded(database_url: str) -> Iterator[Services]:
    built = build_services(make_settings(database_url))
    try:
        yield built
    finally:
        built.close()


def funded_call(services: Services, name: str, seconds: int = 600) -> tuple[int, str]:
    company = new_company(services, name=name, funded="100.00")
    call_id = f"call-{company.id}"
    charge(services, company.id, call_id, seconds, STARTED)
    return company.id, call_id


def balance(services: Services, company_id: int) -> int:
    return services.balances.get(company_id).balance.cents


@pytest.fixture
def http_server(database_url: str, tmp_path: Path) -> Iterator[McpHttpProcess]:
    env = mcp_env(
        DATABASE_URL=database_url,
        BILLING_MCP_REFUND_LIMIT="5.00",
        BILLING_MCP_RATE_LIMIT="40",
    )
    server = McpHttpProcess(tmp_path / "mcp", env).start()
    try:
        yield server
    finally:
        server.stop()


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_http_without_a_token_gets_401_with_protected_resource_metadata(http_server: McpHttpProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    anonymous = httpx.post(f"{http_server.url}/mcp", json=body, timeout=10)
    forged = httpx.post(f"{http_server.url}/mcp", json=body, headers={"Authorization": "Bearer bk_nope"}, timeout=10)
    metadata = httpx.get(f"{http_server.url}/.well-known/oauth-protected-resource/mcp", timeout=10)
    assert anonymous.status_code == 401 and forged.status_code == 401
    assert "resource_metadata=" in anonymous.headers["www-authenticate"]
    assert metadata.status_code == 200 and metadata.json()["resource"] == f"{http_server.url}/mcp"
    assert httpx.get(f"{http_server.url}/healthz", timeout=10).json() == {"status": "ok"}


async def test_read_only_token_cannot_refund_and_sees_only_what_it_may_call(
    http_server: McpHttpProcess, seeded: Services
) -> None:
    company_id, call_id = funded_call(seeded, "Praxis Lehmann")
    token = http_server.create_token("viewer", "billing:read")
    refused = httpx.post(
        f"{http_server.url}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "refund_call_charge", "arguments": {"call_id": call_id, "reason": "x"}},
        },
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope" and refused.json()["scope"] == "billing:refund"
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    async with http_server.client(token) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "refund_call_charge" not in names and "get_audit_log" in names
    rebound = httpx.post(  # DNS rebinding: a Host header outside BILLING_MCP_ALLOWED_HOSTS
        f"{http_server.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}", "Host": "evil.example",
                 "Accept": "application/json, text/event-stream"},
        timeout=10,
    )
    assert rebound.status_code == 421
    assert balance(seeded, company_id) == 10000 - 420
    audit = run_billing("audit", "--tool", "refund_call_charge", "--json", env=http_server.env, cwd=http_server.workdir)
    assert [(r["actor"], r["outcome"]) for r in json.loads(audit.stdout)] == [("token:viewer", "refused")]


async def test_company_bound_token_cannot_reach_another_company(http_server: McpHttpProcess, seeded: Services) -> None:
    own, _ = funded_call(seeded, "Kanzlei Roth")
    other, other_call = funded_call(seeded, "Autohaus Berg")
    token = http_server.create_token("roth-bot", "billing:read,billing:refund,billing:adjust", "--company", str(own))
    async with http_server.client(token) as client:
        audit = await client.call_tool("get_audit_log", {"company_id": other})
        balance_of_other = await client.call_tool("get_balance", {"company_id": other})
        own_balance = await client.call_tool("get_balance", {"company_id": own})
        refund = await client.call_tool("refund_call_charge", {"call_id": other_call, "reason": "x"})
    assert audit.is_error and f"company {other} does not exist" in text_of(audit)
    assert balance_of_other.is_error and f"company {other} does not exist" in text_of(balance_of_other)
    assert own_balance.structured_content is not None and own_balance.structured_content["company_id"] == own
    assert refund.is_error and f"no charge for call {other_call}" in text_of(refund)
    assert balance(seeded, other) == 10000 - 420


async def test_both_confirmation_paths_replay_tampering_and_idempotent_retries_over_http(
    http_server: McpHttpProcess, seeded: Services
) -> None:
    company_id, call_id = funded_call(seeded, "Bäckerei Sommer")
    token = http_server.create_token("support", "billing:read,billing:refund")

    async def yes(_ctx: Any, _params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"confirm": True})

    async def no(_ctx: Any, _params: Any) -> ElicitResult:
        return ElicitResult(action="decline")

    partial = {"call_id": call_id, "amount_cents": 100, "reason": "dropped call"}
    async with http_server.client(token, elicitation_callback=no) as client:
        declined = await client.call_tool("refund_call_charge", partial)
    assert declined.structured_content["status"] == "declined"  # type: ignore[index]
    assert balance(seeded, company_id) == 10000 - 420

    async with http_server.client(token, elicitation_callback=yes) as client:
        keyed = {**partial, "idempotency_key": "ticket-4711"}
        first = await client.call_tool("refund_call_charge", keyed)
        retry = await client.call_tool("refund_call_charge", keyed)
    assert first.structured_content["status"] == "executed"  # type: ignore[index]
    assert retry.structured_content["status"] == "replayed"  # type: ignore[index]
    assert balance(seeded, company_id) == 10000 - 420 + 100

    async with http_server.client(token) as client:  # no elicitation: two steps
        step_one = (await client.call_tool("refund_call_charge", partial)).structured_content
        assert step_one is not None and step_one["status"] == "confirmation_required"
        confirmation = step_one["confirmation_token"]
        tampered = await client.call_tool(
            "refund_call_charge", {**partial, "amount_cents": 300, "confirmation_token": confirmation}
        )
        done = await client.call_tool("refund_call_charge", {**partial, "confirmation_token": confirmation})
        replayed = await client.call_tool("refund_call_charge", {**partial, "confirmation_token": confirmation})
    assert tampered.is_error and "other arguments" in text_of(tampered)
    assert done.structured_content["status"] == "executed"  # type: ignore[index]
    assert replayed.structured_content["status"] == "replayed"  # type: ignore[index]
    assert balance(seeded, company_id) == 10000 - 420 + 200


async def test_refund_above_the_limit_is_approved_by_another_person_only(
    http_server: McpHttpProcess, seeded: Services
) -> None:
    company_id, call_id = funded_call(seeded, "Hotel Adler", seconds=1200)  # 8,40 € > the 5,00 € limit
    requester = http_server.create_token("anna", "billing:read,billing:refund,billing:approve")
    approver = http_server.create_token("ben", "billing:approve")
    async with http_server.client(requester) as client:
        filed = await client.call_tool("refund_call_charge", {"call_id": call_id, "reason": "outage"})
        outcome = filed.structured_content
        assert outcome is not None and outcome["status"] == "approval_requested"
        own = await client.call_tool("decide_approval", {"approval_id": outcome["approval_id"], "decision": "approve"})
    assert own.is_error and "cannot be decided by the caller who made it" in text_of(own)
    assert balance(seeded, company_id) == 10000 - 840
    async with http_server.client(approver) as client:
        decided = await client.call_tool(
            "decide_approval", {"approval_id": outcome["approval_id"], "decision": "approve"}
        )
    assert decided.structured_content is not None and decided.structured_content["status"] == "approved"
    assert balance(seeded, company_id) == 10000
    rows = json.loads(run_billing("audit", "--json", env=http_server.env, cwd=http_server.workdir).stdout)
    assert ("token:anna", "refund_call_charge", "approval_requested") in [
        (r["actor"], r["entity_id"], r["outcome"]) for r in rows
    ]
    assert ("token:ben", "decide_approval", "approved") in [(r["actor"], r["entity_id"], r["outcome"]) for r in rows]


async def test_rate_limit_holds_over_http(database_url: str, tmp_path: Path) -> None:
    env = mcp_env(DATABASE_URL=database_url, BILLING_MCP_RATE_LIMIT="5")  # a burst of 5, then one per 12 s
    server = McpHttpProcess(tmp_path / "limited", env).start()
    try:
        token = server.create_token("looping-agent", "billing:read")
        refused = 0
        started = time.monotonic()
        async with server.client(token) as client:
            for _ in range(15):
                try:
                    await client.call_tool("get_audit_log", {"limit": 1})
                except Exception as error:  # the JSON-RPC error of the rate limit
                    assert "rate limit" in str(error)
                    refused += 1
        refilled = int((time.monotonic() - started) / 12) + 1
        assert refused >= 15 - 5 - refilled
        rows = json.loads(run_billing("audit", "--json", "--limit", "100", env=env, cwd=server.workdir).stdout)
        assert sum(1 for r in rows if r["outcome"] == "rate_limited") == refused
    finally:
        server.stop()


async def test_stdio_server_answers_a_client_as_claude_desktop_starts_it(
    database_url: str, seeded: Services, tmp_path: Path
) -> None:
    company_id, call_id = funded_call(seeded, "Zahnarzt Krüger")
    env = mcp_env(
        DATABASE_URL=database_url,
        BILLING_MCP_ACTOR="desk-operator",
        BILLING_MCP_SCOPES="billing:read,billing:refund",
    )
    params = StdioServerParameters(command=find_billing(), args=["mcp"], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        first = await client.call_tool("refund_call_charge", {"call_id": call_id, "reason": "test call"})
    assert "refund_call_charge" in names and "adjust_balance" not in names
    assert first.structured_content is not None and first.structured_content["status"] == "confirmation_required"
    assert balance(seeded, company_id) == 10000 - 420
    tokens_cli = run_billing("tokens", "list", "--json", env=env, cwd=tmp_path)
    assert tokens_cli.returncode == 0 and json.loads(tokens_cli.stdout) == []


async def test_tokens_are_shown_once_stored_hashed_and_stop_working_when_revoked(
    http_server: McpHttpProcess, seeded: Services
) -> None:
    token = http_server.create_token("temp", "billing:read")
    listed = json.loads(run_billing("tokens", "list", "--json", env=http_server.env, cwd=http_server.workdir).stdout)
    assert [t["name"] for t in listed] == ["temp"] and "token" not in listed[0]
    stored = seeded.db.read(lambda conn: conn.exec_driver_sql("SELECT token_hash FROM api_tokens").scalar_one())
    assert token not in stored and len(stored) == 64
    async with http_server.client(token) as client:
        assert (await client.list_tools()).tools
    revoked = run_billing("tokens", "revoke", str(listed[0]["id"]), env=http_server.env, cwd=http_server.workdir)
    assert revoked.returncode == 0, revoked.stderr
    # refused on the very next request: tokens are checked against the database on every request
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    answer = httpx.post(f"{http_server.url}/mcp", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 401
    past = run_billing(
        "tokens", "create", "--name", "x", "--scopes", "billing:read", "--expires", "2020-01-01T00:00:00+00:00",
        env=http_server.env, cwd=http_server.workdir,
    )
    assert past.returncode == 1 and "future" in past.stderr


async def test_billing_approvals_cli_lists_approves_and_rejects_requests(
    http_server: McpHttpProcess, seeded: Services
) -> None:
    first_company, first_call = funded_call(seeded, "Pension Ost", seconds=1200)
    second_company, second_call = funded_call(seeded, "Pension West", seconds=1200)
    token = http_server.create_token("carla", "billing:refund")
    async with http_server.client(token) as client:
        for call_id in (first_call, second_call):
            filed = await client.call_tool("refund_call_charge", {"call_id": call_id, "reason": "outage"})
            assert filed.structured_content is not None and filed.structured_content["status"] == "approval_requested"
    cli = {"env": http_server.env, "cwd": http_server.workdir}
    pending = json.loads(run_billing("approvals", "list", "--json", **cli).stdout)
    assert [(a["tool"], a["requested_by"], a["amount"]["cents"]) for a in pending] == [
        ("refund_call_charge", "token:carla", 840),
        ("refund_call_charge", "token:carla", 840),
    ]
    approved = run_billing("approvals", "approve", str(pending[0]["id"]), "--json", **cli)
    rejected = run_billing("approvals", "reject", str(pending[1]["id"]), "--reason", "duplicate", "--json", **cli)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "approved"
    assert json.loads(rejected.stdout)["status"] == "rejected"
    assert balance(seeded, first_company) == 10000 and balance(seeded, second_company) == 10000 - 840
    assert json.loads(run_billing("approvals", "list", "--json", **cli).stdout) == []
