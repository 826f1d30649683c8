"""Services against fakes of their ports (tests/fakes.py): no emulator, no SMTP server, no WeasyPrint.

The database is real (SQLite and MariaDB); what the payment provider, the mail server or the PDF renderer
answers is stated by the test. The real adapters are covered by the localstripe and aiosmtpd suites.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import notifications
from billing_core.errors import StripeUnavailable
from billing_core.ports import MailSendError
from billing_core.services.invoice_files import InvoiceFileService
from billing_core.services.mailer import MailerPolicy, MailerService
from billing_core.services.statements import StatementService
from tests.conftest import Clock, make_settings
from tests.fakes import FakeCard, FakeMailSender, FakePaymentGateway, FakePdfRenderer
from tests.integration.helpers import assert_ledger_ok, eur, new_company
from tests.integration.invoice_helpers import company_with_address, pay


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gateway() -> FakePaymentGateway:
    return FakePaymentGateway()


@pytest.fixture
def faked(database_url: str, clock: Clock, gateway: FakePaymentGateway) -> Iterator[Services]:
    built = build_services(
        make_settings(database_url, admin_email="finance@example.com"), clock=clock, gateway=gateway
    )
    try:
        yield built
    finally:
        built.close()


def queued(services: Services) -> list[tuple[str, str]]:
    return services.db.read(
        lambda conn: [
            (r.kind, r.recipient)
            for r in conn.execute(select(notifications.c.kind, notifications.c.recipient).order_by(notifications.c.id))
        ]
    )


def with_auto_topup(services: Services, gateway: FakePaymentGateway, card: FakeCard) -> int:
    company = new_company(services, funded="5.00")
    method = gateway.add_card(card)
    services.stripe.payments.attach_payment_method(company.id, method, actor="test")
    services.stripe.payments.use_for_auto_topup(company.id, method, actor="test")
    services.companies.set(
        company.id,
        actor="test",
        auto_topup_enabled=True,
        auto_topup_threshold=eur("10.00"),
        auto_topup_amount=eur("50.00"),
    )
    return company.id


# -- payments and auto top-up ---------------------------------------------------------------------------


def test_declined_auto_topup_credits_nothing_and_tells_company_and_admin(faked, gateway):
    company_id = with_auto_topup(faked, gateway, FakeCard(decline_code="insufficient_funds"))

    outcome = faked.stripe.auto_topup.trigger(company_id)

    assert outcome.topup is not None and outcome.topup.status == "failed"
    assert outcome.topup.failure_code == "insufficient_funds"
    assert faked.balances.get(company_id).balance == eur("5.00")
    assert faked.companies.show(company_id).auto_topup_enabled is True  # one failure is not enough to stop
    assert queued(faked)[-2:] == [("auto_topup_failed", "company"), ("payment_failed", "admin")]
    assert gateway.count("confirm_payment_intent") == 1
    assert_ledger_ok(faked)


def test_auto_topup_switches_itself_off_after_the_configured_declines_in_a_row(faked, gateway, clock):
    company_id = with_auto_topup(faked, gateway, FakeCard(decline_code="card_declined"))

    outcomes = []
    for _ in range(faked.ctx.settings.auto_topup_max_failures):
        outcomes.append(faked.stripe.auto_topup.trigger(company_id))
        clock.advance(days=1)  # past the daily attempt limit
    after = faked.stripe.auto_topup.trigger(company_id)

    assert [o.topup.status for o in outcomes if o.topup] == ["failed"] * faked.ctx.settings.auto_topup_max_failures
    assert outcomes[-1].disabled
    assert not after.triggered
    assert faked.companies.show(company_id).auto_topup_enabled is False
    assert ("auto_topup_disabled", "company") in queued(faked)


def test_an_auto_topup_the_provider_could_not_answer_stays_pending_without_credit(faked, gateway):
    company_id = with_auto_topup(faked, gateway, FakeCard())
    gateway.fail_next["confirm_payment_intent"] = [StripeUnavailable("Stripe did not answer")]

    outcome = faked.stripe.auto_topup.trigger(company_id)

    assert outcome.topup is not None and outcome.topup.status == "pending"
    assert "left pending for reconciliation" in outcome.reason
    assert faked.balances.get(company_id).balance == eur("5.00")
    assert ("auto_topup_failed", "company") not in queued(faked)


def test_a_successful_auto_topup_credits_the_balance_once(faked, gateway):
    company_id = with_auto_topup(faked, gateway, FakeCard())

    first = faked.stripe.auto_topup.trigger(company_id)
    again = faked.stripe.auto_topup.trigger(company_id)

    assert first.topup is not None and first.topup.status == "succeeded"
    assert not again.triggered
    assert faked.balances.get(company_id).balance == eur("55.00")
    assert gateway.count("create_payment_intent") == 1
    assert_ledger_ok(faked)


def test_a_declined_saved_card_payment_is_a_failed_topup_with_the_decline_code(faked, gateway):
    company = new_company(faked)
    method = gateway.add_card(FakeCard(decline_code="expired_card"))
    faked.stripe.payments.attach_payment_method(company.id, method, actor="test")

    outcome = faked.stripe.payments.pay_with_saved_method(
        company_id=company.id,
        amount=eur("30.00"),
        payment_method_id=method,
        initiated_by="api:client",
        idempotency_key="pay-1",
    )

    assert (outcome.topup.status, outcome.topup.failure_code) == ("failed", "expired_card")
    assert faked.balances.get(company.id).balance == eur("0.00")


# -- mail -------------------------------------------------------------------------------------------------


def low_balance_alert_queued(services: Services) -> None:
    """One mail in the outbox: a company with an address (so its top-up is invoiced, not reported to the
    admin) whose balance is below the default threshold of 20.00."""
    company = company_with_address(services, name="Praxis Weber")
    pay(services, company.id, "12.50")
    assert services.alerts.queue_low_balance_alerts() == 1
    assert queued(services) == [("low_balance", "company")]


def mailer_with(services: Services, sender: FakeMailSender) -> MailerService:
    policy = MailerPolicy(max_attempts=3, base_delay=timedelta(minutes=1))
    return MailerService(services.ctx, sender, policy=policy)


@pytest.mark.anyio
async def test_a_temporary_send_error_is_retried_after_the_backoff_and_then_sent(faked, clock):
    low_balance_alert_queued(faked)
    sender = FakeMailSender(failures=[MailSendError("451 try again later", retryable=True, code=451)])
    mailer = mailer_with(faked, sender)

    [first] = await mailer.send_due()
    not_yet = await mailer.send_due()
    clock.advance(minutes=1)
    [second] = await mailer.send_due()

    assert (first.status, first.error, first.attempts) == ("retry", "451 try again later", 1)
    assert first.next_attempt_at == clock.now
    assert not_yet == []
    assert (second.status, second.attempts) == ("sent", 2)
    assert [m["To"] for m in sender.sent] == ["Praxis Weber <buchhaltung@weber.example>"]


@pytest.mark.anyio
async def test_a_permanent_refusal_fails_the_mail_at_once(faked, clock):
    low_balance_alert_queued(faked)
    sender = FakeMailSender(failures=[MailSendError("550 no such mailbox", retryable=False, code=550)])
    mailer = mailer_with(faked, sender)

    [delivery] = await mailer.send_due()
    clock.advance(hours=2)

    assert (delivery.status, delivery.error) == ("failed", "550 no such mailbox")
    assert await mailer.send_due() == []
    assert sender.attempts == 1 and sender.sent == []


@pytest.mark.anyio
async def test_temporary_errors_until_the_last_attempt_fail_the_mail(faked, clock):
    low_balance_alert_queued(faked)
    sender = FakeMailSender(failures=[MailSendError("421 busy", retryable=True, code=421)] * 3)
    mailer = mailer_with(faked, sender)

    statuses = []
    for _ in range(3):
        statuses += [d.status for d in await mailer.send_due()]
        clock.advance(hours=1)

    assert statuses == ["retry", "retry", "failed"]
    assert sender.sent == []


# -- invoice files ----------------------------------------------------------------------------------------


def test_render_pending_stores_the_renderers_pdf_and_queues_one_invoice_mail(faked):
    renderer = FakePdfRenderer()
    files = InvoiceFileService(faked.ctx, renderer)
    company = company_with_address(faked)
    pay(faked, company.id, "119.00")

    assert files.render_pending() == ["RE-2026-000001"]
    assert files.render_pending() == []
    files.regenerate("RE-2026-000001")

    assert renderer.invoices == ["RE-2026-000001", "RE-2026-000001"]
    assert files.pdf("RE-2026-000001") == b"%PDF-fake RE-2026-000001 11900"
    assert faked.invoices.get("RE-2026-000001").pdf_sha256 is not None
    mails = faked.db.read(
        lambda conn: conn.execute(select(notifications).where(notifications.c.kind == "invoice")).mappings().all()
    )
    assert len(mails) == 1
    assert json.loads(mails[0]["payload"])["gross"] == {"cents": 11900, "currency": "EUR"}


def test_a_renderer_failure_leaves_the_invoice_unrendered_and_renders_the_others(faked):
    class FailsOnFirst(FakePdfRenderer):
        def render_invoice(self, doc):  # type: ignore[no-untyped-def]
            if doc.number == "RE-2026-000001":
                raise ValueError("broken template")
            return super().render_invoice(doc)

    files = InvoiceFileService(faked.ctx, FailsOnFirst())
    company = company_with_address(faked)
    pay(faked, company.id, "10.00", reference="a")
    pay(faked, company.id, "20.00", reference="b")

    assert files.render_pending() == ["RE-2026-000002"]
    assert files.has_unrendered()


def test_the_statement_goes_through_the_renderer(faked):
    renderer = FakePdfRenderer()
    company = new_company(faked, funded="10.00")

    doc, pdf = StatementService(faked.ctx, renderer).statement(company.id, 2026, 11)

    assert pdf == b"%PDF-fake statement 2026-11"
    assert doc["totals"]["topups"] == 1000
