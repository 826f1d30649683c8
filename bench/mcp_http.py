"""get_balance calls per second over streamable HTTP with 16 concurrent clients: ``billing mcp --transport http``
(bearer token, scope checks, rate limit raised out of the way, audit row per call, a database read) beside a bare
MCPServer tool returning a constant, served and driven the same way. Goal: at least 0.5x.

Calls per second depend on everything else the machine runs; CPU time per call (of the server process, and of
mariadbd, which shares the machine) is the steadier figure.

Both servers run side by side and are driven in alternating rounds (bare, billing, billing, bare, ...), so a
change in the machine's load during the run hits both; each round gives a ratio, and the table shows the median
and the spread over the rounds.

    python -m bench.mcp_http [--clients 16] [--rounds 6] [--seconds 4] [--backends sqlite,mariadb]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.common import bench_databases
from billing_core.bootstrap import build_services
from billing_core.config import Settings
from billing_core.db import migrate
from tests.support.mariadb import MariaDBServer, free_port
from tests.support.processes import clean_env, find_billing, run_billing


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text()[-2000:] if log is not None else ""
            raise RuntimeError(f"server exited with {process.returncode}\n{output}")
        try:
            httpx.post(url, json={}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    calls: int
    seconds: float
    server_cpu: float
    database_cpu: float = 0.0  # mariadbd's over the round (MariaDB only)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.server_cpu / max(self.calls, 1)

    @property
    def database_ms_per_call(self) -> float:
        return 1000 * self.database_cpu / max(self.calls, 1)


async def drive(url: str, token: str | None, clients: int, seconds: float, company_id: int, pid: int) -> Round:
    """``clients`` sessions calling get_balance back to back for ``seconds`` (sessions opened beforehand)."""
    done = 0
    ready = 0
    go = anyio.Event()
    window: list[float] = []
    cpu: list[float] = []

    async def one() -> None:
        nonlocal done, ready
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                ready += 1
                if ready == clients:
                    window.append(time.monotonic() + seconds)
                    go.set()
                await go.wait()
                if not cpu:
                    cpu.append(cpu_seconds(pid))
                while time.monotonic() < window[0]:
                    result = await client.call_tool("get_balance", {"company_id": company_id})
                    assert not result.is_error, result.content
                    done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(one)
    return Round(done, seconds, cpu_seconds(pid) - cpu[0])


@contextmanager
def serving(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen([*command, str(port)], env=env, cwd=cwd, stdout=output, stderr=output)
        try:
            url = f"http://127.0.0.1:{port}/mcp"
            wait_until_up(url, process, log)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def database_url(backend: str, tmp: Path, server: MariaDBServer | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'mcp-http.db'}"
    assert server is not None
    return server.create_database("bench_mcp_http")


def measure(
    backend: str, url: str, tmp: Path, options: argparse.Namespace, database_pid: int | None
) -> list[tuple[Round, Round]]:
    """(bare, billing) of each round."""
    migrate.upgrade(url)
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    company_id = services.companies.add(name="Bench GmbH", email="bench@example.com", actor="bench").id
    services.close()
    env = clean_env(DATABASE_URL=url, BILLING_MCP_RATE_LIMIT="100000")
    created = run_billing("tokens", "create", "--name", "bench", "--scopes", "billing:read", "--json", env=env, cwd=tmp)
    token = json.loads(created.stdout)["token"]
    bare_command = [sys.executable, "-m", "bench.mcp_bare_server", "--http"]
    billing_command = [find_billing(), "mcp", "--transport", "http", "--port"]
    rounds: list[tuple[Round, Round]] = []
    with (
        serving(bare_command, env, Path.cwd(), tmp / f"bare-{backend}.log") as (bare_url, bare_pid),
        serving(billing_command, env, tmp, tmp / f"billing-{backend}.log") as (billing_url, billing_pid),
    ):
        for number in range(options.rounds):

            def bare() -> Round:
                return anyio.run(drive, bare_url, None, options.clients, options.seconds, company_id, bare_pid)

            def billing() -> Round:
                before = cpu_seconds(database_pid) if database_pid else 0.0
                found = anyio.run(drive, billing_url, token, options.clients, options.seconds, company_id, billing_pid)
                found.database_cpu = cpu_seconds(database_pid) - before if database_pid else 0.0
                return found

            if number % 2 == 0:
                bare_round = bare()
                billing_round = billing()
            else:
                billing_round = billing()
                bare_round = bare()
            rounds.append((bare_round, billing_round))
            print(
                f"  {backend} round {number + 1}: bare {bare_round.rate:.0f}/s "
                f"({bare_round.cpu_ms_per_call:.2f} ms CPU/call), billing {billing_round.rate:.0f}/s "
                f"({billing_round.cpu_ms_per_call:.2f} ms CPU/call, "
                f"mariadbd {billing_round.database_ms_per_call:.2f}), "
                f"{billing_round.rate / bare_round.rate:.2f}x",
                file=sys.stderr,
            )
    return rounds


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--backends", default="sqlite,mariadb")
    options = parser.parse_args()
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]
    results: list[tuple[str, list[tuple[Round, Round]]]] = []
    with bench_databases(backends) as (server, tmp):
        for backend in backends:
            database_pid = server.process.pid if backend == "mariadb" and server and server.process else None
            url = database_url(backend, tmp, server)
            results.append((backend, measure(backend, url, tmp, options, database_pid)))
    print(
        f"\nget_balance over streamable HTTP, {options.clients} clients, {options.rounds} alternating rounds of "
        f"{options.seconds:.0f} s each; median (min-max) over the rounds. Goal: billing mcp >= 0.5x bare."
    )
    print(
        "CPU per call: the server process's user + system CPU time over the calls it answered "
        "(steadier than calls/s on a shared machine); mariadbd's likewise."
    )
    print(
        f"{'database':<9} {'bare calls/s':>18} {'billing calls/s':>18} {'ratio':>18} "
        f"{'bare CPU ms/call':>18} {'billing CPU ms/call':>20} {'mariadbd CPU ms/call':>21}"
    )
    for backend, rounds in results:
        bare = [b.rate for b, _ in rounds]
        billing = [m.rate for _, m in rounds]
        ratios = [m.rate / b.rate for b, m in rounds]
        bare_cpu = [b.cpu_ms_per_call for b, _ in rounds]
        billing_cpu = [m.cpu_ms_per_call for _, m in rounds]
        database_cpu = spread([m.database_ms_per_call for _, m in rounds], 2) if backend == "mariadb" else "-"
        print(
            f"{backend:<9} {spread(bare, 0):>18} {spread(billing, 0):>18} {spread(ratios, 2):>18} "
            f"{spread(bare_cpu, 2):>18} {spread(billing_cpu, 2):>20} {database_cpu:>21}"
        )


if __name__ == "__main__":
    main()
