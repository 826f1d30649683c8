"""Settings, read once at start-up from the environment or ``.env``.

The names of the reference system are kept (``DATABASE_URL``, ``STRIPE_SECRET``, ``DEFAULT_BILLING_RATE``...);
everything else carries the ``BILLING_`` prefix. Amounts are decimal strings in major units and become
integer minor units here; no float is involved at any step.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @field_validator(
        "default_billing_rate",
        "default_low_balance_threshold",
        "default_auto_topup_threshold",
        "default_auto_topup_amount",
    )
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a non-negative decimal amount")
        return value

    def money(self, amount: Decimal, currency: str | None = None) -> Money:
        """A configured major-unit amount in minor units of ``currency`` (exact, or an error)."""
        return Money.parse(format(amount, "f"), currency or self.default_currency)
