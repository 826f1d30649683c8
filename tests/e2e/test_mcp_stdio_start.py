"""``billing mcp`` over stdio starts without the database: tools/list needs no SQLAlchemy, services, Stripe or
WeasyPrint; the first tool call builds them, and a database that cannot work is a clear tool error then.

What a process imported is read from ``-X importtime`` (``PYTHONPROFILEIMPORTTIME``), which writes one line to
stderr per module the moment it is first imported: the modules in ``sys.modules`` of the real server process,
observed from outside while it runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pymysql
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from sqlalchemy.engine import make_url

from billing_core import read_models
from billing_core.bootstrap import build_services
from tests.conftest import make_settings
from tests.integration.helpers import new_company
from tests.support.mcp_process import mcp_env
from tests.support.processes import SELLER_ENV, find_billing

pytestmark = pytest.mark.anyio

# every read model (but the package and its page sizes, which the CLI's options need)
READ_MODELS = sorted(
    p.stem for p in Path(read_models.__file__).parent.glob("*.py") if p.stem not in ("__init__", "limits")
)
# What answering initialize and tools/list must not load: the database layer and everything behind it.
NOT_FOR_TOOLS_LIST = (
    "sqlalchemy",
    "pymysql",
    "alembic",
    "stripe",
    "weasyprint",
    "jinja2",
    "PIL",
    "billing_core.bootstrap",
    "billing_core.db",
    "billing_core.services",
    "billing_core.queries",
    "billing_core.adapters",
    # the tools themselves: listed from mcp_server/tool_schemas.json, each built on its first call
    "mcp_server.tool_definitions",
    "mcp_server.read_tools",
    "mcp_server.write_tools",
    "mcp_server.approval_tools",
    "mcp_server.operations",
    "mcp_server.models",
    "mcp_server.reports",
    *(f"billing_core.read_models.{name}" for name in READ_MODELS),
    # the billing settings, read when the services are built (their amounts are checked with babel's data)
    "billing_core.config",
    "billing_core.money",
    "babel",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def loaded(modules: set[str], prefixes: tuple[str, ...] = NOT_FOR_TOOLS_LIST) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def imported_modules(stderr_log: Path) -> set[str]:
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr_log.read_text(), flags=re.MULTILINE))


def log_lines(stderr_log: Path) -> list[str]:
    return [line for line in stderr_log.read_text().splitlines() if not line.startswith("import time:")]


@asynccontextmanager
async def stdio_server(env: dict[str, str], workdir: Path, stderr_log: Path) -> AsyncIterator[Client]:
    """``billing mcp`` started the way Claude Desktop starts it, its stderr kept in ``stderr_log``."""
    params = StdioServerParameters(command=find_billing(), args=["mcp"], env=env, cwd=str(workdir))
    with stderr_log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            yield client


async def test_tools_list_loads_no_database_stripe_or_pdf_code_and_the_first_call_builds_them(
    database_url: str, tmp_path: Path
) -> None:
    seeded = build_services(make_settings(database_url))
    try:
        company = new_company(seeded, funded="42.00")
    finally:
        seeded.close()
    env = mcp_env(
        DATABASE_URL=database_url,
        STRIPE_SECRET="sk_test_" + "0" * 24,  # configured, as in production: still not imported for tools/list
        SMTP_URL="smtp://127.0.0.1:2525",
        PYTHONPROFILEIMPORTTIME="1",
        **SELLER_ENV,
    )
    stderr_log = tmp_path / "stderr.log"
    async with stdio_server(env, tmp_path, stderr_log) as client:
        tools = await client.list_tools()
        assert len(tools.tools) >= 13 and "get_balance" in {t.name for t in tools.tools}
        prompts = await client.list_prompts()
        assert prompts.prompts
        assert loaded(imported_modules(stderr_log)) == []

        result = await client.call_tool("get_balance", {"company_id": company.id})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["balance"]["cents"] == 4200
        after_call = imported_modules(stderr_log)
        assert {"sqlalchemy", "billing_core.bootstrap"} <= after_call  # built on the first call
        assert {"mcp_server.tool_definitions", "mcp_server.read_tools"} <= after_call  # and the tools
        assert loaded(after_call, ("stripe", "weasyprint")) == []  # a balance needs neither Stripe nor PDFs
    assert log_lines(stderr_log) == []


def test_importing_the_server_and_listing_its_tools_loads_no_database_code(tmp_path: Path) -> None:
    # The same as `billing mcp` over stdio, in-process in a fresh interpreter: the server on services built on
    # demand, listed through the SDK's in-memory client.
    probe = """
