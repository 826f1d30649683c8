"""Settings: the reference system's environment names, decimal-string amounts, exact conversion to Money."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from billing_core.config import Settings
from billing_core.errors import InvalidAmount
from billing_core.money import Money
from tests.support.processes import SETTING_NAMES

AMOUNT_NAMES = (
    "DEFAULT_BILLING_RATE",
    "DEFAULT_LOW_BALANCE_THRESHOLD",
    "DEFAULT_AUTO_TOPUP_THRESHOLD",
    "DEFAULT_AUTO_TOPUP_AMOUNT",
    "BILLING_AUTO_TOPUP_MONTHLY_LIMIT",
    "BILLING_VAT_RATE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the machine running the tests has set must not leak into these tests."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def load() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_match_the_reference_system():
    settings = load()
    assert settings.database_url == "sqlite:///./var/billing.db"
    assert settings.default_billing_rate == Decimal("0.42")
    assert settings.default_low_balance_threshold == Decimal("20.00")
    assert settings.default_auto_topup_threshold == Decimal("10.00")
    assert settings.default_auto_topup_amount == Decimal("50.00")
    assert settings.default_currency == "EUR"
    assert settings.default_billing_increment_seconds == 1
    assert settings.prepaid_billing_enabled is True and settings.auto_topup_enabled is True
    assert settings.stripe_api_base is None and settings.smtp_url is None


def test_reference_names_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://billing@db.internal/billing")
    monkeypatch.setenv("STRIPE_KEY", "pk_test_123")
    monkeypatch.setenv("STRIPE_SECRET", "sk_test_456")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_789")
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:8420")
    monkeypatch.setenv("STRIPE_TEST_MODE", "false")
    monkeypatch.setenv("RETELL_API_KEY", "key_retell")
    monkeypatch.setenv("PREPAID_BILLING_ENABLED", "0")
    monkeypatch.setenv("AUTO_TOPUP_ENABLED", "false")
    monkeypatch.setenv("SMTP_URL", "smtp://127.0.0.1:2525")
    settings = load()
    assert settings.database_url == "mysql+pymysql://billing@db.internal/billing"
    assert settings.stripe_key == "pk_test_123"
    assert settings.stripe_secret.get_secret_value() == "sk_test_456"
    assert settings.stripe_webhook_secret.get_secret_value() == "whsec_789"
    assert settings.stripe_api_base == "http://127.0.0.1:8420"
    assert settings.stripe_test_mode is False
    assert settings.retell_api_key.get_secret_value() == "key_retell"
    assert settings.prepaid_billing_enabled is False
    assert settings.auto_topup_enabled is False
    assert settings.smtp_url == "smtp://127.0.0.1:2525"


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET", "sk_test_do_not_print")
    monkeypatch.setenv("RETELL_API_KEY", "retell_do_not_print")
    shown = repr(load()) + str(load().model_dump())
    assert "sk_test_do_not_print" not in shown
    assert "retell_do_not_print" not in shown


def test_amounts_are_read_as_exact_decimals(monkeypatch):
    monkeypatch.setenv("DEFAULT_BILLING_RATE", "0.4250")
    monkeypatch.setenv("DEFAULT_LOW_BALANCE_THRESHOLD", "25.50")
    monkeypatch.setenv("DEFAULT_AUTO_TOPUP_THRESHOLD", "5")
    monkeypatch.setenv("DEFAULT_AUTO_TOPUP_AMOUNT", "100.00")
    settings = load()
    assert settings.default_billing_rate == Decimal("0.4250")
    assert type(settings.default_billing_rate) is Decimal
    assert settings.default_low_balance_threshold == Decimal("25.50")
    assert settings.default_auto_topup_threshold == Decimal("5")
    assert settings.default_auto_topup_amount == Decimal("100.00")


def test_other_settings_use_the_billing_prefix(monkeypatch):
    monkeypatch.setenv("BILLING_DEFAULT_CURRENCY", "CHF")
    monkeypatch.setenv("BILLING_DEFAULT_LOCALE", "de_CH")
    monkeypatch.setenv("BILLING_DEFAULT_BILLING_INCREMENT", "60")
    monkeypatch.setenv("BILLING_RESERVATION_MINUTES", "10")
    monkeypatch.setenv("BILLING_AUTO_TOPUP_DAILY_LIMIT", "3")
    settings = load()
    assert settings.default_currency == "CHF"
    assert settings.default_locale == "de_CH"
    assert settings.default_billing_increment_seconds == 60
    assert settings.reservation_minutes == 10
    assert settings.auto_topup_daily_limit == 3


def test_lower_case_environment_names_are_accepted(monkeypatch):
    monkeypatch.setenv("default_billing_rate", "0.39")
    assert load().default_billing_rate == Decimal("0.39")


def test_dotenv_file_is_read_and_the_environment_wins_over_it(monkeypatch, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DEFAULT_BILLING_RATE=0.55\nDEFAULT_AUTO_TOPUP_AMOUNT=75.00\n")
    monkeypatch.setenv("DEFAULT_AUTO_TOPUP_AMOUNT", "80.00")
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert settings.default_billing_rate == Decimal("0.55")
    assert settings.default_auto_topup_amount == Decimal("80.00")


# -- amounts become exact Money --------------------------------------------------------------------


def test_configured_amounts_become_exact_minor_units(monkeypatch):
    monkeypatch.setenv("DEFAULT_LOW_BALANCE_THRESHOLD", "20.05")
    monkeypatch.setenv("DEFAULT_AUTO_TOPUP_THRESHOLD", "10")
    monkeypatch.setenv("DEFAULT_AUTO_TOPUP_AMOUNT", "50.5")
    settings = load()
    assert settings.money(settings.default_low_balance_threshold) == Money(2005, "EUR")
    assert settings.money(settings.default_auto_topup_threshold) == Money(1000, "EUR")
    assert settings.money(settings.default_auto_topup_amount) == Money(5050, "EUR")


def test_money_uses_the_default_currency_unless_told_otherwise(monkeypatch):
    monkeypatch.setenv("BILLING_DEFAULT_CURRENCY", "JPY")
    settings = load()
    assert settings.money(Decimal("500")) == Money(500, "JPY")
    assert settings.money(Decimal("5.00"), "EUR") == Money(500, "EUR")


def test_money_of_an_exponent_decimal_is_exact():
    assert load().money(Decimal("1E+2")) == Money(10_000, "EUR")


def test_money_refuses_to_round_an_amount_finer_than_the_currency():
    settings = load()
    with pytest.raises(InvalidAmount, match="more than 2 decimal places"):
        settings.money(Decimal("20.005"))
    with pytest.raises(InvalidAmount, match="more than 0 decimal places"):
        settings.money(Decimal("5.5"), "JPY")


@pytest.mark.parametrize("name", AMOUNT_NAMES)
@pytest.mark.parametrize("value", ["-0.01", "-20.00", "-1"])
def test_negative_amount_in_the_environment_is_rejected(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="non-negative"):
        load()


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", "-Infinity", "0,42", ""])
def test_amount_that_is_not_a_finite_decimal_is_rejected(monkeypatch, value):
    monkeypatch.setenv("DEFAULT_BILLING_RATE", value)
    with pytest.raises(ValidationError, match="default_billing_rate|DEFAULT_BILLING_RATE"):
        load()


@pytest.mark.parametrize(
    "field",
    [
        "default_billing_rate",
        "default_low_balance_threshold",
        "default_auto_topup_threshold",
        "default_auto_topup_amount",
    ],
)
def test_float_amount_given_in_code_is_rejected(field):
    with pytest.raises(ValidationError, match="not floats"):
        Settings(_env_file=None, **{field: 0.42})  # type: ignore[call-arg, arg-type]


def test_zero_amounts_are_allowed():
    settings = Settings(_env_file=None, default_billing_rate="0", default_auto_topup_threshold="0.00")  # type: ignore[call-arg]
    assert settings.default_billing_rate == Decimal(0)
    assert settings.money(settings.default_auto_topup_threshold) == Money(0, "EUR")


@pytest.mark.parametrize("value", ["0", "-60", "3601"])
def test_billing_increment_outside_one_second_to_one_hour_is_rejected(monkeypatch, value):
    monkeypatch.setenv("BILLING_DEFAULT_BILLING_INCREMENT", value)
    with pytest.raises(ValidationError, match="BILLING_DEFAULT_BILLING_INCREMENT|default_billing_increment"):
        load()


@pytest.mark.parametrize("value", ["-1", "601"])
def test_reservation_minutes_outside_zero_to_six_hundred_are_rejected(monkeypatch, value):
    monkeypatch.setenv("BILLING_RESERVATION_MINUTES", value)
    with pytest.raises(ValidationError):
        load()


@pytest.mark.parametrize(
    "name",
    [
        "DEFAULT_LOW_BALANCE_THRESHOLD",
        "DEFAULT_AUTO_TOPUP_THRESHOLD",
        "DEFAULT_AUTO_TOPUP_AMOUNT",
        "BILLING_AUTO_TOPUP_MONTHLY_LIMIT",
    ],
)
def test_amount_finer_than_the_default_currency_is_rejected_at_start_up(monkeypatch, name):
    monkeypatch.setenv(name, "20.005")
    with pytest.raises(ValidationError):
        load()


def test_monthly_auto_top_up_limit_is_optional_and_exact(monkeypatch):
    assert load().auto_topup_monthly_limit is None
    monkeypatch.setenv("BILLING_AUTO_TOPUP_MONTHLY_LIMIT", "500.00")
    settings = load()
    assert settings.auto_topup_monthly_limit == Decimal("500.00")
    assert settings.money(settings.auto_topup_monthly_limit) == Money(50_000, "EUR")


def test_billing_rate_may_carry_more_precision_than_the_currency(monkeypatch):
    monkeypatch.setenv("DEFAULT_BILLING_RATE", "0.425")
    assert load().default_billing_rate == Decimal("0.425")
