"""The read side on the MCP benchmark's dataset: p50/p99 of each query beside the same work as raw SQL.

    python -m bench.queries [--backends sqlite,mariadb] [--runs 40] [--sqlite-file PATH]
                            [--companies 10000] [--calls 500000] [--ledger 1000000]

The dataset (bench/dataset.py: 10,000 companies, 1,000,000 ledger entries, 500,000 calls over a year) is
generated for each backend, or taken from ``--sqlite-file`` when it already holds one. Scenarios:

- payment statistics over the last 30 days for the whole business (what ``get_payment_overview`` and
  ``generate_financial_report`` read), and for one company;
- the first page (50) of failed top-ups, of one company's ledger, and the company overview.

"service" is ``services.queries`` (SQLAlchemy Core, one read transaction, pydantic models with babel text),
after the worker's roll-up job ran once: whole-business statistics read the daily roll-ups plus the journal;
"raw SQL" sends the aggregation over the base tables written by hand through the bare driver and only fetches
the rows (bench/mcp_reports.py also compares with the statements as run now).
Runs alternate between the two, so load from other processes hits both alike. Goal: p50 under 100 ms and
within 1.5x of raw SQL.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import bench_databases
from bench.dataset import END, generate
from billing_core.bootstrap import build_services
from billing_core.config import Settings
from billing_core.queries.ledger import LedgerFilters
from billing_core.queries.payments import TopupFilters
from billing_core.queries.periods import Period, offset_segments

TIMEZONE = "Europe/Berlin"
COMPANY = 4242


def stored(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def day_sql(column: str, segments: list[tuple[datetime, int]], dialect: str) -> str:
    """The local day of a stored UTC column, by hand for each dialect (a CASE over the offset changes)."""

    def shifted(offset: int) -> str:
        if dialect == "sqlite":
            return f"date({column}, '{offset:+d} seconds')"
        return f"DATE(TIMESTAMPADD(SECOND, {offset}, {column}))"

    if len(segments) == 1:
        return shifted(segments[0][1])
    whens = " ".join(
        f"WHEN {column} < '{stored(segments[i + 1][0])}' THEN {shifted(offset)}"
        for i, (_, offset) in enumerate(segments[:-1])
    )
    return f"CASE {whens} ELSE {shifted(segments[-1][1])} END"


def statistics_sql(dialect: str, period: Period, company_id: int | None) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements payment statistics run, written by hand, with their parameters: one GROUP BY of the
    local day, or (SQLite, whole business) a UNION ALL of one range aggregate per day."""
    instants = period.day_bounds(TIMEZONE)
    bounds = [stored(b) for b in instants]
    days = len(bounds) - 1
    grouped = dialect != "sqlite" or company_id is not None
    segments = offset_segments(instants[0], instants[-1], TIMEZONE)
    p = "?" if dialect == "sqlite" else "%s"
    scope = f"currency = {p}" + (f" AND company_id = {p}" if company_id else "")
    scope_params: tuple[Any, ...] = ("EUR", *((company_id,) if company_id else ()))

    def per_day(table: str, column: str, columns: str, where: str = "", by: str = "") -> tuple[str, tuple[Any, ...]]:
        if grouped:
            return (
                f"SELECT {day_sql(column, segments, dialect)} AS day{', ' + by if by else ''}, {columns} "
                f"FROM {table} WHERE {column} >= {p} AND {column} < {p} AND {scope}{where} "
                f"GROUP BY day{', ' + by if by else ''}",
                (bounds[0], bounds[-1], *scope_params),
            )
        group = f" GROUP BY {by}" if by else ""
        branch = (
            f"SELECT {{i}} AS day{', ' + by if by else ''}, {columns} FROM {table} "
            f"WHERE {column} >= {p} AND {column} < {p} AND {scope}{where}{group}"
        )
        sql = " UNION ALL ".join(branch.format(i=i) for i in range(days))
        params = tuple(value for i in range(days) for value in (bounds[i], bounds[i + 1], *scope_params))
        return sql, params

    statements = [
        per_day("balance_topups", "created_at", "COUNT(*), SUM(amount)", by="status, source"),
        per_day(
            "balance_topups",
            "succeeded_at",
            "COUNT(*), SUM(amount), SUM(bonus_amount)",
            " AND status IN ('succeeded', 'partially_refunded', 'refunded')",
        ),
        per_day(
            "topup_refunds", "created_at", "COUNT(*), SUM(amount), SUM(bonus_reversed)", " AND status = 'succeeded'"
        ),
        per_day("balance_transactions", "created_at", "COUNT(*), SUM(amount)", " AND type = 'refund'"),
        per_day(
            "call_charges",
            "charged_at",
            "COUNT(*), SUM(billed_seconds), SUM(amount_charged), COUNT(DISTINCT company_id)",
        ),
        (
            f"SELECT COUNT(DISTINCT company_id) FROM call_charges WHERE charged_at >= {p} AND charged_at < {p} "
            f"AND {scope}",
            (bounds[0], bounds[-1], *scope_params),
        ),
        (f"SELECT COUNT(*), COALESCE(SUM(balance), 0) FROM prepaid_balances WHERE {scope}", scope_params),
    ]
    if company_id:
        statements.insert(0, (f"SELECT currency, locale FROM companies WHERE id = {p}", (company_id,)))
    else:
        if dialect == "sqlite":
            us = "(CAST(strftime('%s', {c}) AS INTEGER) * 1000000 + CAST(substr({c}, 21, 6) AS INTEGER))"
            elapsed = f"({us.format(c='processed_at')} - {us.format(c='received_at')})"
        else:
            elapsed = "TIMESTAMPDIFF(MICROSECOND, received_at, processed_at)"
        columns = f"provider, event_type, COUNT(*), SUM({elapsed}), MAX({elapsed})"
        window = f"FROM webhook_events WHERE received_at >= {p} AND received_at < {p} AND processed_at IS NOT NULL"
        if grouped:
            statements.append(
                (
                    f"SELECT {day_sql('received_at', segments, dialect)} AS day, {columns} {window} "
                    "GROUP BY day, provider, event_type",
                    (bounds[0], bounds[-1]),
                )
            )
        else:
            branch = (
                "SELECT {i} AS day, provider, event_type, COUNT(*), SUM(e), MAX(e) FROM "
                f"(SELECT provider, event_type, {elapsed} AS e {window} LIMIT -1) GROUP BY provider, event_type"
            )
            statements.append(
                (
                    " UNION ALL ".join(branch.format(i=i) for i in range(days)),
                    tuple(value for i in range(days) for value in (bounds[i], bounds[i + 1])),
                )
            )
    return statements


