"""p50/p99 of the MCP tools ``get_payment_overview`` and ``generate_financial_report`` over 30 days, each beside
raw SQL in the same run, on SQLite and MariaDB, on the dataset of bench/dataset.py.

    python -m bench.mcp_reports [--backends sqlite,mariadb] [--runs 40] [--sqlite-file PATH]
                                [--companies 10000] [--calls 500000] [--ledger 1000000]

"MCP tool": the SDK's in-memory ``Client`` calling the tool of ``build_server(services)`` (argument
validation, the read side, pydantic models with babel text, structured content as JSON, the audit row every
tool call writes, and the SDK client re-validating the structured content against the tool's output schema
with jsonschema, which the table also shows on its own). Two raw baselines, each the bare driver sending SQL
and fetching the rows, nothing else:

- "raw SQL, base tables": what the tool reads when statistics aggregate the base tables (the roll-ups
  switched off: the aggregation this benchmark compared against before the roll-ups);
- "raw SQL, as run": exactly the SELECTs the tool runs now (roll-ups + journal in one statement, balances,
  webhooks, lists), captured from one call.

After the dataset is generated the roll-up job runs once, as ``billing worker`` does. Runs alternate between
the three paths, so load from other processes hits all alike. Goal: p50 under 100 ms and within 1.5x of raw
SQL.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from sqlalchemy import event

from bench.common import bench_databases
from bench.dataset import END, generate
from bench.queries import TIMEZONE, percentile, print_table
from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from billing_core.queries import statistics as statistics_module
from mcp_server.caller import Caller
from mcp_server.server import build_server
from mcp_server.settings import McpSettings

COMPANY = 4242
Statement = tuple[str, Any]

SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "overview, business": ("get_payment_overview", {"days": 30}),
    "overview, one company": ("get_payment_overview", {"days": 30, "company_id": COMPANY}),
    "report summary, business": ("generate_financial_report", {"report_type": "summary", "days": 30}),
    "report summary, one company": (
        "generate_financial_report",
        {"report_type": "summary", "days": 30, "company_id": COMPANY},
    ),
    "report detailed, business": ("generate_financial_report", {"report_type": "detailed", "days": 30}),
    "report tax, business": ("generate_financial_report", {"report_type": "tax", "days": 30}),
}


@contextmanager
def captured_selects(services: Services) -> Iterator[list[Statement]]:
    """Every SELECT the engine sends while the block runs, with its driver parameters."""
    found: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith("SELECT"):
            found.append((statement, parameters))

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        yield found
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)


@contextmanager
def without_rollups() -> Iterator[None]:
    """Statistics aggregate the base tables, as before the roll-ups (the query module's one switch point)."""
    original = statistics_module.rolled_up_rows
    statistics_module.rolled_up_rows = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        statistics_module.rolled_up_rows = original


def run_raw(connection: Any, statements: list[Statement]) -> None:
    cursor = connection.cursor()
    try:
        for sql, params in statements:
            cursor.execute(sql, params)
            cursor.fetchall()
    finally:
        cursor.close()
    connection.rollback()


async def bench_backend(backend: str, url: str, runs: int) -> list[tuple[str, ...]]:
    settings = Settings(_env_file=None, database_url=url, timezone=TIMEZONE)  # type: ignore[call-arg]
    services = build_services(settings, clock=lambda: END)
    started = time.perf_counter()
    outcome = services.rollups.run()  # what the worker's statistics_rollups job does
    print(f"{backend}: roll-up job {outcome} in {time.perf_counter() - started:.1f} s", flush=True)
    mcp_settings = McpSettings(_env_file=None, rate_limit=100_000)  # type: ignore[call-arg]
    server = build_server(services, settings=mcp_settings, local_caller=Caller("bench", frozenset({"billing:read"})))
    raw = services.db.engine.raw_connection()
    rows: list[tuple[str, ...]] = []
    try:
        async with Client(server) as client:
            checks: list[float] = []

            async def tool(name: str, arguments: dict[str, Any]) -> None:
                result = await client.call_tool(name, arguments)
                assert not result.is_error, result.content
                # the share of the SDK client re-validating the structured content against the output schema
                begun = time.perf_counter()
                await client.session.validate_tool_result(name, result)
                checks.append((time.perf_counter() - begun) * 1000)

            for scenario, (name, arguments) in SCENARIOS.items():
                with without_rollups(), captured_selects(services) as before:
                    await tool(name, arguments)
                with captured_selects(services) as now:
                    await tool(name, arguments)
                paths: dict[str, Callable[[], Any]] = {
                    "MCP tool": lambda n=name, a=arguments: tool(n, a),
                    "raw SQL, base tables": lambda s=before: run_raw(raw, s),
                    "raw SQL, as run": lambda s=now: run_raw(raw, s),
                }
                timings: dict[str, list[float]] = {path: [] for path in paths}
                checks.clear()
                for round_ in range(runs + 3):  # three warm-up rounds
                    for path, fn in paths.items():
                        begun = time.perf_counter()
                        outcome_ = fn()
                        if path == "MCP tool":
                            await outcome_
                            # the client's schema check, timed again after the call, is not part of the figure
                            elapsed = (time.perf_counter() - begun) * 1000 - checks[-1]
                        else:
                            elapsed = (time.perf_counter() - begun) * 1000
                        if round_ >= 3:
                            timings[path].append(elapsed)
                tool_p50 = statistics.median(timings["MCP tool"])
                check_p50 = statistics.median(checks[3:])
                rows.append((backend, scenario, "  of which client schema check", f"{check_p50:.1f}", "", ""))
                for path, values in timings.items():
                    p50 = statistics.median(values)
                    rows.append(
                        (
                            backend,
                            scenario,
                            path,
                            f"{p50:.1f}",
                            f"{percentile(values, 0.99):.1f}",
                            "" if path == "MCP tool" else f"{tool_p50 / p50:.2f}x",
                        )
                    )
    finally:
        raw.close()
        services.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--sqlite-file", type=Path, default=None, help="reuse a dataset made by bench.dataset")
    parser.add_argument("--mariadb-url", default=None, help="reuse a MariaDB schema made by bench.dataset")
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    size = {"companies": args.companies, "calls": args.calls, "ledger": args.ledger}
    rows: list[tuple[str, ...]] = []
    wanted_server = [b for b in backends if b != "mariadb" or args.mariadb_url is None]
    with bench_databases(wanted_server) as (server, scratch):
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite:///{args.sqlite_file or scratch / 'bench.db'}"
                fresh = args.sqlite_file is None or not args.sqlite_file.exists()
            elif args.mariadb_url is not None:
                url, fresh = args.mariadb_url, False
            else:
                assert server is not None
                url, fresh = server.create_database("billing_bench_reports"), True
            if fresh:
                started = time.perf_counter()
                generate(url, **size)
                print(f"{backend} dataset generated in {time.perf_counter() - started:.0f} s", flush=True)
            rows += anyio.run(bench_backend, backend, url, args.runs)
    print(
        f"\n{size['companies']:,} companies, {size['ledger']:,} ledger entries, {size['calls']:,} calls; 30 days; "
        f"{args.runs} runs each, alternating; 'vs tool' = MCP tool p50 / this p50"
    )
    print_table(rows, last="vs tool")


if __name__ == "__main__":
    main()
