"""Signed Retell ``call_ended`` events per second over HTTP into committed charges.

    python -m bench.webhooks [--events 3000] [--senders 32] [--backends sqlite,mariadb]

Each run starts a server process on a fresh database of 1,000 funded companies: ``billing webhooks``
(the sidecar, worker included) or the raw baseline ``bench.raw_webhook`` (a bare Starlette endpoint that
verifies the same signature and writes the same rows with the raw async driver). One sender process
fires pre-signed events from 32 concurrent connections. Latency to the 2xx is measured by the sender;
latency to the committed charge is the charge's ``charged_at`` minus the moment the request was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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
from billing_core.db.tables import call_charges
from tests.support.mariadb import free_port

KEY = "key_bench_retell"


@dataclass
class Run:
    database: str
    path: str
    events: int
    seconds: float
    to_2xx: list[float]
    to_commit: list[float]
    errors: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def events(n: int, tag: str) -> list[tuple[str, bytes, dict[str, str]]]:
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        call_id = f"{tag}-{i}"
        duration = rng.randint(5_000, 900_000)
        start = now_ms - duration - 60_000
        body = json.dumps({"event": "call_ended", "call": {
            "call_id": call_id, "call_type": "phone_call", "agent_id": "agent_bench", "call_status": "ended",
            "metadata": {"company_id": str(rng.randint(1, COMPANIES))}, "start_timestamp": start,
            "end_timestamp": start + duration, "duration_ms": duration}}).encode()
        out.append((call_id, body, {"x-retell-signature": symmetric["sign"](body.decode(), KEY),
                                     "content-type": "application/json"}))
    return out


def start_server(path: str, url: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "BENCH_DATABASE_URL": url, "RETELL_API_KEY": KEY,
           "STRIPE_WEBHOOK_SECRET": "whsec_bench"}
    env.pop("STRIPE_SECRET", None)
    if path == "sidecar":
        command = [str(Path(sys.executable).with_name("billing")), "webhooks", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "bench.raw_webhook:app", "--port", str(port), "--log-level",
                   "warning", "--no-access-log"]
    log = open(workdir / f"{path}-{port}.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1])
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/api/retell/webhook", content=b"{}", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{path} server did not start: {(workdir / f'{path}-{port}.log').read_text()[-2000:]}")


async def fire(port: int, batch: list[tuple[str, bytes, dict[str, str]]], senders: int) -> tuple[
        float, list[float], dict[str, float], int]:
    queue = list(reversed(batch))
    to_2xx: list[float] = []
    sent_at: dict[str, float] = {}
    errors = 0
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
        async def sender() -> None:
            nonlocal errors
            while queue:
                call_id, body, headers = queue.pop()
                sent_at[call_id] = time.time()
                t0 = time.perf_counter()
                response = await client.post("/api/retell/webhook", content=body, headers=headers)
                to_2xx.append(time.perf_counter() - t0)
                errors += response.status_code >= 300

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        return time.perf_counter() - start, to_2xx, sent_at, errors


def commit_latencies(url: str, sent_at: dict[str, float]) -> list[float]:
    db = Database(url, pool_size=1)
    try:
        rows = db.read(lambda conn: list(conn.execute(select(call_charges.c.call_id, call_charges.c.charged_at))))
    finally:
        db.dispose()
    return [max(0.0, charged.timestamp() - sent_at[call_id]) for call_id, charged in rows if call_id in sent_at]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--backends", default="sqlite,mariadb")
    args = parser.parse_args()
    backends = args.backends.split(",")
    runs: list[Run] = []
    with bench_databases(backends) as (server, tmp):
        index = 100
        for backend in backends:
            for path in ("sidecar", "raw"):
                index += 1
                url = fresh_database(backend, tmp, server, index)
                port = free_port()
                process = start_server(path, url, port, tmp)
                try:
                    batch = events(args.events, f"w{index}")
                    asyncio.run(fire(port, events(50, f"warm{index}"), args.senders))  # warm-up
                    seconds, to_2xx, sent_at, errors = asyncio.run(fire(port, batch, args.senders))
                    time.sleep(1)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                run = Run(backend, path, len(batch), seconds, to_2xx, commit_latencies(url, sent_at), errors)
                runs.append(run)
                print(f"  {backend:<8} {path:<8} {run.per_second:8.0f}/s  errors {errors}", file=sys.stderr)
    print_table(runs, args.senders)


def print_table(runs: list[Run], senders: int) -> None:
    print(f"\nSigned Retell call_ended over HTTP, {senders} concurrent senders, {runs[0].events} events per run, "
          f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}\n")
    header = (f"| {'database':<8} | {'path':<22} | {'events/s':>8} | {'2xx p50':>8} | {'2xx p99':>8} | "
              f"{'commit p50':>10} | {'commit p99':>10} | {'errors':>6} | {'vs raw':>6} |")
    print(header)
    print("|" + "|".join("-" * len(p) for p in header.split("|")[1:-1]) + "|")
    for r in runs:
        raw = next(o for o in runs if o.database == r.database and o.path == "raw")
        label = "billing webhooks" if r.path == "sidecar" else "raw endpoint + driver"
        print(f"| {r.database:<8} | {label:<22} | {r.per_second:>8.0f} | {Run.pct(r.to_2xx, .5):>6.1f}ms | "
              f"{Run.pct(r.to_2xx, .99):>6.1f}ms | {Run.pct(r.to_commit, .5):>8.1f}ms | "
              f"{Run.pct(r.to_commit, .99):>8.1f}ms | {r.errors:>6} | {r.per_second / raw.per_second:>5.2f}x |")


if __name__ == "__main__":
    main()
