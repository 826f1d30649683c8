"""Settings, read once at start-up from the environment or ``.env``.

The names of the reference system are kept (``DATABASE_URL``, ``STRIPE_SECRET``, ``DEFAULT_BILLING_RATE``...);
everything else carries the ``BILLING_`` prefix. Amounts are decimal strings in major units and become
integer minor units here; no float is involved at any step.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from billing_core.errors import InvalidAmount, SettingsInvalid
from billing_core.money import Money


def _decimal_text(value: object) -> object:
    if isinstance(value, float):
        raise ValueError("amounts must be decimal strings like '20.00', not floats")
    return value


DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text)]


def env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///./var/billing.db", validation_alias=env("DATABASE_URL"))

    stripe_key: str = Field("", validation_alias=env("STRIPE_KEY"))
    stripe_secret: SecretStr = Field(SecretStr(""), validation_alias=env("STRIPE_SECRET"))
    stripe_webhook_secret: SecretStr = Field(SecretStr(""), validation_alias=env("STRIPE_WEBHOOK_SECRET"))
    stripe_api_base: str | None = Field(None, validation_alias=env("STRIPE_API_BASE"))
    stripe_test_mode: bool = Field(True, validation_alias=env("STRIPE_TEST_MODE"))
    retell_api_key: SecretStr = Field(SecretStr(""), validation_alias=env("RETELL_API_KEY"))

    prepaid_billing_enabled: bool = Field(True, validation_alias=env("PREPAID_BILLING_ENABLED"))
    auto_topup_enabled: bool = Field(True, validation_alias=env("AUTO_TOPUP_ENABLED"))
    default_billing_rate: DecimalText = Field(Decimal("0.42"), validation_alias=env("DEFAULT_BILLING_RATE"))
    default_low_balance_threshold: DecimalText = Field(
        Decimal("20.00"), validation_alias=env("DEFAULT_LOW_BALANCE_THRESHOLD")
    )
    default_auto_topup_threshold: DecimalText = Field(
        Decimal("10.00"), validation_alias=env("DEFAULT_AUTO_TOPUP_THRESHOLD")
    )
    default_auto_topup_amount: DecimalText = Field(Decimal("50.00"), validation_alias=env("DEFAULT_AUTO_TOPUP_AMOUNT"))
    smtp_url: str | None = Field(None, validation_alias=env("SMTP_URL"))

    default_currency: str = Field("EUR", validation_alias=env("BILLING_DEFAULT_CURRENCY"))
    default_locale: str = Field("de_DE", validation_alias=env("BILLING_DEFAULT_LOCALE"))
    default_billing_increment_seconds: int = Field(
        1, ge=1, le=3600, validation_alias=env("BILLING_DEFAULT_BILLING_INCREMENT")
    )
    reservation_minutes: int = Field(5, ge=0, le=600, validation_alias=env("BILLING_RESERVATION_MINUTES"))
    auto_topup_daily_limit: int = Field(2, ge=0, validation_alias=env("BILLING_AUTO_TOPUP_DAILY_LIMIT"))
    auto_topup_monthly_limit: DecimalText | None = Field(None, validation_alias=env("BILLING_AUTO_TOPUP_MONTHLY_LIMIT"))
    auto_topup_max_failures: int = Field(3, ge=1, validation_alias=env("BILLING_AUTO_TOPUP_MAX_FAILURES"))
    checkout_success_url: str = Field(
        "http://127.0.0.1:8001/billing/topup/success?session_id={CHECKOUT_SESSION_ID}",
        validation_alias=env("BILLING_CHECKOUT_SUCCESS_URL"),
    )
    checkout_cancel_url: str = Field(
        "http://127.0.0.1:8001/billing/topup/cancel", validation_alias=env("BILLING_CHECKOUT_CANCEL_URL")
    )
    checkout_allowed_countries: str = Field("DE,AT,CH", validation_alias=env("BILLING_CHECKOUT_ALLOWED_COUNTRIES"))
    # giropay and sofort are accepted for compatibility with the reference configuration but Stripe retires
    # them, so no flow offers them.
    payment_methods: str = Field("card,sepa_debit", validation_alias=env("BILLING_PAYMENT_METHODS"))
    webhook_max_attempts: int = Field(8, ge=1, le=50, validation_alias=env("BILLING_WEBHOOK_MAX_ATTEMPTS"))
    webhook_tolerance_seconds: int = Field(300, ge=10, validation_alias=env("BILLING_WEBHOOK_TOLERANCE"))
    # Bounds of what one operator command (CLI, MCP tool) may move or set, in major units.
    max_operation_amount: DecimalText = Field(
        Decimal("100000.00"), validation_alias=env("BILLING_MAX_OPERATION_AMOUNT")
    )
    max_rate_per_minute: DecimalText = Field(Decimal("10.00"), validation_alias=env("BILLING_MAX_RATE_PER_MINUTE"))
    # How many service calls one async process (sidecar, worker, MCP server) runs at once: in-loop
    # transactions on MariaDB, worker threads on SQLite and for calls that wait on Stripe or SMTP.
    db_threads: int = Field(16, ge=1, le=200, validation_alias=env("BILLING_DB_THREADS"))
    # The MariaDB driver of the async processes: aiomysql in the event loop, or PyMySQL in worker threads
    # (the CLI always uses PyMySQL, whatever driver name DATABASE_URL carries).
    async_db_driver: Literal["aiomysql", "pymysql"] = Field("aiomysql", validation_alias=env("BILLING_ASYNC_DB_DRIVER"))
    # Emulator mode only (``billing run`` without STRIPE_SECRET): top-up links point to the sidecar's local
    # test checkout page under this URL instead of a Stripe Checkout Session, which localstripe lacks.
    test_checkout_url: str | None = Field(None, validation_alias=env("BILLING_TEST_CHECKOUT_URL"))
    run_worker_in_webhook_process: bool = Field(True, validation_alias=env("BILLING_WEBHOOK_WORKER"))
    # The longest call there can be: a hold older than this is released by the worker (its call_ended
    # never came), and a call_ended claiming a longer call is not charged.
    max_call_seconds: int = Field(14400, ge=60, le=7 * 24 * 3600, validation_alias=env("BILLING_MAX_CALL_SECONDS"))
    # How often the worker's scheduled jobs run, in seconds (one worker runs each job per interval).
    job_invoice_pdfs_seconds: int = Field(10, ge=1, validation_alias=env("BILLING_JOB_INVOICE_PDFS_SECONDS"))
    job_mail_outbox_seconds: int = Field(10, ge=1, validation_alias=env("BILLING_JOB_MAIL_OUTBOX_SECONDS"))
    job_low_balance_alerts_seconds: int = Field(
        300, ge=1, validation_alias=env("BILLING_JOB_LOW_BALANCE_ALERTS_SECONDS")
    )
    job_failure_rate_alert_seconds: int = Field(
        300, ge=1, validation_alias=env("BILLING_JOB_FAILURE_RATE_ALERT_SECONDS")
    )
    job_auto_topup_sweep_seconds: int = Field(60, ge=1, validation_alias=env("BILLING_JOB_AUTO_TOPUP_SWEEP_SECONDS"))
    job_expire_holds_seconds: int = Field(300, ge=1, validation_alias=env("BILLING_JOB_EXPIRE_HOLDS_SECONDS"))
    job_statistics_rollups_seconds: int = Field(
        60, ge=1, validation_alias=env("BILLING_JOB_STATISTICS_ROLLUPS_SECONDS")
    )
    pdf_processes: int = Field(2, ge=1, le=64, validation_alias=env("BILLING_PDF_PROCESSES"))
    # The seller printed on every invoice (§14 Abs. 4 UStG: name, address, tax number or VAT id). There is
    # no default: until it is configured, invoices wait (an invoice_blocked alert to the admin) and
    # `billing invoices issue-missing` issues them afterwards.
    seller_name: str = Field("", validation_alias=env("BILLING_SELLER_NAME"))
    seller_address_line1: str = Field("", validation_alias=env("BILLING_SELLER_ADDRESS"))
    seller_postal_code: str = Field("", validation_alias=env("BILLING_SELLER_POSTAL_CODE"))
    seller_city: str = Field("", validation_alias=env("BILLING_SELLER_CITY"))
    seller_country: str = Field("DE", validation_alias=env("BILLING_SELLER_COUNTRY"))
    seller_vat_id: str = Field("", validation_alias=env("BILLING_SELLER_VAT_ID"))
    seller_tax_number: str = Field("", validation_alias=env("BILLING_SELLER_TAX_NUMBER"))
    seller_email: str = Field("", validation_alias=env("BILLING_SELLER_EMAIL"))
    # VAT on prepaid top-ups: a top-up is an advance payment, so VAT is due when it is received
    # (§13 Abs. 1 Nr. 1 a Satz 4 UStG) and the invoice is issued then. By default the amount paid
    # includes VAT (gross); set BILLING_PRICES_INCLUDE_VAT=false when top-up amounts are net.
    timezone: str = Field("Europe/Berlin", validation_alias=env("BILLING_TIMEZONE"))
    vat_rate: DecimalText = Field(Decimal("19"), validation_alias=env("BILLING_VAT_RATE"))
    prices_include_vat: bool = Field(True, validation_alias=env("BILLING_PRICES_INCLUDE_VAT"))
    mail_from: str = Field("AskProAI Billing <billing@askproai.example>", validation_alias=env("BILLING_MAIL_FROM"))
    admin_email: str = Field("billing-admin@localhost", validation_alias=env("BILLING_ADMIN_EMAIL"))

    @field_validator(
        "default_billing_rate",
        "default_low_balance_threshold",
        "default_auto_topup_threshold",
        "default_auto_topup_amount",
        "auto_topup_monthly_limit",
        "vat_rate",
        "max_operation_amount",
        "max_rate_per_minute",
    )
    @classmethod
    def _not_negative(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (not value.is_finite() or value < 0):
            raise ValueError("must be a non-negative decimal amount")
        return value

    @model_validator(mode="after")
    def _amounts_fit_the_currency(self) -> Settings:
        """Fail at start-up, not at the first company: 20.005 EUR is not an amount."""
        for name in (
            "default_low_balance_threshold",
            "default_auto_topup_threshold",
            "default_auto_topup_amount",
            "auto_topup_monthly_limit",
            "max_operation_amount",
        ):
            value = getattr(self, name)
            if value is not None:
                try:
                    self.money(value)
                except InvalidAmount as error:
                    raise ValueError(f"{name}: {error.message}") from None
        return self

    @model_validator(mode="after")
    def _test_checkout_only_against_an_emulator(self) -> Settings:
        """The test page must never stand in for Stripe's Checkout when real Stripe is configured."""
        if self.test_checkout_url and not self.stripe_api_base:
            raise ValueError("BILLING_TEST_CHECKOUT_URL needs STRIPE_API_BASE (a local Stripe emulator)")
        if self.test_checkout_url and not self.stripe_webhook_secret.get_secret_value():
            raise ValueError("BILLING_TEST_CHECKOUT_URL needs STRIPE_WEBHOOK_SECRET (it signs the page links)")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("payment_methods")
    @classmethod
    def _known_methods(cls, value: str) -> str:
        methods = {m.strip() for m in value.split(",") if m.strip()}
        unknown = methods - {"card", "sepa_debit", "giropay", "sofort"}
        if unknown:
            raise ValueError(f"unknown payment methods: {', '.join(sorted(unknown))}")
        return ",".join(sorted(methods))

    def missing_seller_settings(self) -> list[str]:
        """The BILLING_SELLER_* settings an invoice needs that are not set (empty when invoices can be issued)."""
        required = {
            "BILLING_SELLER_NAME": self.seller_name,
            "BILLING_SELLER_ADDRESS": self.seller_address_line1,
            "BILLING_SELLER_POSTAL_CODE": self.seller_postal_code,
            "BILLING_SELLER_CITY": self.seller_city,
            "BILLING_SELLER_COUNTRY": self.seller_country,
            "BILLING_SELLER_VAT_ID or BILLING_SELLER_TAX_NUMBER": self.seller_vat_id or self.seller_tax_number,
        }
        return [name for name, value in required.items() if not value.strip()]

    @property
    def allowed_countries(self) -> frozenset[str]:
        return frozenset(c.strip().upper() for c in self.checkout_allowed_countries.split(",") if c.strip())

    @property
    def offered_payment_methods(self) -> tuple[str, ...]:
        """The configured methods that still have flows: card and SEPA Direct Debit."""
        return tuple(m for m in ("card", "sepa_debit") if m in self.payment_methods.split(","))

    def money(self, amount: Decimal, currency: str | None = None) -> Money:
        """A configured major-unit amount in minor units of ``currency`` (exact, or an error)."""
        return Money.parse(format(amount, "f"), currency or self.default_currency)


def read_settings() -> Settings:
    """The settings of the environment and ``.env``; one that cannot be used is :class:`SettingsInvalid`
    naming it (never its value: it may be a secret)."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in error.errors())
        raise SettingsInvalid(f"a setting cannot be used: {problems}") from None
