"""The outbox sender against a real SMTP server (aiosmtpd on loopback), on SQLite and MariaDB."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from sqlalchemy import select

from billing_core.adapters.mail import MailConfigurationError, SmtpConfig, SmtpMailSender
from billing_core.bootstrap import Services, build_services
from billing_core.db.database import Database
from billing_core.db.tables import Base, notifications
from billing_core.ports import MailSendError
from billing_core.services import notifications as outbox
from billing_core.services.context import ServiceContext
from billing_core.services.mailer import MailerPolicy, MailerService, NotificationRow
from tests.conftest import Clock, make_settings
from tests.integration.helpers import eur

ADMIN = "finance@example.com"
FROM = "Billing <billing@example.com>"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the SMTP server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class Recorder:
    """An aiosmtpd handler that keeps what it accepts; ``reply`` makes it refuse DATA with that reply."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.reply: str | None = None
        self.refused = 0
        self.delay = 0.0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        if self.delay:
            await anyio.sleep(self.delay)
        with self._lock:
            if self.reply is not None:
                self.refused += 1
                return self.reply
            content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
            message = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 2.0.0 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.rcpt_tos]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
def mail_services(database_url: str, clock: Clock) -> Iterator[Services]:
    settings = make_settings(database_url, admin_email=ADMIN, default_locale="de_DE")
    built = build_services(settings, clock=clock)
    try:
        yield built
    finally:
        built.close()


PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


