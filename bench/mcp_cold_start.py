"""Cold start of ``billing mcp`` over stdio to the answer of tools/list, beside a bare MCPServer with one tool
started the same way (a fresh Python process each run). Goal: within 1.3x.

    python -m bench.mcp_cold_start [--runs 10]

Two set-ups of ``billing mcp``: a migrated, empty SQLite database with nothing else configured, and what a
real operator has: STRIPE_SECRET, SMTP_URL and a seller set, over a SQLite database holding the demo data.
Each run starts every server once, interleaved, so a busy moment of the machine hits all of them. Besides
tools/list, the table shows the answer of the first tool call (``get_balance``) in the same session: the
billing server builds its database and services on that call, so this is where that cost went.

The children may write bytecode caches (PYTHONDONTWRITEBYTECODE is dropped for them), as an installed
package has them; one unmeasured start of each server writes them first, and that start is shown apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from billing_core.db import migrate
from tests.support.processes import SELLER_ENV, clean_env, find_billing, run_billing


@dataclass
class Timings:
    tools_list: list[float] = field(default_factory=list)
    first_call: list[float] = field(default_factory=list)


async def cold_start(params: StdioServerParameters) -> tuple[float, float]:
    """Seconds from starting the process to the tools/list answer, and to the first get_balance answer."""
    started = time.perf_counter()
    async with Client(params) as client:
        tools = await client.list_tools()
        listed = time.perf_counter() - started
        balance = await client.call_tool("get_balance", {"company_id": 1})
        called = time.perf_counter() - started
    assert tools.tools
    assert not balance.is_error, balance.content
    return listed, called


def servers(tmp: Path) -> dict[str, StdioServerParameters]:
    empty = f"sqlite:///{tmp / 'empty.db'}"
    migrate.upgrade(empty)
    plain = clean_env(DATABASE_URL=empty)
    plain.pop("PYTHONDONTWRITEBYTECODE", None)
    added = run_billing("companies", "add", "--name", "Bench GmbH", "--email", "bench@example.com", env=plain, cwd=tmp)
    assert added.returncode == 0, added.stderr

    demo = f"sqlite:///{tmp / 'demo.db'}"
    loader = clean_env(DATABASE_URL=demo, **SELLER_ENV)  # the demo saves test cards when Stripe is set
    for command in (("db", "upgrade"), ("demo",)):
        done = run_billing(*command, env=loader, cwd=tmp, timeout=600)
        assert done.returncode == 0, done.stderr
    operator = {
        **loader,
        "STRIPE_SECRET": "sk_test_" + "0" * 24,  # never called: get_balance does not reach Stripe
        "SMTP_URL": "smtp://127.0.0.1:2525",  # never connected: mail waits in the outbox for the worker
    }
    operator.pop("PYTHONDONTWRITEBYTECODE", None)

    billing = find_billing()
    return {
        "bare MCPServer": StdioServerParameters(
            command=sys.executable, args=["-m", "bench.mcp_bare_server"], env=plain, cwd=str(Path.cwd())
        ),
        "billing mcp": StdioServerParameters(command=billing, args=["mcp"], env=plain, cwd=str(tmp)),
        "billing, operator": StdioServerParameters(command=billing, args=["mcp"], env=operator, cwd=str(tmp)),
    }


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):>7.3f} {min(times):>6.3f} {max(times):>6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        params = servers(Path(tmp))
        first = {name: anyio.run(cold_start, p) for name, p in params.items()}  # writes the bytecode caches
        results = {name: Timings() for name in params}
        for _ in range(runs):  # interleaved, so a busy moment of the machine hits every server
            for name, p in params.items():
                listed, called = anyio.run(cold_start, p)
                results[name].tools_list.append(listed)
                results[name].first_call.append(called)
    base_list = statistics.median(results["bare MCPServer"].tools_list)
    base_call = statistics.median(results["bare MCPServer"].first_call)
    print(f"{runs} runs each; seconds from process start (median, min, max); ratio of medians to the bare server")
    print(f"{'server':<18} {'tools/list':>21} {'ratio':>6}   {'first get_balance':>21} {'ratio':>6}   first start")
    for name, t in results.items():
        list_ratio = statistics.median(t.tools_list) / base_list
        call_ratio = statistics.median(t.first_call) / base_call
        print(
            f"{name:<18} {spread(t.tools_list)} {list_ratio:>6.2f}   {spread(t.first_call)} {call_ratio:>6.2f}"
            f"   {first[name][0]:.3f}"
        )


if __name__ == "__main__":
    main()
