"""``billing simulate``: realistic traffic against the running local system (found through ``./var/run.json``).

Signed Retell ``call_started`` / ``call_ended`` webhooks for random companies and durations go to the
sidecar exactly as Retell would send them; top-ups are paid with the companies' saved cards through the
Stripe emulator, whose webhooks then reach the sidecar; auto top-ups follow by themselves when calls
drain a balance below its threshold. At the end: a summary table and the ledger check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
import httpx
from sqlalchemy import func, select

from billing_cli.local_system import NotRunning, local_settings, require_running
from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import notifications
from billing_core.errors import BillingError, CallChargeNotFound
from billing_core.money import Money
from billing_core.services.companies import CompanyView

ALERT_KINDS = ("low_balance", "auto_topup_failed", "auto_topup_disabled", "payment_failed", "high_failure_rate")
TOPUP_AMOUNTS = ("25.00", "50.00", "100.00", "150.00")


def retell_signature(body: bytes, api_key: str, millis: int) -> str:
    digest = hmac.new(api_key.encode(), body + str(millis).encode(), hashlib.sha256).hexdigest()
    return f"v={millis},d={digest}"


def call_duration(rng: random.Random) -> int:
    """Seconds: most calls are short, a few run long (a log-normal around two minutes, 5 s to 30 min)."""
    return max(5, min(1800, int(rng.lognormvariate(4.6, 0.8))))


@dataclass
class Tally:
    calls_sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    call_ids: list[str] = field(default_factory=list)
    topups_started: int = 0
    topup_failures: list[str] = field(default_factory=list)


def call_event(event: str, call_id: str, company_id: int, start_ms: int, seconds: int) -> dict[str, Any]:
    call: dict[str, Any] = {
        "call_id": call_id,
        "call_type": "phone_call",
        "agent_id": f"agent_sim_{company_id}",
        "direction": "inbound",
        "from_number": "+4915100000000",
        "to_number": "+493000000000",
        "metadata": {"company_id": str(company_id)},
        "call_status": "ongoing" if event == "call_started" else "ended",
        "start_timestamp": start_ms,
    }
    if event == "call_ended":
        call.update(end_timestamp=start_ms + seconds * 1000, duration_ms=seconds * 1000,
                    disconnection_reason="user_hangup")
    return {"event": event, "call": call}


class Simulation:
    def __init__(self, services: Services, webhook_url: str, api_key: str, rng: random.Random) -> None:
        self.svc = services
        self.url = f"{webhook_url}/api/retell/webhook"
        self.api_key = api_key
        self.rng = rng
        self.http = httpx.Client(timeout=30)
        self.tally = Tally()
        self.cards: dict[int, str] = {}
        self.run_id = uuid.uuid4().hex[:8]

    def post_call(self, company_id: int) -> None:
        seconds = call_duration(self.rng)
        call_id = f"sim-{self.run_id}-{len(self.tally.call_ids) + 1}"
        start_ms = int(time.time() * 1000) - seconds * 1000 - 1000
        for event in ("call_started", "call_ended"):
            body = json.dumps(call_event(event, call_id, company_id, start_ms, seconds)).encode()
            headers = {
                "content-type": "application/json",
                "x-retell-signature": retell_signature(body, self.api_key, int(time.time() * 1000)),
            }
            response = self.http.post(self.url, content=body, headers=headers)
            if response.status_code != 200:
                self.tally.rejected[f"{event} {response.status_code}"] += 1
        self.tally.calls_sent += 1
        self.tally.call_ids.append(call_id)

    def pay_topup(self, company: CompanyView) -> None:
        """A top-up by card, as the person would pay it; the card is Stripe's test Visa, saved on first use."""
        amount = Money.parse(self.rng.choice(TOPUP_AMOUNTS), company.currency)
        self.tally.topups_started += 1
        payments = self.svc.stripe.payments
        try:
            method = self.cards.get(company.id)
            if method is None:
                method = payments.attach_payment_method(company.id, "pm_card_visa", actor="simulate").id
                self.cards[company.id] = method
            outcome = payments.pay_with_saved_method(
                company_id=company.id,
                amount=amount,
                payment_method_id=method,
                initiated_by="simulate",
                idempotency_key=f"simulate:{self.run_id}:{self.tally.topups_started}",
            )
            if outcome.topup.status == "failed":
                self.tally.topup_failures.append(outcome.topup.failure_reason or "failed")
        except BillingError as error:
            self.tally.topup_failures.append(error.message)

    def close(self) -> None:
        self.http.close()


def wait_until_processed(svc: Services, call_ids: list[str], timeout: float = 120) -> list[str]:
    """Call ids still uncharged once the inbox is drained (or the time is up)."""
    deadline = time.monotonic() + timeout
    missing = list(call_ids)
    while missing and time.monotonic() < deadline:
        still = []
        for call_id in missing:
            try:
                svc.charging.get_charge(call_id)
            except CallChargeNotFound:
                still.append(call_id)
        missing = still
        if missing:
            time.sleep(0.5)
    return missing


