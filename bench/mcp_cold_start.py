"""Cold start of ``billing mcp`` over stdio to the answer of tools/list, beside a bare MCPServer with one tool
started the same way (a fresh Python process each run). Goal: within 1.3x.

    python -m bench.mcp_cold_start [--runs 10]

Two set-ups of ``billing mcp``: a migrated, empty SQLite database with nothing else configured, and what a
real operator has: STRIPE_SECRET, SMTP_URL and a seller set, over a SQLite database holding the demo data.
Each run starts every server twice, interleaved, so a busy moment of the machine hits all of them: once to
list the tools and stop (wall time to the answer, and the CPU time the whole server process used), once to
list the tools and call ``get_balance`` (wall time to that answer: the billing server builds its database and
services on the first call, so this is where that cost went). On a busy machine the wall times spread
widely; the CPU time of the process shows the work done, whatever else runs.

The children may write bytecode caches (PYTHONDONTWRITEBYTECODE is dropped for them), as an installed
package has them; one unmeasured start of each server writes them where missing, and its tools/list time is
shown apart ("warm-up"): the first start after an install or an edit, which compiles, is that slow.
"""

from __future__ import annotations

import argparse
import resource
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
    cpu: list[float] = field(default_factory=list)
    first_call: list[float] = field(default_factory=list)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def list_tools(params: StdioServerParameters) -> tuple[float, float]:
    """Seconds from starting the process to the tools/list answer, and CPU seconds the process used in all."""
    cpu = children_cpu()
    started = time.perf_counter()
    async with Client(params) as client:
        tools = await client.list_tools()
        listed = time.perf_counter() - started
    assert tools.tools
    return listed, children_cpu() - cpu  # the process has ended and been waited for


async def first_call(params: StdioServerParameters) -> float:
    """Seconds from starting the process to the answer of its first tool call (after tools/list)."""
    started = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        balance = await client.call_tool("get_balance", {"company_id": 1})
        called = time.perf_counter() - started
    assert not balance.is_error, balance.content
    return called


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


def ratio(times: list[float], base: list[float]) -> str:
    return f"{statistics.median(times) / statistics.median(base):>5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        params = servers(Path(tmp))
        first = {name: anyio.run(list_tools, p)[0] for name, p in params.items()}  # writes the bytecode caches
        results = {name: Timings() for name in params}
        for _ in range(runs):  # interleaved, so a busy moment of the machine hits every server
            for name, p in params.items():
                listed, cpu = anyio.run(list_tools, p)
                results[name].tools_list.append(listed)
                results[name].cpu.append(cpu)
                results[name].first_call.append(anyio.run(first_call, p))
    base = results["bare MCPServer"]
    print(f"{runs} runs each: median, min, max in seconds; ratio of the medians to the bare server's")
    print(
        f"{'server':<18} {'tools/list (wall)':>21} {'ratio':>5}  {'process CPU':>21} {'ratio':>5}"
        f"  {'first get_balance':>21} {'ratio':>5}  warm-up"
    )
    for name, t in results.items():
        print(
            f"{name:<18} {spread(t.tools_list)} {ratio(t.tools_list, base.tools_list)}  {spread(t.cpu)} "
            f"{ratio(t.cpu, base.cpu)}  {spread(t.first_call)} {ratio(t.first_call, base.first_call)}"
            f"  {first[name]:.3f}"
        )


if __name__ == "__main__":
    main()
