"""get_balance calls per second over streamable HTTP with 16 concurrent clients: ``billing mcp --transport http``
(bearer token, scope checks, rate limit raised out of the way, audit row per call, a database read) beside a bare
MCPServer tool returning a constant, served and driven the same way. Goal: at least 0.5x.

    python -m bench.mcp_http [--clients 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from billing_core.bootstrap import build_services
from billing_core.config import Settings
from billing_core.db import migrate
from tests.support.mariadb import free_port
from tests.support.processes import clean_env, find_billing, run_billing


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.post(url, json={}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def drive(url: str, token: str | None, clients: int, seconds: float, company_id: int) -> float:
    done = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                while time.monotonic() < stop:
                    result = await client.call_tool("get_balance", {"company_id": company_id})
                    assert not result.is_error, result.content
                    done += 1

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(one)
    return done / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'billing.db'}"
        migrate.upgrade(url)
        services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        company_id = services.companies.add(name="Bench GmbH", email="bench@example.com", actor="bench").id
        services.close()
        env = clean_env(DATABASE_URL=url, BILLING_MCP_RATE_LIMIT="100000")
        created = run_billing(
            "tokens", "create", "--name", "bench", "--scopes", "billing:read", "--json", env=env, cwd=Path(tmp)
        )
        token = __import__("json").loads(created.stdout)["token"]
        rows = []
        for name, command, auth in (
            ("bare MCPServer", [sys.executable, "-m", "bench.mcp_bare_server", "--http"], None),
            ("billing mcp", [find_billing(), "mcp", "--transport", "http", "--port"], token),
        ):
            port = free_port()
            process = subprocess.Popen(
                [*command, str(port)],
                env=env,
                cwd=Path.cwd() if auth is None else tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_until_up(f"http://127.0.0.1:{port}/mcp", process)
                rate = anyio.run(
                    drive, f"http://127.0.0.1:{port}/mcp", auth, options.clients, options.seconds, company_id
                )
            finally:
                process.terminate()
                process.wait(timeout=30)
            rows.append((name, rate))
    base = rows[0][1]
    print(f"{'server':<16} {'calls/s':>9} {'ratio':>6}   ({options.clients} clients, {options.seconds:.0f} s)")
    for name, rate in rows:
        print(f"{name:<16} {rate:>9.1f} {rate / base:>6.2f}")


if __name__ == "__main__":
    main()
