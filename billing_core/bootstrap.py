"""Wiring: ``build_services(settings)`` is the one place that builds the database and the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from billing_core.adapters.pdf import WeasyPrintRenderer
from billing_core.concurrency import ServiceCaller
from billing_core.config import Settings
from billing_core.db.database import Database
from billing_core.errors import DatabaseMisconfigured, StripeConfigurationError
from billing_core.ports import PaymentGateway
from billing_core.queries import Queries
from billing_core.services.adjustments import AdjustmentService
from billing_core.services.alerts import AlertService
from billing_core.services.auto_topup import AutoTopupRecorder, AutoTopupService
from billing_core.services.balances import BalanceService
from billing_core.services.bonus_rules import BonusRuleService
from billing_core.services.charging import ChargingService
from billing_core.services.companies import CompanyService
from billing_core.services.context import ServiceContext, utcnow
from billing_core.services.disputes import DisputeService
from billing_core.services.invoice_files import InvoiceFileService
from billing_core.services.invoices import InvoiceService
from billing_core.services.payments import PaymentService, forget_payment_method_in
from billing_core.services.reconcile import ReconcileService
from billing_core.services.refunds import RefundService
from billing_core.services.rollups import StatisticsRollups
from billing_core.services.schedule import JobSchedule
from billing_core.services.statements import StatementService
from billing_core.services.test_checkout import TestCheckoutService
from billing_core.services.topup_refunds import TopupRefundService
from billing_core.services.topups import TopupService
from billing_core.services.webhooks.inbox import InboxSettings, WebhookInbox
from billing_core.services.webhooks.retell_events import RetellEventHandler
from billing_core.services.webhooks.stripe_events import StripeEventHandler

if TYPE_CHECKING:
    from billing_core.services.mailer import MailerService, NotificationRow


@dataclass(frozen=True)
class StripeServices:
    """The use cases that need Stripe; absent when STRIPE_SECRET is not configured."""

    gateway: PaymentGateway
    payments: PaymentService
    auto_topup: AutoTopupService
    topup_refunds: TopupRefundService
    reconcile: ReconcileService
    test_checkout: TestCheckoutService | None  # emulator mode only (BILLING_TEST_CHECKOUT_URL)


@dataclass(frozen=True)
class Services:
    ctx: ServiceContext
    companies: CompanyService
    balances: BalanceService
    charging: ChargingService
    refunds: RefundService
    adjustments: AdjustmentService
    topups: TopupService
    bonus_rules: BonusRuleService
    webhooks: WebhookInbox
    invoices: InvoiceService
    invoice_files: InvoiceFileService
    statements: StatementService
    alerts: AlertService
    mailer: MailerService | None
    stripe_services: StripeServices | None
    schedule: JobSchedule
    rollups: StatisticsRollups
    """Folds the statistics journal into daily roll-ups (the worker's statistics_rollups job)."""
    queries: Queries
    """The read side: what operators, reports and assistants read (see billing_core.queries)."""

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def call(self) -> ServiceCaller:
        """How async entry points run a service call: ``await services.call(fn, *args)``."""
        return self.ctx.call

    @property
    def stripe(self) -> StripeServices:
        if self.stripe_services is None:
            raise StripeConfigurationError("Stripe is not configured: set STRIPE_SECRET (and STRIPE_TEST_MODE)")
        return self.stripe_services

    def close(self) -> None:
        if self.stripe_services is not None:
            self.stripe_services.gateway.close()
        self.ctx.db.dispose()


def build_gateway(settings: Settings) -> PaymentGateway | None:
    secret = settings.stripe_secret.get_secret_value()
    if not secret:
        return None
    from billing_core.adapters.stripe_on_demand import StripeOnDemand  # the SDK: imported on the first Stripe call

    return StripeOnDemand(secret, test_mode=settings.stripe_test_mode, api_base=settings.stripe_api_base)


def build_mailer(ctx: ServiceContext, files: InvoiceFileService) -> MailerService | None:
    """The outbox sender, when SMTP_URL is set (otherwise mails wait in the outbox)."""
    if not ctx.settings.smtp_url:
        return None
    from billing_core.adapters.mail import SmtpMailSender
    from billing_core.services.mailer import MailerService  # Jinja2 mail templates: only where mail is sent

    def invoice_pdf(row: NotificationRow) -> list[tuple[str, bytes, str]]:
        number, pdf = files.pdf_by_id(int(row.payload["invoice_id"]))
        return [(f"{number}.pdf", pdf, "application/pdf")]

    sender = SmtpMailSender.from_url(ctx.settings.smtp_url, from_address=ctx.settings.mail_from)
    return MailerService(ctx, sender, attachments=invoice_pdf)


def open_database(url: str) -> Database:
    """The database of DATABASE_URL; a URL that cannot work is :class:`DatabaseMisconfigured`, not a traceback.

    Nothing is connected yet: an unreachable server or a missing schema shows on the first transaction."""
    try:
        return Database(url)
    except Exception as error:  # not a URL, an unknown dialect, a driver that is not installed
        raise DatabaseMisconfigured(
            f"DATABASE_URL cannot be used ({type(error).__name__}: {_reason(error, url)}); "
            "expected e.g. sqlite:////absolute/path/billing.db or mysql+pymysql://user:password@host/billing"
        ) from None


def _reason(error: Exception, url: str) -> str:
    """The error's first line, without the URL's password should a driver quote it."""
    text = (str(error).strip().splitlines() or [""])[0][:200]
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def build_services(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    db: Database | None = None,
    gateway: PaymentGateway | None = None,
    call: ServiceCaller | None = None,
) -> Services:
    """Every service on ``settings``. ``call`` is the process's one hop to the services' threads, when the
    caller needs it before the services exist (``billing mcp`` builds them on the first tool call)."""
    settings = settings or Settings()
    ctx = ServiceContext(
        db=db or open_database(settings.database_url),
        settings=settings,
        clock=clock,
        call=call or ServiceCaller.for_settings(settings),
    )
    topups = TopupService(ctx)
    charging = ChargingService(ctx)
    invoices = InvoiceService(ctx)
    renderer = WeasyPrintRenderer()
    invoice_files = InvoiceFileService(ctx, renderer)
    topups.after_credit.append(invoices.after_settle_in)
    gateway = gateway or build_gateway(settings)
    topup_refunds = TopupRefundService(ctx, gateway, topups)
    topup_refunds.after_refund.append(invoices.after_refund_in)
    stripe_events = StripeEventHandler(
        ctx,
        topups,
        AutoTopupRecorder(ctx, topups),
        topup_refunds,
        DisputeService(ctx),
        lambda conn, method_id, *, actor: forget_payment_method_in(conn, method_id, actor=actor, now=clock()),
    )
    webhooks = WebhookInbox(
        ctx,
        {
            "stripe": stripe_events,
            "retell": RetellEventHandler(charging, max_call_seconds=settings.max_call_seconds),
        },
        InboxSettings(max_attempts=settings.webhook_max_attempts),
    )
    stripe_services = None
    if gateway is not None:
        payments = PaymentService(ctx, gateway, topups)
        auto_topup = AutoTopupService(ctx, gateway, payments, topups)
        stripe_services = StripeServices(
            gateway=gateway,
            payments=payments,
            auto_topup=auto_topup,
            topup_refunds=topup_refunds,
            reconcile=ReconcileService(ctx, gateway, topups, payments, auto_topup, topup_refunds),
            test_checkout=TestCheckoutService(ctx, topups, payments) if settings.test_checkout_url else None,
        )
    return Services(
        ctx=ctx,
        companies=CompanyService(ctx),
        balances=BalanceService(ctx),
        charging=charging,
        refunds=RefundService(ctx),
        adjustments=AdjustmentService(ctx),
        topups=topups,
        bonus_rules=BonusRuleService(ctx),
        webhooks=webhooks,
        invoices=invoices,
        invoice_files=invoice_files,
        statements=StatementService(ctx, renderer),
        alerts=AlertService(ctx),
        mailer=build_mailer(ctx, invoice_files),
        stripe_services=stripe_services,
        schedule=JobSchedule(ctx),
        rollups=StatisticsRollups(ctx),
        queries=Queries(ctx),
    )
