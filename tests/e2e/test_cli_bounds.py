"""What an adversarial operator types at the real ``billing`` command: refused with one line, exit 1, no
traceback, and not a row changed (items 14 and 15 of the hardening issue)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli import Cli, sqlite_rows

ESC = "\x1b[2J"


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path, str]:
    base = tmp_path_factory.mktemp("bounds")
    path = base / "billing.db"
    cli = Cli(f"sqlite:///{path}", base)
    cli.run("db", "upgrade")
    companies = {c["name"]: c["id"] for c in cli.json("demo")["companies"]}
    return cli, path, str(companies["Zahnarztpraxis Dr. Weber"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # amounts: the ledger's range, the per-operation maximum, ASCII digits
        (("adjust", "{w}", "--amount", "99999999999999999999", "--reason", "r"), "amount out of range"),
        (("adjust", "{w}", "--amount", "92233720368547000.00", "--reason", "r"), "maximum of 100000.00 EUR"),
        (("adjust", "{w}", "--amount", "-100000.01", "--reason", "r"), "maximum of 100000.00 EUR"),
        (("adjust", "{w}", "--amount", "١٠", "--reason", "r"), "ASCII digits"),
        (("topups", "record", "--company", "{w}", "--amount", "100000.01", "--reference", "X"), "maximum"),
        (("calls", "refund", "demo-call-1", "--amount", "٠.١٠", "--reason", "r"), "ASCII digits"),
        # ids: their type's range, ASCII digits
        (("adjust", "99999999999999999999", "--amount", "1.00", "--reason", "r"), "COMPANY_ID"),
        (("adjust", "١٠", "--amount", "1.00", "--reason", "r"), "ASCII digits"),
        (("ledger", "balance", "9223372036854775808"), "COMPANY_ID"),
        (("companies", "show", "9223372036854775807"), "does not exist"),
        (("webhooks", "replay", "99999999999999999999"), "EVENT_IDS"),
        (("topups", "record", "--company", "-1", "--amount", "1.00", "--reference", "X"), "--company"),
        # rates, locales, VAT ids, auto top-up, currencies
        (("companies", "set", "{w}", "--rate", "1e3"), "not a decimal number"),
        (("companies", "set", "{w}", "--rate", "1e20"), "not a decimal number"),
        (("companies", "set", "{w}", "--rate", "10.01"), "BILLING_MAX_RATE_PER_MINUTE"),
        (("companies", "set", "{w}", "--rate", "NaN"), "not a decimal number"),
        (("companies", "set", "{w}", "--increment", "١"), "ASCII digits"),
        (("companies", "set", "{w}", "--locale", "xx_XX"), "unknown locale"),
        (("companies", "set", "{w}", "--locale", "de_DE" + ESC), "control characters"),
        (("companies", "set", "{w}", "--vat-id", "DE136695977"), "not a valid EU VAT number"),
        (("companies", "set", "{w}", "--auto-topup-amount", "0"), "more than zero"),
        (("companies", "set", "{w}", "--auto-topup-amount", "100000.01"), "maximum"),
        (("companies", "add", "--name", "X", "--email", "x@example.com", "--currency", "XXX"), "ISO 4217"),
        (("companies", "add", "--name", "X", "--email", "x@example.com", "--locale", "zz"), "unknown locale"),
        # control characters in ids, names and references
        (("companies", "add", "--name", "Evil" + ESC, "--email", "x@example.com"), "control characters"),
        (("companies", "set", "{w}", "--city", "Berlin" + ESC), "control characters"),
        (("calls", "refund", "demo-call-1" + ESC, "--reason", "r"), "call id"),
        (("topups", "record", "--company", "{w}", "--amount", "1.00", "--reference", "X" + ESC), "control characters"),
        (("adjust", "{w}", "--amount", "1.00", "--reason", "r", "--idempotency-key", "k" + ESC), "idempotency key"),
    ],
)
def test_out_of_bounds_input_is_refused_with_one_line_and_changes_nothing(demo_db, args, expected):
    cli, path, weber = demo_db
    before = sqlite_rows(path)

    line = cli.fails(*(a.replace("{w}", weber) for a in args))

    assert line.startswith("error (") and expected in line, line
    assert "\x1b" not in line
    assert sqlite_rows(path) == before


def test_bounds_are_configurable(demo_db):
    cli, path, weber = demo_db
    cli.env = {**cli.env, "BILLING_MAX_OPERATION_AMOUNT": "5.00", "BILLING_MAX_RATE_PER_MINUTE": "0.50"}
    try:
        assert "maximum of 5.00 EUR" in cli.fails("adjust", weber, "--amount", "5.01", "--reason", "r")
        assert "maximum of 0.50" in cli.fails("companies", "set", weber, "--rate", "0.51")
        assert cli.json("adjust", weber, "--amount", "5.00", "--reason", "r")["amount"]["cents"] == 500
    finally:
        cli.env = {k: v for k, v in cli.env.items() if not k.startswith("BILLING_MAX_")}