def wait_for_topups(svc: Services, since: datetime, timeout: float = 60) -> None:
    """Let the auto top-ups the last calls started settle (the worker pays them through Stripe)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_ = [t for t in svc.topups.list(since=since, limit=1000) if t.status in ("pending", "processing")]
        if not open_:
            return
        time.sleep(0.5)


def summarise(svc: Services, sim: Simulation, started: datetime, seconds: float, missing: list[str]) -> dict[str, Any]:
    billed_seconds = 0
    revenue: Counter[str] = Counter()
    charged = 0
    for call_id in sim.tally.call_ids:
        if call_id in missing:
            continue
        charge = svc.charging.get_charge(call_id)
        charged += 1
        billed_seconds += charge.billed_seconds
        revenue[charge.amount.currency] += charge.amount.cents
    recent = svc.topups.list(since=started, limit=1000)
    succeeded = [t for t in recent if t.status == "succeeded"]
    credited: Counter[str] = Counter()
    for t in succeeded:
        credited[t.amount.currency] += t.amount.cents
    alerts = svc.db.read(
        lambda conn: conn.execute(
            select(func.count())
            .select_from(notifications)
            .where(notifications.c.kind.in_(ALERT_KINDS), notifications.c.created_at >= started)
        ).scalar_one()
    )
    ledger = svc.balances.check_ledger()
    return {
        "calls_sent": sim.tally.calls_sent,
        "calls_charged": charged,
        "calls_missing": missing,
        "webhooks_rejected": dict(sim.tally.rejected),
        "billed_minutes": f"{billed_seconds / 60:.1f}",
        "billed_seconds": billed_seconds,
        "revenue": [Money(cents, currency).as_json() for currency, cents in sorted(revenue.items())],
        "topups_started": sim.tally.topups_started,
        "topups_succeeded": len([t for t in succeeded if t.source != "auto_topup"]),
        "topups_failed": len([t for t in recent if t.status == "failed"]),
        "auto_topups": len([t for t in recent if t.source == "auto_topup"]),
        "credited": [Money(cents, currency).as_json() for currency, cents in sorted(credited.items())],
        "alerts": int(alerts),
        "low_balance_companies": len(svc.balances.low_balance_companies()),
        "ledger_ok": ledger.ok,
        "seconds": round(seconds, 1),
    }


def print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def amounts(values: list[dict[str, Any]]) -> str:
        return ", ".join(f"{Money(v['cents'], v['currency']).to_decimal():,f} {v['currency']}" for v in values) or "0"

    table = Table(title="billing simulate")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("calls sent", str(summary["calls_sent"])),
        ("calls charged", str(summary["calls_charged"])),
        ("billed minutes", summary["billed_minutes"]),
        ("revenue", amounts(summary["revenue"])),
        ("top-ups paid (succeeded / failed)", f"{summary['topups_succeeded']} / {summary['topups_failed']}"),
        ("auto top-ups", str(summary["auto_topups"])),
        ("credited by top-ups", amounts(summary["credited"])),
        ("alerts queued", str(summary["alerts"])),
        ("companies below their low-balance threshold", str(summary["low_balance_companies"])),
        ("webhooks rejected", str(sum(summary["webhooks_rejected"].values()))),
        ("ledger check", "ok" if summary["ledger_ok"] else "FAILED (run `billing ledger check`)"),
        ("time", f"{summary['seconds']} s"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    Console().print(table)


@click.command()
@click.option("--calls", type=click.IntRange(1, 1_000_000), default=200, show_default=True)
@click.option("--rate", type=click.FloatRange(0.1, 10_000), default=20, show_default=True, help="Calls per second.")
@click.option("--topups", type=click.IntRange(0), default=None, help="Top-ups to pay [default: one per 25 calls].")
@click.option("--seed", type=int, default=None, help="Repeat the same random traffic.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def simulate(calls: int, rate: float, topups: int | None, seed: int | None, as_json: bool) -> None:
    """Drive signed Retell calls and emulator top-ups against the running system (`billing run`)."""
    try:
        system = require_running()
    except NotRunning as error:
        click.echo(f"error (not_running): {error}", err=True)
        sys.exit(1)
    settings = local_settings()
    api_key = settings.retell_api_key.get_secret_value()
    svc = build_services(settings)
    sim = Simulation(svc, system.webhook_url, api_key, random.Random(seed))
    try:
        companies = [c for c in svc.companies.list() if c.prepaid_billing_enabled]
        if not companies:
            raise click.ClickException("no company with billing enabled; load the demo data first")
        # Companies with auto top-up refill themselves; the others pay by card now and then.
        payers = [c.id for c in companies if not c.auto_topup_enabled]
        topup_count = calls // 25 if topups is None else topups
        if topup_count and (not payers or svc.stripe_services is None or not settings.stripe_test_mode):
            topup_count = 0
            click.echo("top-ups need Stripe in test mode (or the emulator) and a company without auto top-up; "
                       "simulating calls only", err=True)
        topup_at = {round((i + 1) * calls / (topup_count + 1)) for i in range(topup_count)}
        started = svc.ctx.clock()
        begin = time.monotonic()
        with click.progressbar(length=calls, label="calls", file=sys.stderr) as bar:
            for i in range(calls):
                delay = begin + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sim.post_call(sim.rng.choice(companies).id)
                if i in topup_at:  # the one whose balance runs lowest pays
                    sim.pay_topup(min((svc.companies.show(c) for c in payers), key=lambda c: c.available.cents))
                bar.update(1)
        missing = wait_until_processed(svc, sim.tally.call_ids)
        wait_for_topups(svc, started)
        summary = summarise(svc, sim, started, time.monotonic() - begin, missing)
    finally:
        sim.close()
        svc.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print_table(summary)
    if not summary["ledger_ok"] or missing:
        sys.exit(1)
