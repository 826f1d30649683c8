"""``billing worker`` as real processes with a real SMTP server (aiosmtpd on loopback): what the README promises.

The test only does what an operator and the outside world do (``billing`` commands, signed webhooks to a
running ``billing webhooks``) and watches the mailbox; it never calls a job itself. The workers run their
jobs every second (``BILLING_JOB_*_SECONDS=1``) so the mails arrive within seconds.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader

from billing_core.bootstrap import Services
from billing_core.queries.operations import OutboxFilters, OutboxMail
from tests.integration.helpers import eur, new_company
from tests.integration.invoice_helpers import embedded_xml, xml_text
from tests.integration.webhook_helpers import RETELL_API_KEY, retell_call, retell_headers
from tests.support.mariadb import free_port
from tests.support.processes import SELLER_ENV, WebhookProcess, WorkerProcess, clean_env, run_billing

COMPANY_MAIL = "praxis@weber-dental.example"
ADMIN_MAIL = "finance@sprachwerk.example"
FAST_JOBS = {
    f"BILLING_JOB_{name}_SECONDS": "1"
    for name in ("INVOICE_PDFS", "MAIL_OUTBOX", "LOW_BALANCE_ALERTS", "FAILURE_RATE_ALERT", "EXPIRE_HOLDS")
}


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 2.0.0 accepted"

    def of_kind(self, kind: str) -> list[EmailMessage]:
        """Messages of one notification kind (the sender names it in X-Billing-Notification: id/kind)."""
        with self._lock:
            return [m for m in self.messages if str(m["X-Billing-Notification"]).endswith(f"/{kind}")]

    def wait_for(self, kind: str, *, count: int = 1, timeout: float = 90, why: Callable[[], str] = str) -> None:
        deadline = time.monotonic() + timeout
        while len(self.of_kind(kind)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} mail within {timeout} s\n{why()}")
            time.sleep(0.2)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def operator_env(database_url: str, mailbox: tuple[Mailbox, int]) -> dict[str, str]:
    """What an operator configures: the database, SMTP, the seller, the admin's address, fast job intervals."""
    _, port = mailbox
    return clean_env(
        DATABASE_URL=database_url,
        SMTP_URL=f"smtp://127.0.0.1:{port}",
        BILLING_ADMIN_EMAIL=ADMIN_MAIL,
        RETELL_API_KEY=RETELL_API_KEY,
        **SELLER_ENV,
        **FAST_JOBS,
    )


@pytest.fixture
def workers(tmp_path: Path, operator_env: dict[str, str]) -> Iterator[Callable[[int], list[WorkerProcess]]]:
    started: list[WorkerProcess] = []

    def start(count: int, *, drivers: tuple[str, ...] = ()) -> list[WorkerProcess]:
        """``count`` workers; ``drivers`` gives each its BILLING_ASYNC_DB_DRIVER (MariaDB's path) in turn."""
        envs = [
            {**operator_env, "BILLING_ASYNC_DB_DRIVER": drivers[i % len(drivers)]} if drivers else operator_env
            for i in range(count)
        ]
        made = [WorkerProcess(tmp_path / "run", envs[i], name=f"worker-{i}").start() for i in range(count)]
        started.extend(made)
        return made

    yield start
    for worker in started:
        worker.stop()


