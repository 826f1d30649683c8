"""No invented seller on invoices, and the seller's calendar (BILLING_TIMEZONE) for statements, alerts and mails."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from billing_core.bootstrap import Services, build_services
from tests.conftest import NO_SELLER, Clock, make_settings
from tests.integration.helpers import eur, new_company
from tests.integration.invoice_helpers import company_with_address, invoice_numbers, pay, queued
from tests.support.mariadb import free_port


@pytest.fixture
def unconfigured(database_url: str, clock: Clock) -> Iterator[Services]:
    """Services of an operator who has not set BILLING_SELLER_* (Settings has no default seller)."""
    built = build_services(make_settings(database_url, **NO_SELLER), clock=clock)
    try:
        yield built
    finally:
        built.close()


def test_without_a_configured_seller_a_top_up_is_credited_and_its_invoice_waits_with_an_admin_alert(
    unconfigured: Services, database_url: str, clock: Clock
):
    company = company_with_address(unconfigured)
    first = pay(unconfigured, company.id, "119.00", reference="RF18 0001")
    pay(unconfigured, company.id, "59.50", reference="RF18 0002")
    assert first.credited_now and unconfigured.balances.get(company.id).balance == eur("178.50")
    assert invoice_numbers(unconfigured) == []
    [alert] = queued(unconfigured, "invoice_blocked")  # once a day, not once per payment
    payload = json.loads(alert["payload"])
    assert alert["recipient"] == "admin" and payload["party"] == "seller"
    assert "BILLING_SELLER_NAME" in payload["missing"] and "BILLING_SELLER_CITY" in payload["missing"]
    assert unconfigured.invoices.issue_missing() == []

    configured = build_services(make_settings(database_url), clock=clock)
    try:
        assert configured.invoices.issue_missing() == ["RE-2026-000001", "RE-2026-000002"]
        assert configured.invoices.get("RE-2026-000001").document.seller.name == "AskProAI GmbH"
    finally:
        configured.close()


def test_the_seller_alert_names_the_configuration_not_the_company(unconfigured: Services):
    from billing_core.services.mail_templates import MailRenderer

    company = company_with_address(unconfigured)
    pay(unconfigured, company.id, "10.00")
    [alert] = queued(unconfigured, "invoice_blocked")
    rendered = MailRenderer(default_locale="en_GB").render(
        kind="invoice_blocked", recipient="admin", payload=json.loads(alert["payload"]), locale="en_GB"
    )
    assert rendered.subject == "Invoices waiting: the seller is not configured"
    assert "BILLING_SELLER_*" in rendered.text and "billing invoices issue-missing" in rendered.text


def test_a_seller_with_a_tax_number_instead_of_a_vat_id_can_invoice(database_url: str, clock: Clock):
    built = build_services(make_settings(database_url, seller_vat_id="", seller_tax_number="27/123/45678"),
                           clock=clock)
    try:
        company = company_with_address(built)
        pay(built, company.id, "10.00")
        assert invoice_numbers(built) == ["RE-2026-000001"]
    finally:
        built.close()


def test_the_monthly_statement_takes_the_month_of_the_sellers_calendar(services: Services, clock: Clock):
    company = new_company(services, funded="50.00")
    # 23:30 UTC on 30 November is 00:30 on 1 December in Berlin
    clock.now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    services.charging.charge_call(call_id="call-midnight", company_id=company.id, duration_seconds=60,
                                  started_at=clock.now)
    november, _ = services.statements.statement(company.id, 2026, 11)
    december, _ = services.statements.statement(company.id, 2026, 12)
    assert [c["call_id"] for c in november["calls"]] == []
    assert [c["call_id"] for c in december["calls"]] == ["call-midnight"]
    assert december["calls"][0]["started_at"] == "2026-12-01T00:30:00+01:00"


def test_low_balance_alerts_are_once_per_day_of_the_sellers_calendar(services: Services, clock: Clock):
    new_company(services, funded="5.00")  # below the default threshold of 20.00
    clock.now = datetime(2026, 11, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    assert services.alerts.queue_low_balance_alerts() == 1
    clock.advance(minutes=20)  # 23:50 in Berlin, the same day
    assert services.alerts.queue_low_balance_alerts() == 0
    clock.advance(minutes=20)  # 00:10 on 3 November in Berlin, still 2 November in UTC
    assert services.alerts.queue_low_balance_alerts() == 1
    keys = [row["dedupe_key"] for row in queued(services, "low_balance")]
    assert [key.rsplit(":", 1)[1] for key in keys] == ["2026-11-02", "2026-11-03"]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_times_in_mails_are_shown_in_the_configured_time_zone(
    database_url: str, clock: Clock, anyio_backend: str
):
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = make_settings(database_url, smtp_url=f"smtp://127.0.0.1:{controller.port}",
                             timezone="America/New_York", default_locale="en_US")
    clock.now = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 21:00 on 1 November in New York
    built = build_services(settings, clock=clock)
    try:
        new_company(built, funded="5.00")  # no address: its invoice waits, with an admin alert
        assert built.mailer is not None
        [delivery] = await built.mailer.send_due()
        assert delivery.kind == "invoice_blocked" and delivery.status == "sent"
    finally:
        built.close()
        controller.stop()
    [message] = box.messages
    text = " ".join(message.get_body(("plain",)).get_content().replace("\u202f", " ").split())
    assert "Automatic message from the billing system, November 1, 2026, 9:00 PM" in text, text
