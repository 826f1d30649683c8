"""From a credited top-up to the invoice mail in a real SMTP server (aiosmtpd on loopback), with the stored PDF."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from billing_core.bootstrap import Services, build_services
from tests.conftest import make_settings
from tests.integration.helpers import eur
from tests.support.mariadb import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def mailing_services(database_url, clock, smtp) -> Iterator[Services]:
    _, port = smtp
    built = build_services(make_settings(database_url, smtp_url=f"smtp://127.0.0.1:{port}"), clock=clock)
    yield built
    built.close()


async def test_invoice_mail_carries_the_stored_pdf_to_the_company(mailing_services, smtp):
    inbox, _ = smtp
    services = mailing_services
    company = services.companies.add(
        name="Praxis Weber", email="praxis@example.com", actor="test", locale="de_DE",
        address_line1="Königsallee 12", postal_code="40212", city="Düsseldorf", country="DE",
    )
    result = services.topups.record_payment(company_id=company.id, amount=eur("100.00"), reference="RF18 1",
                                            actor="test")
    [invoice] = services.invoices.list(company_id=company.id)
    assert result.topup.id == invoice.topup_id

    assert services.invoice_files.render_pending() == [invoice.number]
    assert services.mailer is not None
    first = await services.mailer.send_due()
    again = await services.mailer.send_due()

    assert [d.status for d in first] == ["sent"] and again == []
    [message] = inbox.messages
    assert message["To"] == "Praxis Weber <praxis@example.com>"
    assert invoice.number in message["Subject"]
    [attachment] = [part for part in message.iter_attachments()]
    assert attachment.get_filename() == f"{invoice.number}.pdf"
    assert attachment.get_content() == services.invoice_files.pdf(invoice.number)
