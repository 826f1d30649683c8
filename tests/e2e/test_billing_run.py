"""``billing run`` end to end: the whole local system as real processes, driven by ``billing simulate``.

One system per module, on a temporary directory with free ports (local use runs on SQLite under ./var/).
The last test stops it with SIGINT and starts it again on the same data.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.running_system import RunningSystem, process_exists

CALLS = 300


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    running = RunningSystem(tmp_path_factory.mktemp("billing-run"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def simulated(system: RunningSystem) -> dict[str, Any]:
    done = system.billing("simulate", "--calls", str(CALLS), "--rate", "200", "--seed", "7", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def ledger(system: RunningSystem, company_id: int) -> list[dict[str, Any]]:
    """Every ledger entry of a company, page by page through ``billing ledger history``."""
    entries: list[dict[str, Any]] = []
    cursor: list[str] = []
    while True:
        page = system.json("ledger", "history", str(company_id), "--limit", "500", *cursor)
        entries += page["entries"]
        if page["next_cursor"] is None:
            return entries
        cursor = ["--cursor", page["next_cursor"]]


def test_run_starts_the_sidecar_the_emulator_and_the_mail_sink_and_records_them(system):
    info = system.info()
    assert info["mode"] == "emulator"
    assert set(info["children"]) == {"stripe-emulator", "mail-sink", "webhooks", "mcp"}
    assert all(process_exists(child["pid"]) for child in info["children"].values())
    assert info["webhooks"]["stripe"] == f"http://127.0.0.1:{system.webhook_port}/api/stripe/webhook"
    assert system.get("/readyz").status_code == 200
    output = system.output()
    assert "emulator mode" in output and "localstripe" in output
    assert f"{system.workdir / 'var' / 'mail'}/*.eml" in output
    assert "billing simulate --calls" in output
    assert (system.workdir / "var" / "mail").is_dir()
    assert info["mcp"]["url"] == f"http://127.0.0.1:{system.mcp_port}/mcp"
    assert '"mcpServers"' in output and '"stdio"' in output  # the Claude Desktop snippet


def test_demo_data_is_loaded_once_with_saved_cards_in_the_emulator(system):
    companies = {c["name"]: c for c in system.json("companies", "list")}
    assert len(companies) == 6
    gruber = companies["Hausarztpraxis Dr. Gruber"]
    methods = system.json("payment-methods", "list", str(gruber["id"]))
    assert [(m["last4"], m["used_for_auto_topup"]) for m in methods] == [("4242", True)]
    failed = system.json("topups", "list", "--status", "failed")
    assert [t["failure_code"] for t in failed] == ["insufficient_funds"]


def test_the_demos_invoices_reach_the_mail_sink_with_their_pdfs(system):
    numbers = {i["number"] for i in system.json("invoices", "list") if i["type"] == "invoice"}
    assert len(numbers) >= 6
    deadline = time.monotonic() + 90
    while True:
        subjects = {}
        for path in (system.workdir / "var" / "mail").glob("*.eml"):
            message = BytesParser(policy=default).parsebytes(path.read_bytes())
            subjects[str(message["Subject"])] = [p.get_filename() for p in message.iter_attachments()]
        mailed = {n for n in numbers if any(subject.endswith(n) for subject in subjects)}
        if mailed == numbers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert mailed == numbers
    assert all(files == [f"{s.split()[-1]}.pdf"] for s, files in subjects.items() if s.split()[-1] in numbers)


def test_simulated_calls_are_all_charged_and_every_balance_equals_its_ledger(system, simulated):
    assert simulated["calls_sent"] == simulated["calls_charged"] == CALLS
    assert simulated["calls_missing"] == [] and simulated["webhooks_rejected"] == {}
    assert simulated["billed_seconds"] > 0 and simulated["revenue"][0]["cents"] > 0
    assert simulated["topups_started"] == CALLS // 25
    assert simulated["ledger_ok"] is True
    assert system.json("ledger", "check")["ok"] is True
    for company in system.json("companies", "list"):
        assert sum(e["amount"]["cents"] for e in ledger(system, company["id"])) == company["balance"]["cents"]


def test_simulated_top_ups_are_paid_through_the_emulator_and_auto_top_ups_follow(system, simulated):
    topups = system.json("topups", "list", "--limit", "1000")
    paid = [t for t in topups if t["initiated_by"] == "simulate"]
    assert len(paid) == CALLS // 25
    assert all(t["status"] == "succeeded" and t["stripe_payment_intent_id"].startswith("pi_") for t in paid)
    auto = {c["id"] for c in system.json("companies", "list") if c["auto_topup_enabled"]}
    assert auto and not {t["company_id"] for t in paid} & auto  # those refill themselves
    refills = [t for t in topups if t["source"] == "auto_topup"]
    assert simulated["auto_topups"] == len(refills) >= 1
    assert all(t["status"] == "succeeded" and t["company_id"] in auto for t in refills)


@asynccontextmanager
async def mcp_client(url: str, token: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def mcp_ledger(client: Client, company_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {"company_id": company_id, "limit": 200}
    while True:
        page = (await client.call_tool("list_transactions", arguments)).structured_content
        assert page is not None
        entries += page["items"]
        if not page["next_cursor"]:
            return entries
        arguments["cursor"] = page["next_cursor"]


@pytest.mark.anyio
async def test_the_mcp_server_over_http_with_the_printed_token_agrees_with_the_ledger(system, simulated):
    info = system.info()
    token, url = info["mcp"]["token"], info["mcp"]["url"]
    assert f"MCP token        {token}" in system.output()
    companies = system.json("companies", "list")
    async with mcp_client(url, token) as client:
        for company in companies:
            balance = (await client.call_tool("get_balance", {"company_id": company["id"]})).structured_content
            assert balance is not None and balance["balance"]["cents"] == company["balance"]["cents"]
            entries = await mcp_ledger(client, company["id"])
            assert sum(e["amount"]["cents"] for e in entries) == company["balance"]["cents"], company["name"]
        gruber = next(c["id"] for c in companies if c["name"] == "Hausarztpraxis Dr. Gruber")
        history = (await client.call_tool("get_customer_payment_history", {"company_id": gruber})).structured_content
    assert history is not None
    assert {"bank_transfer", "auto_topup"} <= {t["source"] for t in history["topups"]["items"]}


def test_checkout_links_open_the_local_test_page_in_emulator_mode(system):
    started = system.json("topups", "checkout", "--company", "1", "--amount", "50.00")
    url = started["checkout_url"]
    assert url.startswith(f"http://127.0.0.1:{system.webhook_port}/test-checkout/{started['topup']['id']}?token=")
    page = system.get(url.removeprefix(f"http://127.0.0.1:{system.webhook_port}"))
    assert page.status_code == 200
    assert "TEST PAGE" in page.text and "Zahnarztpraxis Dr. Weber" in page.text and "50,00" in page.text
    forged = system.get(f"/test-checkout/{started['topup']['id']}?token=0000")
    assert "not valid" in forged.text and "Pay" not in forged.text


def test_a_child_that_dies_is_restarted_and_reported(system):
    before = system.info()["children"]["webhooks"]
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = system.info()["children"]["webhooks"]
        if after["restarts"] == 1 and after["pid"] and after["pid"] != before["pid"]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(system.output())
    assert "webhooks exited with -9; restarting" in system.output()
    assert system.get("/readyz").status_code == 200


def test_sigint_stops_every_child_and_a_second_run_reuses_the_data(system, simulated):
    info = system.info()
    pids = [child["pid"] for child in info["children"].values()]
    assert system.interrupt() == 0
    balances = [(c["id"], c["balance"]) for c in system.json("companies", "list")]
    assert [pid for pid in pids if process_exists(pid)] == []
    assert not system.run_file.exists()
    assert "stopped every child" in system.output()

    again = RunningSystem(Path(system.workdir))
    again.start()
    try:
        assert "existing data kept" in again.output()
        assert [(c["id"], c["balance"]) for c in again.json("companies", "list")] == balances
        gruber = next(c for c in again.json("companies", "list") if c["name"] == "Hausarztpraxis Dr. Gruber")
        assert [m["last4"] for m in again.json("payment-methods", "list", str(gruber["id"]))] == ["4242"]
    finally:
        again.interrupt()

