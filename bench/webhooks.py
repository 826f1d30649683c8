"""Signed Retell ``call_ended`` events per second over HTTP into committed charges.

    python -m bench.webhooks [--seconds 10] [--connections 32] [--backends sqlite,mariadb]

Each run starts a server process on a fresh database of 1,000 funded companies: ``billing webhooks``
(the sidecar, worker included; on MariaDB once in the event loop on aiomysql, the default, and once with
``BILLING_ASYNC_DB_DRIVER=pymysql``, worker threads) or the raw baseline ``bench.raw_webhook`` (a bare
Starlette endpoint that verifies the same signature and writes the same rows with the raw async driver).
``wrk`` (Debian's package) posts pre-signed events, each once, from 32 connections; it measures throughput
and the latency to the 2xx. Both servers commit before they answer; "receipt to commit" is the charge's commit
time minus the moment the server took the request, from the rows themselves. "CPU ms" is the server's CPU time
(its processes, from /proc) per committed event while wrk runs: steadier than events per second on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from retell.lib.webhook_auth import symmetric
from sqlalchemy import select

from bench.charges import COMPANIES, fresh_database
from bench.common import bench_databases
from billing_core.db.database import Database
from billing_core.db.tables import call_charges, webhook_events
from tests.support.mariadb import free_port

KEY = "key_bench_retell"


@dataclass
class Run:
    database: str
    path: str
    seconds: float
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    committed: int
    commit_ms: tuple[float, float]
    cpu_seconds: float

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.committed if self.committed else float("nan")


def write_events(path: Path, n: int, tag: str) -> None:
    """``n`` distinct signed call_ended events, one per line: signature TAB body."""
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    with path.open("w") as out:
        for i in range(n):
            duration = rng.randint(5_000, 900_000)
            start = now_ms - duration - 60_000
            body = json.dumps(
                {
                    "event": "call_ended",
                    "call": {
                        "call_id": f"{tag}-{i}",
                        "call_type": "phone_call",
                        "agent_id": "agent_bench",
                        "call_status": "ended",
                        "metadata": {"company_id": str(rng.randint(1, COMPANIES))},
                        "start_timestamp": start,
                        "end_timestamp": start + duration,
                        "duration_ms": duration,
                    },
                },
                separators=(",", ":"),
            )
            out.write(f"{symmetric['sign'](body, KEY)}\t{body}\n")


def start_server(path: str, url: str, port: int, workdir: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BENCH_DATABASE_URL": url,
        "RETELL_API_KEY": KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_bench",
    }
    env.pop("STRIPE_SECRET", None)
    # the sidecar's MariaDB path: aiomysql in the event loop (the default), or PyMySQL in worker threads
    env["BILLING_ASYNC_DB_DRIVER"] = "pymysql" if path == "threads" else "aiomysql"
    if path in ("sidecar", "threads"):
        command = [
            str(Path(sys.executable).with_name("billing")),
            "webhooks",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.raw_webhook:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    with open(workdir / f"{path}-{port}.log", "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1]
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/api/retell/webhook", content=b"{}", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{path} server did not start: {(workdir / f'{path}-{port}.log').read_text()[-2000:]}")


def run_wrk(port: int, events: Path, seconds: int, connections: int, threads: int = 2) -> dict[str, float]:
    script = Path(__file__).with_name("retell_events.lua")
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(events),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": millis("50"),
        "p99": millis("99"),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and its living descendants (Linux /proc)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        # after the command: state ppid ... utime (14th field of the line) stime (15th)
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, total = {pid}, 0.0
    for _ in range(8):  # a few generations: the server, its workers and their pools
        tree |= {child for child, (parent, _) in stats.items() if parent in tree}
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


def commit_latencies(url: str) -> tuple[int, tuple[float, float]]:
    """Charges committed, and p50/p99 of commit time minus the request's receipt (milliseconds)."""
    db = Database(url, pool_size=1)
    try:
        rows = db.read(
            lambda conn: list(
                conn.execute(
                    select(call_charges.c.charged_at, webhook_events.c.received_at).join(
                        webhook_events, webhook_events.c.event_id == "call_ended:" + call_charges.c.call_id
                    )
                )
            )
        )
    finally:
        db.dispose()
    waits = sorted(max(0.0, (charged - received).total_seconds() * 1000) for charged, received in rows)
    if not waits:
        return 0, (float("nan"), float("nan"))
    return len(waits), (waits[len(waits) // 2], waits[min(len(waits) - 1, int(0.99 * len(waits)))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for both paths")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.webhooks needs wrk (apt-get install wrk; `make bench` installs it)")
    backends = args.backends.split(",")
    runs: list[Run] = []
    with bench_databases(backends) as (server, tmp):
        index = 100
        for backend in backends:
            for path in ("sidecar", "raw", "threads") if backend == "mariadb" else ("sidecar", "raw"):
                index += 1
                url = fresh_database(backend, tmp, server, index)
                events = tmp / f"events-{index}.tsv"
                write_events(events, 40_000, f"w{index}")
                port = free_port()
                process = start_server(path, url, port, tmp, args.workers)
                try:
                    cpu = tree_cpu_seconds(process.pid)
                    result = run_wrk(port, events, args.seconds, args.connections)
                    time.sleep(1)
                    cpu = tree_cpu_seconds(process.pid) - cpu
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                committed, commit_ms = commit_latencies(url)
                run = Run(
                    backend,
                    path,
                    args.seconds,
                    int(result["requests"]),
                    result["per_second"],
                    result["p50"],
                    result["p99"],
                    int(result["non_2xx"]),
                    committed,
                    commit_ms,
                    cpu,
                )
                runs.append(run)
                print(f"  {backend:<8} {path:<8} {run.per_second:8.0f}/s  committed {committed}", file=sys.stderr)
    print_table(runs, args.connections, args.workers)


LABELS = {
    "sidecar": "billing webhooks",
    "threads": "billing webhooks, threads",
    "raw": "raw endpoint + driver",
}


def print_table(runs: list[Run], connections: int, workers: int) -> None:
    print(
        f"\nSigned Retell call_ended over HTTP (wrk, {connections} connections, {runs[0].seconds} s per run, "
        f"{workers} server process(es) per path, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d})\n"
    )
    header = (
        f"| {'database':<8} | {'path':<25} | {'events/s':>8} | {'2xx p50':>8} | {'2xx p99':>8} | "
        f"{'receipt->commit p50':>19} | {'p99':>8} | {'non-2xx':>7} | {'CPU ms':>6} | {'vs raw':>6} |"
    )
    print(header)
    print("|" + "|".join("-" * len(p) for p in header.split("|")[1:-1]) + "|")
    for r in runs:
        raw = next(o for o in runs if o.database == r.database and o.path == "raw")
        label = LABELS[r.path]
        committed = r.committed / r.seconds
        print(
            f"| {r.database:<8} | {label:<25} | {committed:>8.0f} | {r.p50_ms:>6.1f}ms | {r.p99_ms:>6.1f}ms | "
            f"{r.commit_ms[0]:>17.1f}ms | {r.commit_ms[1]:>6.1f}ms | {r.non_2xx:>7} | {r.cpu_ms:>6.3f} | "
            f"{committed / (raw.committed / raw.seconds):>5.2f}x |"
        )


if __name__ == "__main__":
    main()
