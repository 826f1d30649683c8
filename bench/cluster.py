"""What synchronous replication costs: one MariaDB server against a 3-node Galera cluster, in one run.

    python -m bench.cluster [--charges 3000] [--payments 600] [--seconds 10] [--connections 32]

Three set-ups on this machine, each on a fresh database of 1,000 funded companies with invoice addresses:
a plain MariaDB server; the Galera cluster with every write sent to one node; and the cluster with the
writes spread over all three nodes (one replica per node, as with a per-replica ``DATABASE_URL``).

- **charges**: ``ChargingService.charge_call`` through ``services.call`` from 16 concurrent writers, calls
  spread over the 1,000 companies (writers take the nodes in turn).
- **payments with invoice**: ``TopupService.record_payment`` from 16 writers: every credit takes the next
  number from the one gap-free invoice counter row, a hot spot for the whole cluster.
- **webhooks**: ``billing webhooks`` (one process per node used) under ``wrk`` with pre-signed Retell
  ``call_ended`` events, the connections split over the sidecars; events/s counts committed charges.

All three nodes share this machine's cores with the clients, so the absolute figures are low; the ratios
between the set-ups are the point.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import func, select, update

from bench.charges import COMPANIES, STARTED, plan, seed
from bench.webhooks import run_wrk, start_server, write_events
from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from billing_core.db import migrate
from billing_core.db.database import Database
from billing_core.db.tables import call_charges, companies
from billing_core.money import Money
from tests.support.galera import GaleraCluster
from tests.support.mariadb import MariaDBServer, build_dir, free_port

WRITERS = 16
# Settings has no seller by default; invoices are issued only once one is configured.
SELLER = {
    "seller_name": "Bench GmbH",
    "seller_address_line1": "Friedrichstraße 1",
    "seller_postal_code": "10117",
    "seller_city": "Berlin",
    "seller_country": "DE",
    "seller_vat_id": "DE136695976",
}


@dataclass
class Row:
    setup: str
    workload: str
    per_second: float
    p50_ms: float
    p99_ms: float
    note: str = ""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def prepare(admin_url: str) -> None:
    migrate.upgrade(admin_url)
    seed(admin_url)
    db = Database(admin_url, pool_size=1)
    try:
        db.write(
            lambda conn: conn.execute(
                update(companies).values(
                    address_line1="Hauptstraße 1", postal_code="10115", city="Berlin", country="DE"
                )
            )
        )
    finally:
        db.dispose()


def open_services(urls: list[str]) -> list[Services]:
    return [
        build_services(Settings(_env_file=None, database_url=url, **SELLER))  # type: ignore[call-arg,arg-type]
        for url in urls
    ]


def drive(replicas: list[Services], jobs: list[Any], one: Callable[[Services, Any], Any]) -> tuple[float, list[float]]:
    """Run ``jobs`` from WRITERS async writers; writer ``w`` uses replica ``w % len(replicas)``."""
    latencies: list[float] = []
    queue = list(reversed(jobs))

    async def writer(index: int) -> None:
        services = replicas[index % len(replicas)]
        while queue:
            job = queue.pop()
            t0 = time.perf_counter()
            await services.call(one, services, job)
            latencies.append(time.perf_counter() - t0)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            for w in range(WRITERS):
                tg.start_soon(writer, w)

    start = time.perf_counter()
    anyio.run(run)
    return time.perf_counter() - start, latencies


def charge(services: Services, job: tuple[str, int, int]) -> None:
    call_id, company, seconds = job
    services.charging.charge_call(call_id=call_id, company_id=company, duration_seconds=seconds, started_at=STARTED)


def pay(services: Services, job: tuple[str, int]) -> None:
    reference, company = job
    services.topups.record_payment(company_id=company, amount=Money(2500, "EUR"), reference=reference, actor="bench")


def webhooks(urls: list[str], tmp: Path, seconds: int, connections: int, tag: str) -> Row:
    events = [tmp / f"events-{tag}-{n}.tsv" for n in range(len(urls))]
    for n, path in enumerate(events):
        write_events(path, 30_000, f"{tag}-{n}")
    ports = [free_port() for _ in urls]
    servers = [start_server("sidecar", url, port, tmp) for url, port in zip(urls, ports, strict=True)]
    share = max(2, connections // len(urls))
    try:
        with ThreadPoolExecutor(len(urls)) as pool:
            results = list(pool.map(lambda i: run_wrk(ports[i], events[i], seconds, share, threads=1),
                                    range(len(urls))))
        time.sleep(1)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    db = Database(urls[0], pool_size=1)
    try:
        committed = db.read(
            lambda conn: conn.execute(
                select(func.count()).where(call_charges.c.call_id.like(f"{tag}-%"))
            ).scalar_one()
        )
    finally:
        db.dispose()
    non_2xx = int(sum(r["non_2xx"] for r in results))
    p50 = sorted(r["p50"] for r in results)[len(results) // 2]
    return Row("", "webhooks (call_ended)", committed / seconds, p50, max(r["p99"] for r in results),
               f"{non_2xx} non-2xx" if non_2xx else "")


def measure(setup: str, urls: list[str], tmp: Path, args: argparse.Namespace, tag: str) -> list[Row]:
    rows: list[Row] = []
    replicas = open_services(urls)
    try:
        seconds, latencies = drive(replicas, plan(args.charges, False, f"{tag}c"), charge)
        rows.append(Row(setup, "charges, 1,000 companies", args.charges / seconds, pct(latencies, 0.5),
                        pct(latencies, 0.99)))
        rng = random.Random(5)
        jobs = [(f"{tag}p{n}", rng.randint(1, COMPANIES)) for n in range(args.payments)]
        seconds, latencies = drive(replicas, jobs, pay)
        rows.append(Row(setup, "payments with invoice no.", args.payments / seconds, pct(latencies, 0.5),
                        pct(latencies, 0.99)))
    finally:
        for services in replicas:
            services.close()
    row = webhooks(urls, tmp, args.seconds, args.connections, f"{tag}w")
    row.setup = setup
    rows.append(row)
    for r in rows:
        print(f"  {setup:<24} {r.workload:<26} {r.per_second:8.0f}/s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charges", type=int, default=3000)
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.cluster needs wrk (apt-get install wrk; `make bench` installs it)")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        server = MariaDBServer(build_dir() / f"mariadb-bench-{os.getpid()}").start()
        try:
            url = server.create_database("bench_single")
            prepare(url)
            rows += measure("MariaDB, one server", [url], tmp, args, "s")
        finally:
            server.stop()
            shutil.rmtree(server.base_dir, ignore_errors=True)
        print("  starting the Galera cluster ...", file=sys.stderr)
        cluster = GaleraCluster(build_dir() / f"galera-bench-{os.getpid()}").start()
        try:
            one = cluster.create_database("bench_one")
            prepare(one[0])
            rows += measure("Galera, writes to 1 node", one[:1], tmp, args, "g1")
            spread = cluster.create_database("bench_spread")
            prepare(spread[0])
            rows += measure("Galera, writes to 3 nodes", spread, tmp, args, "g3")
        finally:
            cluster.stop()
            cluster.remove()
    print_table(rows, args)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"\nOne MariaDB server against a 3-node Galera cluster ({WRITERS} writers for the services, wrk with "
        f"{args.connections} connections for {args.seconds} s; {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d})\n"
    )
    header = (
        f"| {'set-up':<25} | {'workload':<26} | {'per s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'vs one server':>13} |"
    )
    print(header)
    print("|" + "|".join("-" * len(p) for p in header.split("|")[1:-1]) + "|")
    for r in rows:
        base = next(o for o in rows if o.workload == r.workload)
        note = f" ({r.note})" if r.note else ""
        print(
            f"| {r.setup:<25} | {r.workload + note:<26} | {r.per_second:>7.0f} | {r.p50_ms:>7.1f} | {r.p99_ms:>7.1f} | "
            f"{r.per_second / base.per_second:>12.2f}x |"
        )


if __name__ == "__main__":
    main()
