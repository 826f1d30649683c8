"""p50/p99 of the MCP tools ``get_payment_overview`` and ``generate_financial_report`` over 30 days, each beside
raw SQL in the same run, on SQLite and MariaDB, on the dataset of bench/dataset.py.

    python -m bench.mcp_reports [--backends sqlite,mariadb] [--runs 40] [--sqlite-file PATH] [--mariadb-url URL]
                                [--companies 10000] [--calls 500000] [--ledger 1000000]

``--sqlite-file`` and ``--mariadb-url`` reuse a dataset (``python -m bench.dataset --url ...`` makes one; the
MariaDB one takes minutes to load); a SQLite file that does not exist yet is generated and kept.

Each scenario is timed along the way from the database to the MCP client, every path in the same run:

- "raw SQL, base tables": the bare driver sending the SELECTs the tool runs when statistics aggregate the
  base tables (the roll-ups switched off: the aggregation this benchmark compared against before the
  roll-ups), and fetching the rows, nothing else;
- "raw SQL, as run": the bare driver sending exactly the SELECTs the tool runs now (roll-ups + journal in one
  statement, balances, webhooks, lists), captured from one call: the floor of what the tool can cost;
- "service call": the read side alone, run as the tool runs it (``services.call``): the SQL through
  SQLAlchemy plus the read models (pydantic, babel-formatted amounts), no MCP;
- "tool, no protocol": ``MCPServer.call_tool`` on the server: the tool function plus the SDK turning its answer
  into a ``CallToolResult`` (output validation, the structured content and its text copy as JSON), no audit
  row, no JSON-RPC, no client;
- "MCP tool": the SDK's in-memory ``Client`` calling the tool of ``build_server(services)``: all of the above,
  the audit row every tool call writes, JSON-RPC both ways; the SDK client's re-validation of the structured
  content against the tool's output schema (jsonschema) is left out of this figure and shown on its own
  ("client schema check").

After the dataset is generated the roll-up job runs once, as ``billing worker`` does. Runs alternate between
the paths, so load from other processes hits all alike. Goal: p50 under 100 ms and within 1.5x of raw SQL;
"tool / this" is the MCP tool's p50 divided by the path's.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult
from sqlalchemy import Engine, event

from bench.common import bench_databases
from bench.dataset import END, generate
from bench.queries import TIMEZONE, percentile
from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from billing_core.queries import statistics as statistics_module
from mcp_server.caller import Caller
from mcp_server.reports import build_overview, build_report
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
    """Every SELECT the services send while the block runs, with its driver parameters.

    Listened for on every engine: on MariaDB the tools run in the event loop on the aiomysql engine, not on
    ``services.db.engine`` (both drivers take the same "format" parameters)."""
    found: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith("SELECT"):
            found.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield found
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert found, "no SELECT captured: the raw baselines would time nothing"


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


def service_call(services: Services, name: str, arguments: dict[str, Any]) -> Callable[[], Any]:
    """The read side's work behind the tool, as the tool runs it, without MCP."""
    period = services.queries.period(arguments["days"])
    company_id = arguments.get("company_id")
    if name == "get_payment_overview":
        return lambda: build_overview(services, period, company_id)
    return lambda: build_report(services, arguments["report_type"], period, company_id).model_dump(mode="json")


async def bench_backend(backend: str, url: str, runs: int) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(timing rows, answer size rows)."""
    settings = Settings(_env_file=None, database_url=url, timezone=TIMEZONE)  # type: ignore[call-arg]
    services = build_services(settings, clock=lambda: END)
    started = time.perf_counter()
    outcome = services.rollups.run()  # what the worker's statistics_rollups job does
    print(f"{backend}: roll-up job {outcome} in {time.perf_counter() - started:.1f} s", flush=True)
    mcp_settings = McpSettings(_env_file=None, rate_limit=100_000)  # type: ignore[call-arg]
    server = build_server(services, settings=mcp_settings, local_caller=Caller("bench", frozenset({"billing:read"})))
    raw = services.db.engine.raw_connection()
    rows: list[tuple[str, ...]] = []
    sizes: list[tuple[str, ...]] = []
    try:
        async with Client(server) as client:
            checks: list[float] = []
            answers: list[CallToolResult] = []

            async def tool(name: str, arguments: dict[str, Any]) -> None:
                result = await client.call_tool(name, arguments)
                assert not result.is_error, result.content
                # the share of the SDK client re-validating the structured content against the output schema
                begun = time.perf_counter()
                await client.session.validate_tool_result(name, result)
                checks.append((time.perf_counter() - begun) * 1000)
                answers[:] = [result]

            async def on_server(name: str, arguments: dict[str, Any]) -> None:
                result = await server.call_tool(name, arguments)
                assert isinstance(result, CallToolResult) and not result.is_error, result

            for scenario, (name, arguments) in SCENARIOS.items():
                with without_rollups(), captured_selects(services) as before:
                    await tool(name, arguments)
                with captured_selects(services) as now:
                    await tool(name, arguments)
                work = service_call(services, name, arguments)
                paths: dict[str, Callable[[], Any]] = {
                    "raw SQL, base tables": lambda s=before: run_raw(raw, s),
                    "raw SQL, as run": lambda s=now: run_raw(raw, s),
                    "service call": lambda w=work: services.call(w),
                    "tool, no protocol": lambda n=name, a=arguments: on_server(n, a),
                    "MCP tool": lambda n=name, a=arguments: tool(n, a),
                }
                timings: dict[str, list[float]] = {path: [] for path in paths}
                checks.clear()
                for round_ in range(runs + 3):  # three warm-up rounds
                    for path, fn in paths.items():
                        begun = time.perf_counter()
                        outcome_ = fn()
                        if inspect.isawaitable(outcome_):
                            await outcome_
                        elapsed = (time.perf_counter() - begun) * 1000
                        if path == "MCP tool":
                            elapsed -= checks[-1]  # the client's schema check, timed again after the call
                        if round_ >= 3:
                            timings[path].append(elapsed)
                tool_p50 = statistics.median(timings["MCP tool"])
                for path, values in timings.items():
                    p50 = statistics.median(values)
                    ratio = "" if path == "MCP tool" else f"{tool_p50 / p50:.2f}x"
                    rows.append((backend, scenario, path, f"{p50:.1f}", f"{percentile(values, 0.99):.1f}", ratio))
                rows.append((backend, scenario, "client schema check", f"{statistics.median(checks[3:]):.1f}", "", ""))
                answer = answers[0]
                text = sum(len(getattr(c, "text", "") or getattr(c, "data", "")) for c in answer.content)
                structured = len(json.dumps(answer.structured_content, separators=(",", ":")))
                sizes.append((backend, scenario, f"{text / 1024:.1f}", f"{structured / 1024:.1f}"))
    finally:
        raw.close()
        services.close()
    return rows, sizes


def print_rows(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


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
    sizes: list[tuple[str, ...]] = []
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
            found, found_sizes = anyio.run(bench_backend, backend, url, args.runs)
            rows += found
            sizes += found_sizes
    print(
        f"\n{size['companies']:,} companies, {size['ledger']:,} ledger entries, {size['calls']:,} calls; 30 days; "
        f"{args.runs} runs each, alternating; 'tool / this' = MCP tool p50 / this path's p50"
    )
    print_rows(("database", "scenario", "path", "p50 ms", "p99 ms", "tool / this"), rows)
    print("\nThe answer on the wire: its text content and its structured content (compact JSON), KiB")
    print_rows(("database", "scenario", "text KiB", "structured KiB"), sizes)


if __name__ == "__main__":
    main()
