"""The emulator-mode test checkout in a real browser: Debian's chromium driven by Playwright.

A person opens the link ``billing topups checkout`` prints, picks one of Stripe's test cards and pays
through localstripe's Stripe.js stand-in; the balance, the failed top-up with its reason and the invoice
with its mail (an .eml file from the SMTP sink) follow through localstripe's webhooks into the running
sidecar. Screenshots of every step are kept under ``build/screenshots/`` as test artifacts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.running_system import RunningSystem

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "test-checkout"
GRUBER = "Hausarztpraxis Dr. Gruber"
GRUBER_MAIL = "ordination@gruber-med.example"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    running = RunningSystem(tmp_path_factory.mktemp("browser-checkout"))
    running.start()
    try:
        yield running
    finally:
        running.interrupt()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page()
    try:
        yield opened
    finally:
        opened.close()


def company_id(system: RunningSystem, name: str) -> int:
    return int(next(c["id"] for c in system.json("companies", "list") if c["name"] == name))


def balance_cents(system: RunningSystem, company: int) -> int:
    return int(system.json("ledger", "balance", str(company))["balance"]["cents"])


def topup(system: RunningSystem, topup_id: int) -> dict[str, Any]:
    return next(t for t in system.json("topups", "list", "--limit", "1000") if t["id"] == topup_id)


def pay(system: RunningSystem, page: Page, company: int, amount: str, card: str) -> tuple[int, str]:
    """Open a fresh checkout link, pay with ``card``; returns the top-up id and the outcome the page shows."""
    started = system.json("topups", "checkout", "--company", str(company), "--amount", amount)
    topup_id = int(started["topup"]["id"])
    page.goto(started["checkout_url"])
    shot = SCREENSHOTS / card
    shot.mkdir(parents=True, exist_ok=True)
    assert page.inner_text("#test-banner").startswith("TEST PAGE")
    page.screenshot(path=str(shot / "1-checkout.png"))
    page.check(f"input[data-card={card}]")
    page.click("#pay")
    if card == "three-d-secure":
        page.get_by_text("Complete authentication").wait_for()
        assert page.inner_text("#test-banner").startswith("TEST PAGE")
        page.screenshot(path=str(shot / "2-three-d-secure.png"))
        page.get_by_text("Complete authentication").click()
    page.wait_for_function(
        "() => ['succeeded', 'failed'].includes(document.getElementById('outcome').dataset.status)", timeout=30_000
    )
    assert page.inner_text("#test-banner").startswith("TEST PAGE")
    page.screenshot(path=str(shot / "3-outcome.png"))
    return topup_id, page.inner_text("#outcome")


def mail_to(system: RunningSystem, address: str, subject: str, timeout: float = 60) -> EmailMessage:
    """The mail the SMTP sink wrote for ``address`` whose subject contains ``subject`` (waits for the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        for path in sorted((system.workdir / "var" / "mail").glob("*.eml")):
            message = BytesParser(policy=default).parsebytes(path.read_bytes())
            assert isinstance(message, EmailMessage)
            if address in str(message["To"]) and subject in str(message["Subject"]):
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail to {address} about {subject!r}")
        time.sleep(0.5)


def invoice_of(system: RunningSystem, topup_id: int) -> dict[str, Any]:
    (invoice,) = [i for i in system.json("invoices", "list") if i.get("topup_id") == topup_id]
    return dict(invoice)


def test_the_page_shows_company_amount_and_bonus(system, page):
    hofmann = company_id(system, "Kanzlei Hofmann & Partner")
    started = system.json("topups", "checkout", "--company", str(hofmann), "--amount", "300.00")
    page.goto(started["checkout_url"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "bonus.png"))
    assert page.inner_text("#company") == "Kanzlei Hofmann & Partner"
    assert page.inner_text("#amount") == "300,00\xa0€"
    assert page.inner_text("#bonus") == "15,00\xa0€"  # Hofmann's own rule: 5% from 250.00


def test_success_card_credits_the_balance_and_mails_the_invoice(system, page):
    amount = "60"
    gruber = company_id(system, GRUBER)
    before = balance_cents(system, gruber)
    topup_id, outcome = pay(system, page, gruber, "60.00", "success")
    assert outcome.startswith("Payment succeeded")
    assert topup(system, topup_id)["status"] == "succeeded"
    assert balance_cents(system, gruber) == before + 6000
    invoice = invoice_of(system, topup_id)
    assert invoice["number"].startswith("RE-") and invoice["gross"]["cents"] == int(amount) * 100
    mail = mail_to(system, GRUBER_MAIL, invoice["number"])
    assert [part.get_filename() for part in mail.iter_attachments()] == [f"{invoice['number']}.pdf"]


def test_decline_card_leaves_a_failed_top_up_with_its_reason_and_no_credit(system, page):
    gruber = company_id(system, GRUBER)
    before = balance_cents(system, gruber)
    topup_id, outcome = pay(system, page, gruber, "70.00", "decline")
    assert outcome == "Payment failed: Your card was declined. (card_declined)"
    failed = topup(system, topup_id)
    assert (failed["status"], failed["failure_code"]) == ("failed", "card_declined")
    assert balance_cents(system, gruber) == before


def test_three_d_secure_card_pays_after_the_cardholder_confirms(system, page):
    amount = "80"
    gruber = company_id(system, GRUBER)
    before = balance_cents(system, gruber)
    topup_id, outcome = pay(system, page, gruber, "80.00", "three-d-secure")
    assert outcome.startswith("Payment succeeded")
    assert topup(system, topup_id)["status"] == "succeeded"
    assert balance_cents(system, gruber) == before + 8000
    invoice = invoice_of(system, topup_id)
    assert invoice["number"].startswith("RE-") and invoice["gross"]["cents"] == int(amount) * 100
    mail = mail_to(system, GRUBER_MAIL, invoice["number"])
    assert [part.get_filename() for part in mail.iter_attachments()] == [f"{invoice['number']}.pdf"]


def test_a_paid_link_cannot_be_paid_again(system, page):
    gruber = company_id(system, GRUBER)
    topup_id, _ = pay(system, page, gruber, "40.00", "success")
    again = [t for t in system.json("topups", "list", "--limit", "1000") if t["id"] == topup_id][0]
    page.goto(again["checkout_url"])
    assert page.is_hidden("#payment")
    assert page.inner_text("#outcome").startswith("Payment succeeded")
