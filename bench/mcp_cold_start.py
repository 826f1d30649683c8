"""Cold start of ``billing mcp`` over stdio to the answer of tools/list, beside a bare MCPServer with one tool
started the same way (a fresh Python process each run). Goal: within 1.3x.

    python -m bench.mcp_cold_start [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from billing_core.db import migrate
from tests.support.processes import clean_env, find_billing


async def cold_start(params: StdioServerParameters) -> float:
    started = time.perf_counter()
    async with Client(params) as client:
        tools = await client.list_tools()
        elapsed = time.perf_counter() - started
    assert tools.tools
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'billing.db'}"
        migrate.upgrade(url)
        env = clean_env(DATABASE_URL=url)
        servers = {
            "billing mcp": StdioServerParameters(command=find_billing(), args=["mcp"], env=env, cwd=tmp),
            "bare MCPServer": StdioServerParameters(
                command=sys.executable, args=["-m", "bench.mcp_bare_server"], env=env, cwd=str(Path.cwd())
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(runs):  # interleaved, so a busy moment of the machine hits both
            for name, params in servers.items():
                results[name].append(anyio.run(cold_start, params))
    base = statistics.median(results["bare MCPServer"])
    print(f"{'server':<16} {'median s':>9} {'min s':>7} {'ratio':>6}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:<16} {median:>9.3f} {min(times):>7.3f} {median / base:>6.2f}")


if __name__ == "__main__":
    main()
