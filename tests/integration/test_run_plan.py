"""What ``billing run`` decides before starting anything: emulator mode only without STRIPE_SECRET, local
keys made once and kept, the operator's own settings never overridden."""

from __future__ import annotations

import json
import stat

import pytest
from pydantic import SecretStr

from billing_cli.run import SECRETS_FILE, make_plan
from tests.conftest import NO_SELLER, make_settings


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_stripe_secret_it_plans_the_emulator_the_mail_sink_and_the_test_page(in_tmp):
    unconfigured = make_settings("sqlite:///./var/billing.db", **NO_SELLER)
    plan = make_plan(unconfigured, host="127.0.0.1", webhook_port=18001, mcp_port=18000)
    assert plan.emulator and plan.smtp_port is not None
    chosen = plan.chosen
    assert chosen["STRIPE_API_BASE"] == f"http://127.0.0.1:{plan.emulator_port}"
    assert chosen["STRIPE_SECRET"].startswith("sk_test_") and chosen["STRIPE_TEST_MODE"] == "true"
    assert chosen["BILLING_TEST_CHECKOUT_URL"] == "http://127.0.0.1:18001/test-checkout"
    assert chosen["SMTP_URL"] == f"smtp://127.0.0.1:{plan.smtp_port}"
    assert chosen["BILLING_SELLER_NAME"]  # the demo's seller, since none is configured
    kept = json.loads((in_tmp / SECRETS_FILE).read_text())
    assert kept["stripe_webhook_secret"] == chosen["STRIPE_WEBHOOK_SECRET"]
    assert stat.S_IMODE((in_tmp / SECRETS_FILE).stat().st_mode) == 0o600
    again = make_plan(unconfigured, host="127.0.0.1", webhook_port=18001, mcp_port=1)
    assert again.chosen["STRIPE_WEBHOOK_SECRET"] == chosen["STRIPE_WEBHOOK_SECRET"]
    assert again.chosen["RETELL_API_KEY"] == chosen["RETELL_API_KEY"]


def test_with_stripe_keys_it_starts_no_emulator_and_keeps_the_operators_settings(in_tmp):
    settings = make_settings(  # with the test seller configured
        "sqlite:///./var/billing.db",
        stripe_secret=SecretStr("sk_test_real_account"),
        retell_api_key=SecretStr("key_operator"),
        smtp_url="smtp://mail.example.com:587",
    )
    plan = make_plan(settings, host="127.0.0.1", webhook_port=18001, mcp_port=18000)
    assert not plan.emulator and plan.smtp_port is None
    assert plan.chosen == {"DATABASE_URL": "sqlite:///./var/billing.db"}