import json, sys
import anyio
from mcp import Client
from mcp_server.server import build_server
from mcp_server.services_on_demand import ServicesOnDemand

async def main():
    on_demand = ServicesOnDemand.from_environment()
    async with Client(build_server(on_demand)) as client:
        tools = await client.list_tools()
    print(json.dumps({"tools": len(tools.tools), "built": on_demand.is_built, "modules": sorted(sys.modules)}))

anyio.run(main)
"""
    env = mcp_env(DATABASE_URL=f"sqlite:///{tmp_path / 'never-opened.db'}", STRIPE_SECRET="sk_test_" + "0" * 24)
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120
    )
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["tools"] >= 13
    assert answer["built"] is False
    assert loaded(set(answer["modules"])) == []
    assert not (tmp_path / "never-opened.db").exists()


@pytest.mark.parametrize(
    "url",
    ["not a database url", "nosuchdb://billing:s3cret-pw@db.example/billing", "mysql+nosuchdriver://u:s3cret-pw@h/b"],
)
async def test_a_database_url_that_cannot_work_is_a_clear_tool_error_and_one_log_line(url: str, tmp_path: Path) -> None:
    stderr_log = tmp_path / "stderr.log"
    async with stdio_server(mcp_env(DATABASE_URL=url), tmp_path, stderr_log) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"get_balance", "find_company"}
        for _ in range(2):  # the server stays up and answers every call the same way
            result = await client.call_tool("get_balance", {"company_id": 1})
            assert result.is_error
            text = result.content[0].text  # type: ignore[union-attr]
            assert text.startswith(
                "Error executing tool get_balance: database_misconfigured: DATABASE_URL cannot be used ("
            )
            assert "s3cret-pw" not in text
        prompt = await client.get_prompt("refund_call", {"call_id": "call-1", "reason": "a wrong number"})
        assert prompt.messages
    lines = log_lines(stderr_log)
    assert len(lines) == 2, lines
    assert all("ERROR mcp_server cannot serve tools/call: database_misconfigured: DATABASE_URL" in ln for ln in lines)
    assert "Traceback" not in stderr_log.read_text() and "s3cret-pw" not in stderr_log.read_text()


async def test_a_setting_that_cannot_work_is_a_clear_tool_error_naming_it_and_one_log_line(tmp_path: Path) -> None:
    env = mcp_env(DATABASE_URL=f"sqlite:///{tmp_path / 'never-opened.db'}", DEFAULT_BILLING_RATE="0,42 EUR")
    stderr_log = tmp_path / "stderr.log"
    async with stdio_server(env, tmp_path, stderr_log) as client:
        assert "get_balance" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("get_balance", {"company_id": 1})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Error executing tool get_balance: settings_invalid: a setting cannot be used: ")
    assert "DEFAULT_BILLING_RATE" in text and "0,42 EUR" not in text  # the name, never the value
    lines = log_lines(stderr_log)
    assert len(lines) == 1 and "ERROR mcp_server cannot serve tools/call: settings_invalid: " in lines[0], lines
    assert "Traceback" not in stderr_log.read_text()
    assert not (tmp_path / "never-opened.db").exists()


@pytest.fixture
def unmigrated_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'unmigrated.db'}"
        return
    name = f"billing_unmigrated_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    url = make_url(str(request.getfixturevalue("mariadb_template_url"))).set(database=name)

    def run(statement: str) -> None:
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "")
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    run(f"DROP DATABASE IF EXISTS `{name}`")
    run(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        run(f"DROP DATABASE IF EXISTS `{name}`")


async def test_an_unmigrated_database_is_a_clear_tool_error_and_a_clear_log_line(
    unmigrated_url: str, tmp_path: Path
) -> None:
    stderr_log = tmp_path / "stderr.log"
    async with stdio_server(mcp_env(DATABASE_URL=unmigrated_url), tmp_path, stderr_log) as client:
        result = await client.call_tool("get_balance", {"company_id": 1})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Error executing tool get_balance: database_not_migrated: ")
    assert "billing db upgrade" in text
    lines = log_lines(stderr_log)
    assert any("ERROR mcp_server tool call failed: database_not_migrated: " in line for line in lines), lines
    assert "Traceback" not in stderr_log.read_text()