def list_sql(dialect: str, company: int) -> dict[str, list[tuple[str, tuple[Any, ...]]]]:
    p = "?" if dialect == "sqlite" else "%s"
    return {
        "failed top-ups, first page": [
            (
                "SELECT t.*, c.locale FROM balance_topups t JOIN companies c ON c.id = t.company_id "
                f"WHERE t.status IN ({p}) ORDER BY t.id DESC LIMIT 51",
                ("failed",),
            )
        ],
        "company ledger, first page": [
            (f"SELECT id FROM companies WHERE id = {p}", (company,)),
            (
                "SELECT l.*, c.locale FROM balance_transactions l JOIN companies c ON c.id = l.company_id "
                f"WHERE l.company_id = {p} ORDER BY l.id DESC LIMIT 51",
                (company,),
            ),
        ],
        "company overview": [
            (
                "SELECT * FROM companies c JOIN prepaid_balances b ON b.company_id = c.id WHERE c.id = " + p,
                (company,),
            ),
            (f"SELECT * FROM billing_rates WHERE company_id = {p} ORDER BY effective_from", (company,)),
            (f"SELECT agent_id FROM retell_agents WHERE company_id = {p} ORDER BY agent_id", (company,)),
        ],
    }


def run_raw(connection: Any, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    cursor = connection.cursor()
    try:
        for sql, params in statements:
            cursor.execute(sql, params)
            cursor.fetchall()
    finally:
        cursor.close()
    connection.rollback()


def measure(runs: int, paths: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(3):  # warm caches and the statement cache
        for fn in paths.values():
            fn()
    for _ in range(runs):
        for name, fn in paths.items():
            started = time.perf_counter()
            fn()
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_backend(backend: str, url: str, runs: int, company: int) -> list[tuple[str, ...]]:
    settings = Settings(_env_file=None, database_url=url, timezone=TIMEZONE)  # type: ignore[call-arg]
    services = build_services(settings, clock=lambda: END)
    services.rollups.run()  # the worker's statistics_rollups job: whole-business statistics read its roll-ups
    queries = services.queries
    dialect = services.db.dialect
    raw = services.db.engine.raw_connection()
    period = Period.last_days(30, now=END, timezone=TIMEZONE)
    lists = list_sql(dialect, company)
    scenarios: dict[str, dict[str, Callable[[], object]]] = {
        "statistics, 30 days, business": {
            "service": lambda: queries.payment_statistics(period),
            "raw SQL": lambda: run_raw(raw, statistics_sql(dialect, period, None)),
        },
        "statistics, 30 days, one company": {
            "service": lambda: queries.payment_statistics(period, company_id=company),
            "raw SQL": lambda: run_raw(raw, statistics_sql(dialect, period, company)),
        },
        "failed top-ups, first page": {
            "service": lambda: queries.topups(TopupFilters(statuses=("failed",))),
            "raw SQL": lambda: run_raw(raw, lists["failed top-ups, first page"]),
        },
        "company ledger, first page": {
            "service": lambda: queries.ledger_entries(LedgerFilters(company_id=company)),
            "raw SQL": lambda: run_raw(raw, lists["company ledger, first page"]),
        },
        "company overview": {
            "service": lambda: queries.company(company),
            "raw SQL": lambda: run_raw(raw, lists["company overview"]),
        },
    }
    rows = []
    try:
        for scenario, paths in scenarios.items():
            timings = measure(runs, paths)
            raw_p50 = statistics.median(timings["raw SQL"])
            for path, values in timings.items():
                p50 = statistics.median(values)
                rows.append(
                    (
                        backend,
                        scenario,
                        path,
                        f"{p50:.1f}",
                        f"{percentile(values, 0.99):.1f}",
                        f"{p50 / raw_p50:.2f}x" if path == "service" else "",
                    )
                )
    finally:
        raw.close()
        services.close()
    return rows


def print_table(rows: list[tuple[str, ...]], *, last: str = "vs raw") -> None:
    header = ("database", "scenario", "path", "p50 ms", "p99 ms", last)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--sqlite-file", type=Path, default=None, help="reuse a dataset made by bench.dataset")
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    size = {"companies": args.companies, "calls": args.calls, "ledger": args.ledger}
    rows: list[tuple[str, ...]] = []
    with bench_databases(backends) as (server, scratch):
        for backend in backends:
            if backend == "sqlite":
                if args.sqlite_file is not None and args.sqlite_file.exists():
                    url = f"sqlite:///{args.sqlite_file}"
                else:
                    url = f"sqlite:///{args.sqlite_file or scratch / 'bench.db'}"
                    started = time.perf_counter()
                    generate(url, **size)
                    print(f"sqlite dataset generated in {time.perf_counter() - started:.0f} s", flush=True)
            else:
                assert server is not None
                url = server.create_database("billing_bench_queries")
                started = time.perf_counter()
                generate(url, **size)
                print(f"mariadb dataset generated in {time.perf_counter() - started:.0f} s", flush=True)
            rows += bench_backend(backend, url, args.runs, min(COMPANY, args.companies))
    print(
        f"\n{size['companies']:,} companies, {size['ledger']:,} ledger entries, {size['calls']:,} calls; "
        f"{args.runs} runs each; p99 of {args.runs} runs is close to their maximum"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