class FakeInvoices:
    """Stands in for the lead's loader: known bytes per invoice, and a record of what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[NotificationRow] = []
        self.fail_times = 0

    def __call__(self, row: NotificationRow) -> list[tuple[str, bytes, str]]:
        self.asked.append(row)
        if self.fail_times:
            self.fail_times -= 1
            raise FileNotFoundError(f"PDF of invoice {row.payload['invoice_id']} not rendered yet")
        return [(f"{row.payload['number']}.pdf", PDF + str(row.payload["invoice_id"]).encode(), "application/pdf")]


def mailer_for(
    services: Services, port: int, *, attachments: FakeInvoices | None = None, **policy: Any
) -> MailerService:
    sender = SmtpMailSender.from_url(f"smtp://127.0.0.1:{port}?timeout=5", from_address=FROM)
    return MailerService(services.ctx, sender, attachments=attachments, policy=MailerPolicy(**policy))


def enqueue(services: Services, kind: str, recipient: str, company_id: int | None, payload: dict[str, Any]) -> None:
    now = services.ctx.clock()
    services.db.write(
        lambda conn: outbox.enqueue(
            conn, kind=kind, recipient=recipient, company_id=company_id, payload=payload, now=now
        )
    )


def rows(services: Services) -> list[Any]:
    return services.db.read(
        lambda conn: conn.execute(select(notifications).order_by(notifications.c.id)).mappings().all()
    )


def billing_snapshot(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    def work(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {
            table.name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
            if table.name != "notifications"
        }

    return services.db.read(work)


def customer(
    services: Services,
    *,
    name: str = "Praxis Weber",
    email: str = "billing@example.com",
    locale: str | None = None,
    funded: str | None = None,
) -> Any:
    """A company with a full address, so crediting it issues an invoice instead of queueing an admin alert."""
    company = services.companies.add(
        name=name,
        email=email,
        actor="test",
        locale=locale,
        address_line1="Hauptstraße 1",
        postal_code="10115",
        city="Berlin",
        country="DE",
    )
    if funded is not None:
        services.topups.record_payment(
            company_id=company.id, amount=eur(funded), reference=f"seed-{company.id}", actor="test"
        )
    return company


def failed_payment(amount: str = "42.00") -> dict[str, Any]:
    return {
        "topup_id": 7,
        "amount": eur(amount).as_json(),
        "reason": "Your card was declined.",
        "code": "card_declined",
    }


# -- delivery -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_queued_mails_are_delivered_once_to_the_right_recipient_in_the_right_language(mail_services, smtp, clock):
    recorder, port = smtp
    german = customer(mail_services, name="Praxis Weber")
    english = customer(mail_services, name="Acme Ltd", email="accounts@acme.example", locale="en_GB")
    enqueue(mail_services, "payment_failed", "company", german.id, failed_payment())
    enqueue(mail_services, "payment_failed", "admin", german.id, failed_payment())
    enqueue(
        mail_services,
        "auto_topup_succeeded",
        "company",
        english.id,
        {"topup_id": 8, "amount": eur("50.00").as_json(), "balance_after": eur("61.50").as_json()},
    )
    mailer = mailer_for(mail_services, port)

    deliveries = await mailer.send_due()

    assert [d.status for d in deliveries] == ["sent", "sent", "sent"]
    assert len(recorder.received) == 3
    assert all(r.mail_from == "billing@example.com" for r in recorder.received)
    [company_mail] = recorder.to("billing@example.com")
    assert company_mail["Subject"] == "Ihre Zahlung über 42,00\xa0€ ist fehlgeschlagen"
    assert company_mail["From"].addresses[0].addr_spec == "billing@example.com"
    assert company_mail["To"].addresses[0].display_name == "Praxis Weber"
    text = company_mail.get_body(("plain",)).get_content()
    html = company_mail.get_body(("html",)).get_content()
    assert "Guten Tag Praxis Weber" in text and "Die Bank hat die Zahlung abgelehnt." in text
    assert "<strong>42,00\xa0€</strong>" in html
    [admin_mail] = recorder.to(ADMIN)
    assert admin_mail["Subject"] == "Zahlung fehlgeschlagen: Praxis Weber, 42,00\xa0€"  # admin: default locale
    assert "Your card was declined." in admin_mail.get_body(("plain",)).get_content()
    [english_mail] = recorder.to("accounts@acme.example")
    assert english_mail["Subject"] == "Auto top-up: €50.00 added"
    assert "Your new balance is €61.50." in english_mail.get_body(("plain",)).get_content()

    assert await mailer.send_due() == []
    clock.advance(hours=2)
    assert await mailer.send_due() == []
    assert len(recorder.received) == 3
    assert [(r["status"], r["attempts"], r["sent_at"], r["last_error"]) for r in rows(mail_services)] == [
        ("sent", 1, clock.now - timedelta(hours=2), None)
    ] * 3


@pytest.mark.anyio
async def test_invoice_pdf_arrives_byte_identical_as_an_attachment(mail_services, smtp):
    recorder, port = smtp
    company = customer(mail_services)
    enqueue(mail_services, "invoice", "company", company.id, {"invoice_id": 41, "number": "RE-2026-000041"})
    enqueue(mail_services, "credit_note", "company", company.id, {"invoice_id": 42, "number": "GS-2026-000001"})
    loader = FakeInvoices()

    deliveries = await mailer_for(mail_services, port, attachments=loader).send_due()

    assert [d.status for d in deliveries] == ["sent", "sent"]
    assert [(r.kind, r.payload["invoice_id"], r.company_id) for r in loader.asked] == [
        ("invoice", 41, company.id),
        ("credit_note", 42, company.id),
    ]
    invoice, credit_note = (r.message for r in recorder.received)
    assert invoice["Subject"] == "Ihre Rechnung RE-2026-000041"
    [pdf] = list(invoice.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "RE-2026-000041.pdf"
    assert pdf.get_content() == PDF + b"41"
    [note_pdf] = list(credit_note.iter_attachments())
    assert note_pdf.get_filename() == "GS-2026-000001.pdf" and note_pdf.get_content() == PDF + b"42"
    assert "RE-2026-000041" in invoice.get_body(("plain",)).get_content()


@pytest.mark.anyio
async def test_an_attachment_not_ready_yet_is_retried_later(mail_services, smtp, clock):
    recorder, port = smtp
    company = customer(mail_services)
    enqueue(mail_services, "invoice", "company", company.id, {"invoice_id": 5, "number": "RE-2026-000005"})
    loader = FakeInvoices()
    loader.fail_times = 1
    mailer = mailer_for(mail_services, port, attachments=loader)

    [first] = await mailer.send_due()
    assert first.status == "retry" and "not rendered yet" in (first.error or "")
    assert recorder.received == []
    clock.advance(minutes=1)
    [second] = await mailer.send_due()
    assert second.status == "sent"
    assert [r.message.get_content_type() for r in recorder.received] == ["multipart/mixed"]


@pytest.mark.anyio
async def test_a_451_leaves_the_mail_pending_with_backoff_and_a_later_cycle_delivers_it(mail_services, smtp, clock):
    recorder, port = smtp
    company = customer(mail_services)
    enqueue(mail_services, "payment_failed", "company", company.id, failed_payment())
    mailer = mailer_for(mail_services, port)
    recorder.reply = "451 4.3.0 Mailbox busy, try again later"
    start = clock.now

    [first] = await mailer.send_due()

    assert first.status == "retry" and first.next_attempt_at == start + timedelta(minutes=1)
    [row] = rows(mail_services)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 1, start + timedelta(minutes=1))
    assert "451" in row["last_error"] and row["sent_at"] is None
    recorder.reply = None
    assert await mailer.send_due() == []  # not due before the backoff ends

    clock.advance(minutes=1)
    [second] = await mailer.send_due()

    assert second.status == "sent"
    assert recorder.refused == 1 and len(recorder.received) == 1
    [row] = rows(mail_services)
    assert (row["status"], row["attempts"], row["sent_at"], row["last_error"]) == ("sent", 2, clock.now, None)


@pytest.mark.anyio
async def test_retries_back_off_exponentially_and_give_up_after_max_attempts(mail_services, smtp, clock):
    recorder, port = smtp
    company = customer(mail_services)
    enqueue(
        mail_services,
        "low_balance",
        "company",
        company.id,
        {"balance": eur("5.00").as_json(), "threshold": eur("20.00").as_json()},
    )
    mailer = mailer_for(mail_services, port, max_attempts=4)
    recorder.reply = "421 4.7.0 Too many connections"

    waits = []
    for _ in range(4):
        [delivery] = await mailer.send_due()
        if delivery.next_attempt_at is not None:
            waits.append(delivery.next_attempt_at - clock.now)
            clock.now = delivery.next_attempt_at

    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert delivery.status == "failed"
    [row] = rows(mail_services)
    assert (row["status"], row["attempts"]) == ("failed", 4) and "421" in row["last_error"]
    clock.advance(days=1)
    assert await mailer.send_due() == []
    assert recorder.refused == 4 and recorder.received == []


@pytest.mark.anyio
async def test_a_550_fails_the_mail_at_once_without_retrying(mail_services, smtp, clock):
    recorder, port = smtp
    company = customer(mail_services)
    enqueue(mail_services, "payment_failed", "company", company.id, failed_payment())
    enqueue(mail_services, "payment_failed", "admin", company.id, failed_payment())
    mailer = mailer_for(mail_services, port)
    recorder.reply = "550 5.1.1 Mailbox unavailable"

    deliveries = await mailer.send_due()

    assert [d.status for d in deliveries] == ["failed", "failed"]
    assert [(r["status"], r["attempts"]) for r in rows(mail_services)] == [("failed", 1), ("failed", 1)]
    assert all("550" in r["last_error"] for r in rows(mail_services))
    recorder.reply = None
    clock.advance(days=1)
    assert await mailer.send_due() == []
    assert recorder.received == []


@pytest.mark.anyio
async def test_an_unreachable_server_raises_nothing_and_changes_no_billing_table(mail_services, clock):
    company = customer(mail_services, funded="30.00")
    for _ in range(3):
        enqueue(mail_services, "payment_failed", "company", company.id, failed_payment())
    before = billing_snapshot(mail_services)
    closed_port = free_port()  # nothing listens there
    mailer = mailer_for(mail_services, closed_port)
    start = clock.now

    deliveries = await mailer.send_due()

    # the first mail counts an attempt; the outage hands the rest back untried
    assert [d.status for d in deliveries] == ["retry", "deferred", "deferred"]
    assert "cannot reach the SMTP server smtp://127.0.0.1" in (deliveries[0].error or "")
    assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(mail_services)] == [
        ("pending", 1, start + timedelta(minutes=1)),
        ("pending", 0, start + timedelta(minutes=1)),
        ("pending", 0, start + timedelta(minutes=1)),
    ]
    assert billing_snapshot(mail_services) == before


@pytest.mark.anyio
async def test_a_batch_that_outlives_half_its_lease_hands_back_what_it_has_not_started(mail_services, smtp, clock):
    recorder, port = smtp
    recorder.delay = 0.01
    company = customer(mail_services)
    for _ in range(3):
        enqueue(mail_services, "payment_failed", "company", company.id, failed_payment())
    mailer = mailer_for(mail_services, port, lease=timedelta(milliseconds=2))

    deliveries = await mailer.send_due()

    assert [d.status for d in deliveries] == ["sent", "deferred", "deferred"]  # one mail per cycle at least
    assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(mail_services)] == [
        ("sent", 1, clock.now + timedelta(milliseconds=2)),
        ("pending", 0, clock.now),
        ("pending", 0, clock.now),
    ]
    assert [d.status for d in await mailer.send_due()] == ["sent", "deferred"]
    assert [d.status for d in await mailer.send_due()] == ["sent"]
    assert len(recorder.received) == 3


@pytest.mark.anyio
async def test_a_421_closing_the_connection_defers_the_rest_of_the_batch(mail_services, smtp, clock):
    recorder, port = smtp
    company = customer(mail_services)
    for _ in range(2):
        enqueue(mail_services, "payment_failed", "company", company.id, failed_payment())
    recorder.reply = "421 4.3.2 Service shutting down"

    deliveries = await mailer_for(mail_services, port).send_due()

    assert [d.status for d in deliveries] == ["retry", "deferred"]
    assert recorder.refused == 1
    assert [r["attempts"] for r in rows(mail_services)] == [1, 0]


@pytest.mark.anyio
async def test_a_notification_without_a_template_fails_at_once(mail_services, smtp):
    recorder, port = smtp
    company = customer(mail_services)
    enqueue(mail_services, "dispute_opened", "company", company.id, {"dispute": "dp_1", "amount": 100})

    [delivery] = await mailer_for(mail_services, port).send_due()

    assert delivery.status == "failed" and "no mail template for dispute_opened to company" in (delivery.error or "")
    assert rows(mail_services)[0]["status"] == "failed"
    assert recorder.received == []


@pytest.mark.anyio
async def test_two_workers_sending_at_once_deliver_each_mail_exactly_once(mail_services, smtp, clock):
    recorder, port = smtp
    recorder.delay = 0.005
    company = customer(mail_services)
    for n in range(24):
        enqueue(mail_services, "payment_failed", "company" if n % 2 else "admin", company.id, failed_payment())
    settings = mail_services.ctx.settings
    workers, databases = [], [Database(settings.database_url, pool_size=2) for _ in range(2)]
    for db in databases:  # two processes' worth: each its own connection pool
        ctx = ServiceContext(db=db, settings=settings, clock=clock)
        sender = SmtpMailSender.from_url(f"smtp://127.0.0.1:{port}", from_address=FROM)
        workers.append(MailerService(ctx, sender))
    sent: list[list[int]] = [[], []]

    async def drain(index: int) -> None:
        while batch := await workers[index].send_due(limit=3):
            sent[index] += [d.notification_id for d in batch if d.status == "sent"]

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(drain, 0)
            group.start_soon(drain, 1)
    finally:
        for db in databases:
            db.dispose()

    ids = sorted(sent[0] + sent[1])
    assert ids == sorted(r["id"] for r in rows(mail_services))
    assert len(set(ids)) == 24
    headers = sorted(r.message["X-Billing-Notification"] for r in recorder.received)
    assert len(headers) == 24 and len(set(headers)) == 24
    assert all(r["status"] == "sent" and r["attempts"] == 1 for r in rows(mail_services))


# -- alerts ---------------------------------------------------------------------------------------


def test_low_balance_alert_is_queued_at_most_once_per_day_per_company(mail_services, clock):
    low = customer(mail_services, name="Low GmbH", funded="12.50")  # default threshold 20.00
    customer(mail_services, name="Rich GmbH", funded="80.00")
    alerts = mail_services.alerts

    assert alerts.queue_low_balance_alerts() == 1
    assert alerts.queue_low_balance_alerts() == 0
    clock.advance(hours=13)  # 23:00 in Berlin (BILLING_TIMEZONE), still the same day
    assert alerts.queue_low_balance_alerts() == 0
    clock.advance(hours=2)  # 01:00 the next day in Berlin
    assert alerts.queue_low_balance_alerts() == 1

    queued = rows(mail_services)
    assert [(r["kind"], r["recipient"], r["company_id"]) for r in queued] == [("low_balance", "company", low.id)] * 2
    assert [r["dedupe_key"] for r in queued] == [f"low_balance:{low.id}:2026-11-02", f"low_balance:{low.id}:2026-11-03"]
    payload = outbox_payload(queued[0])
    assert payload["balance"] == {"cents": 1250, "currency": "EUR"}
    assert payload["threshold"] == {"cents": 2000, "currency": "EUR"}


@pytest.mark.anyio
async def test_a_queued_low_balance_alert_reaches_the_company(mail_services, smtp):
    recorder, port = smtp
    customer(mail_services, name="Low GmbH", funded="12.50")
    mailer = mailer_for(mail_services, port)
    mail_services.alerts.queue_low_balance_alerts()

    [delivery] = await mailer.send_due()

    assert delivery.status == "sent"
    [message] = recorder.to("billing@example.com")
    assert message["Subject"] == "Ihr Guthaben ist niedrig: 12,50\xa0€"
    assert "unter Ihrer Warnschwelle von 20,00\xa0€" in message.get_body(("plain",)).get_content()


def test_failure_rate_alert_needs_more_than_ten_percent_and_comes_at_most_once_an_hour(mail_services, clock):
    company = customer(mail_services, funded="10.00")  # a bank transfer: not a payment that can fail
    check = mail_services.alerts
    assert check.queue_failure_rate_alert() is False  # no failures at all

    def payment(failed: bool) -> None:
        topup = mail_services.topups.create_pending(
            company_id=company.id,
            amount=eur("20.00"),
            source="payment_intent",
            initiated_by="test",
            idempotency_key=f"pay-{time.monotonic_ns()}",
        )
        if failed:
            mail_services.topups.fail(topup.id, reason="Your card was declined.", code="card_declined")

    for n in range(10):
        payment(failed=n == 0)
    assert check.queue_failure_rate_alert() is False  # 1 of 10 is not more than 10%
    payment(failed=True)
    assert check.queue_failure_rate_alert() is True  # 2 of 11
    assert check.queue_failure_rate_alert() is False
    clock.advance(minutes=50)
    payment(failed=True)
    assert check.queue_failure_rate_alert() is False  # still within the hour of the last alert
    clock.advance(minutes=15)  # the window now holds only the last failure: 1 of 1
    assert check.queue_failure_rate_alert() is True

    alerts = rows(mail_services)
    assert [(r["kind"], r["recipient"], r["company_id"]) for r in alerts] == [("high_failure_rate", "admin", None)] * 2
    assert [r["dedupe_key"] for r in alerts] == ["high_failure_rate:2026-11-02T09", "high_failure_rate:2026-11-02T10"]
    assert outbox_payload(alerts[0]) | {"since": None, "until": None} == {
        "failed": 2,
        "total": 11,
        "rate": "0.1818",
        "since": None,
        "until": None,
    }


def outbox_payload(row: Any) -> dict[str, Any]:
    return dict(json.loads(row["payload"]))


# -- the adapter ----------------------------------------------------------------------------------


def test_smtp_url_options_are_parsed_and_the_password_is_never_shown():
    config = SmtpConfig.from_url("smtp://mailer%40example.com:s3cr%3At%40pw@mail.example.com?starttls=true&timeout=12")
    assert (config.host, config.port, config.start_tls, config.use_tls, config.timeout) == (
        "mail.example.com",
        587,
        True,
        False,
        12.0,
    )
    assert (config.username, config.password) == ("mailer@example.com", "s3cr:t@pw")
    assert "s3cr" not in repr(config) and "s3cr" not in config.describe()
    sender = SmtpMailSender(config, from_address=FROM)
    assert "s3cr" not in repr(sender)
    implicit = SmtpConfig.from_url("smtps://relay.example.com")
    assert (implicit.port, implicit.use_tls, implicit.start_tls) == (465, True, False)
    assert SmtpConfig.from_url("smtp://127.0.0.1").port == 25


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://",
        "smtps://host?starttls=true",
        "smtp://host?starttls=maybe",
        "smtp://host?tls=1",
        "smtp://host:notaport",
        "smtp://host?timeout=-1",
    ],
)
def test_unusable_smtp_urls_are_refused_at_start_up(url):
    with pytest.raises(MailConfigurationError):
        SmtpConfig.from_url(url)


@pytest.mark.anyio
async def test_a_refused_login_is_transient_and_never_shows_the_password():
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"right"
        return AuthResult(success=ok, handled=False)

    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        wrong = SmtpMailSender.from_url(f"smtp://mailer:wr0ng-secret@127.0.0.1:{port}", from_address=FROM)
        message = EmailMessage()
        message["To"] = "someone@example.com"
        message["Subject"] = "hello"
        message.set_content("hi")
        with pytest.raises(MailSendError) as refused:
            await wrong.send(message)
        assert refused.value.retryable and refused.value.code == 535
        assert "wr0ng-secret" not in str(refused.value)
        right = SmtpMailSender.from_url(f"smtp://mailer:right@127.0.0.1:{port}", from_address=FROM)
        await right.send(message)
        assert [r.rcpt_tos for r in recorder.received] == [["someone@example.com"]]
    finally:
        controller.stop()