def billing(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = run_billing(*args, "--json", env=env, cwd=cwd)
    assert done.returncode == 0, f"billing {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def add_company(env: dict[str, str], cwd: Path, *extra: str) -> int:
    company = billing(
        env, cwd, "companies", "add", "--name", "Zahnarztpraxis Dr. Weber", "--email", COMPANY_MAIL,
        "--locale", "de_DE", "--address-line1", "Königsallee 12", "--postal-code", "40212",
        "--city", "Düsseldorf", "--country", "DE", *extra,
    )
    return int(company["id"])


def low_balance_mails(services: Services) -> tuple[OutboxMail, ...]:
    return services.queries.outbox(OutboxFilters(kind="low_balance")).items


def logs(processes: list[WorkerProcess]) -> Callable[[], str]:
    return lambda: "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in processes)


def test_a_recorded_bank_transfer_ends_in_an_invoice_mail_with_the_factur_x_pdf_attached(
    tmp_path: Path, operator_env: dict[str, str], mailbox: tuple[Mailbox, int], workers: Any
):
    box, _ = mailbox
    company_id = add_company(operator_env, tmp_path)
    topup = billing(
        operator_env, tmp_path, "topups", "record", "--company", str(company_id), "--amount", "119.00",
        "--reference", "RF18 5390 0754 7034",
    )
    running = workers(1)

    box.wait_for("invoice", why=logs(running))
    [mail] = box.of_kind("invoice")
    assert mail["To"].addresses[0].addr_spec == COMPANY_MAIL
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    number = attachment.get_filename().removesuffix(".pdf")
    assert number.startswith("RE-") and number in mail["Subject"]
    pdf = attachment.get_content()
    reader = PdfReader(io.BytesIO(pdf))
    assert "factur-x.xml" in reader.attachments
    root = embedded_xml(pdf)
    assert xml_text(root, ".//rsm:ExchangedDocument/ram:ID") == number
    assert xml_text(root, ".//ram:SellerTradeParty/ram:Name") == SELLER_ENV["BILLING_SELLER_NAME"]
    listed = billing(operator_env, tmp_path, "invoices", "list")
    assert [(i["number"], i["topup_id"]) for i in listed] == [(number, topup["id"])]


def test_a_charge_below_the_threshold_ends_in_one_low_balance_mail_that_day_with_two_workers_running(
    tmp_path: Path, operator_env: dict[str, str], mailbox: tuple[Mailbox, int], workers: Any
):
    box, _ = mailbox
    company_id = add_company(operator_env, tmp_path, "--low-balance-threshold", "20.00")
    billing(operator_env, tmp_path, "topups", "record", "--company", str(company_id), "--amount", "25.00",
            "--reference", "RF18 0001")
    sidecar = WebhookProcess(tmp_path / "sidecar", {**operator_env, "BILLING_WEBHOOK_WORKER": "false"}).start()
    try:
        # on MariaDB one worker runs its transactions in the event loop, the other in worker threads
        running = workers(2, drivers=("aiomysql", "pymysql"))
        box.wait_for("invoice", why=logs(running))  # the workers are up and doing their jobs
        assert box.of_kind("low_balance") == []

        def call_ended(call_id: str, seconds: int) -> None:
            body = retell_call("call_ended", call_id, company_id, seconds=seconds)
            answer = httpx.post(f"{sidecar.url}/api/retell/webhook", content=body, headers=retell_headers(body))
            assert answer.status_code == 200 and answer.json()["status"] == "processed", answer.text

        call_ended("call-crossing", 900)  # 15 min at 0.42 = 6.30: 25.00 -> 18.70, below 20.00
        box.wait_for("low_balance", why=logs(running))
        call_ended("call-later", 60)  # still below the threshold, the same day
        time.sleep(6)  # several job cycles of both workers
        [mail] = box.of_kind("low_balance")
        assert mail["To"].addresses[0].addr_spec == COMPANY_MAIL
        assert all(w.running() for w in running), logs(running)()
    finally:
        sidecar.stop()
    balance = billing(operator_env, tmp_path, "ledger", "balance", str(company_id))
    assert balance["balance"] == {"cents": 2500 - 630 - 42, "currency": "EUR"}


def test_a_hold_whose_call_ended_never_came_is_released_by_the_running_worker(
    tmp_path: Path, operator_env: dict[str, str], workers: Any, services: Services
):
    company = new_company(services, funded="10.00")
    # the test's clock stands in November 2026, far more than BILLING_MAX_CALL_SECONDS before the real now
    services.charging.reserve(call_id="call-lost", company_id=company.id, started_at=services.ctx.clock())
    assert services.balances.get(company.id).reserved == eur("2.10")
    running = workers(1)

    deadline = time.monotonic() + 60
    while services.balances.get(company.id).reserved != eur("0.00"):
        assert time.monotonic() < deadline, logs(running)()
        time.sleep(0.2)
    assert services.balances.get(company.id).available == eur("10.00")
    check = run_billing("ledger", "check", env=operator_env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_worker_without_smtp_still_queues_the_low_balance_alert(
    tmp_path: Path, operator_env: dict[str, str], services: Services
):
    company = new_company(services, funded="5.00")  # below the default threshold of 20.00
    env = {k: v for k, v in operator_env.items() if k != "SMTP_URL"}
    worker = WorkerProcess(tmp_path / "run", env, name="worker-no-smtp").start()
    try:
        deadline = time.monotonic() + 60
        while not low_balance_mails(services):
            assert time.monotonic() < deadline and worker.running(), worker.log_tail()
            time.sleep(0.2)
    finally:
        worker.stop()
    [alert] = low_balance_mails(services)
    assert alert.company_id == company.id and alert.status == "pending"  # waits for a worker with SMTP


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def running_pid(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status waits for whoever reaps it in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_pdf_processes_end_when_their_worker_is_killed(
    tmp_path: Path, operator_env: dict[str, str], mailbox: tuple[Mailbox, int], workers: Any
):
    box, _ = mailbox
    company_id = add_company(operator_env, tmp_path)
    billing(operator_env, tmp_path, "topups", "record", "--company", str(company_id), "--amount", "119.00",
            "--reference", "RF18 0002")
    [worker] = workers(1)
    box.wait_for("invoice", why=logs([worker]))  # the PDF was rendered: the pool's processes exist
    assert worker.process is not None
    pool = children_of(worker.process.pid)
    assert pool, "the worker rendered a PDF without a process pool"
    worker.process.kill()
    worker.process.wait()
    deadline = time.monotonic() + 15
    while (alive := {pid for pid in pool if running_pid(pid)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"orphaned PDF processes: {sorted(alive)}"
