"""A client nobody here wrote: the MCP Inspector CLI lists the tools of ``billing mcp`` and calls get_balance."""

from __future__ import annotations

import json
from pathlib import Path

from billing_core.bootstrap import build_services
from tests.conftest import make_settings
from tests.integration.helpers import new_company
from tests.support.inspector import run_inspector
from tests.support.mcp_process import mcp_env
from tests.support.processes import find_billing


def test_inspector_lists_the_tools_and_reads_a_balance_over_stdio(database_url: str, tmp_path: Path) -> None:
    seeded = build_services(make_settings(database_url))
    try:
        company_id = new_company(seeded, name="Praxis Inspektor", funded="42.00").id
    finally:
        seeded.close()
    server = [find_billing(), "mcp"]
    # the Inspector starts the server with an environment of its own: settings go through -e
    settings = ["-e", f"DATABASE_URL={database_url}", "-e", "BILLING_MCP_SCOPES=billing:read"]
    env = mcp_env()
    listed = run_inspector([*settings, *server], "--method", "tools/list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert {"get_balance", "find_company", "generate_financial_report", "get_audit_log"} <= names
    assert "refund_call_charge" not in names  # read-only operator: write tools are not listed
    called = run_inspector(
        [*settings, *server],
        "--method",
        "tools/call",
        "--tool-name",
        "get_balance",
        "--tool-arg",
        f"company_id={company_id}",
        env=env,
        cwd=tmp_path,
    )
    assert called.returncode == 0, called.stderr[-2000:]
    answer = json.loads(called.stdout)
    assert answer["isError"] is False
    assert answer["structuredContent"]["balance"] == {"cents": 4200, "currency": "EUR", "formatted": "42,00\xa0€"}
