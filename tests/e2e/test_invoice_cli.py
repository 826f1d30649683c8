"""``billing topups record`` and ``billing invoices ...`` as subprocesses on a temporary SQLite file.

The console script is the one beside ``sys.executable`` (the project's venv); each run gets only
DATABASE_URL from the test and an empty working directory, so no stray ``.env`` or setting leaks in.
The CLI runs on the real clock, so numbers carry the current year and statements the current month.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from tests.integration.invoice_helpers import embedded_xml, is_pdf_a3, pdf_text, xml_text, xml_totals
from tests.support.processes import SELLER_ENV


def find_billing() -> str:
    beside_python = Path(sys.executable).parent / "billing"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("billing")
    if found is None:
        raise RuntimeError("the billing console script is not installed (pip install -e .)")
    return found


BILLING = find_billing()
SETTING_PREFIXES = ("BILLING_", "STRIPE_", "DATABASE_URL", "SMTP_URL", "RETELL_", "DEFAULT_", "PREPAID_",
                    "AUTO_TOPUP_")


class Cli:
    def __init__(self, database_url: str, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTING_PREFIXES)}
        self.env["DATABASE_URL"] = database_url
        self.env.update(SELLER_ENV)

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([BILLING, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == code, f"billing {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.stderr == "", done.stderr
        data = json.loads(done.stdout)
        assert_no_float(data)
        return data

    def fails(self, *args: str) -> str:
        """Exit 1, nothing on stdout, exactly one line on stderr; returns that line."""
        done = self.run(*args, code=1)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]


def assert_no_float(data: Any) -> None:
    if isinstance(data, float):
        raise AssertionError(f"float {data!r} in JSON output")
    for value in data.values() if isinstance(data, dict) else data if isinstance(data, list) else ():
        assert_no_float(value)


def eur(cents: int) -> dict[str, Any]:
    return {"cents": cents, "currency": "EUR"}


ADDRESS = ("--address-line1", "Hauptstraße 5", "--postal-code", "80331", "--city", "München", "--country", "DE")


@pytest.fixture(scope="module")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``billing db upgrade`` per module; each test works on its own copy of the file."""
    base = tmp_path_factory.mktemp("invoice-cli")
    Cli(f"sqlite:///{base / 'template.db'}", base).run("db", "upgrade")
    return base / "template.db"


@pytest.fixture
def cli(migrated_file: Path, tmp_path: Path) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(migrated_file, tmp_path / "billing.db")
    return Cli(f"sqlite:///{tmp_path / 'billing.db'}", work)


def add_company(cli: Cli, name: str, *address: str) -> int:
    company = cli.json("companies", "add", "--name", name, "--email", "buchhaltung@weber.example", *address)
    return int(company["id"])


def test_bank_transfer_recorded_from_the_shell_is_invoiced_listed_written_out_and_rerendered(cli, tmp_path):
    year = datetime.now(UTC).year
    company_id = add_company(cli, "Zahnarztpraxis Dr. Weber", *ADDRESS)

    recorded = cli.json("topups", "record", "--company", str(company_id), "--amount", "100.00",
                        "--reference", "RF18 5390")

    assert (recorded["status"], recorded["source"], recorded["reference"]) == ("succeeded", "bank_transfer",
                                                                               "RF18 5390")
    assert (recorded["amount"], recorded["balance_after"], recorded["credited_now"]) == (eur(10000), eur(10000), True)

    [listed] = cli.json("invoices", "list")
    number = f"RE-{year}-000001"
    assert (listed["number"], listed["company_id"], listed["type"], listed["topup_id"]) == (
        number, company_id, "invoice", recorded["id"],
    )
    assert (listed["net"], listed["vat"], listed["gross"]) == (eur(8403), eur(1597), eur(10000))
    assert (listed["vat_rate"], listed["vat_category"], listed["pdf_sha256"]) == ("19", "S", None)
    issued_at = datetime.fromisoformat(listed["issued_at"])
    assert issued_at.tzinfo is not None and abs((datetime.now(UTC) - issued_at).total_seconds()) < 300

    out = tmp_path / "invoice.pdf"
    shown = cli.json("invoices", "show", number, "--pdf", str(out))
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and len(PdfReader(io.BytesIO(pdf)).pages) == 1
    assert shown["pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert (shown["number"], shown["gross"], shown["document"]["totals"]["gross"]) == (number, eur(10000), 10000)
    root = embedded_xml(pdf)  # validated against the EN 16931 schema
    assert xml_text(root, ".//rsm:ExchangedDocument/ram:ID") == number
    totals = xml_totals(root)
    assert (totals["TaxBasisTotalAmount"], totals["TaxTotalAmount"], totals["GrandTotalAmount"]) == (8403, 1597, 10000)
    assert is_pdf_a3(pdf)
    text = pdf_text(pdf)
    assert f"Rechnungsnummer {number}" in text and "Gesamtbetrag 100,00 €" in text and "RF18 5390" in text

    regenerated = cli.json("invoices", "regenerate", number)
    assert (regenerated["number"], regenerated["net"], regenerated["vat"], regenerated["gross"]) == (
        number, eur(8403), eur(1597), eur(10000),
    )
    again = tmp_path / "again.pdf"
    cli.run("invoices", "show", number, "--pdf", str(again))
    assert regenerated["pdf_sha256"] == hashlib.sha256(again.read_bytes()).hexdigest()
    assert xml_totals(embedded_xml(again.read_bytes())) == totals
    assert [(i["number"], i["gross"]) for i in cli.json("invoices", "list")] == [(number, eur(10000))]

    human = cli.run("invoices", "list").stdout
    assert number in human and "100.00 EUR" in human


def test_monthly_statement_is_written_as_a_pdf(cli, tmp_path):
    month = f"{datetime.now(UTC):%Y-%m}"
    company_id = add_company(cli, "Zahnarztpraxis Dr. Weber", *ADDRESS)
    cli.run("topups", "record", "--company", str(company_id), "--amount", "50.00", "--reference", "RF18 1")

    out = tmp_path / "statement.pdf"
    summary = cli.json("invoices", "statement", "--company", str(company_id), "--month", month, "--pdf", str(out))

    assert (summary["month"], summary["calls"], summary["pdf"]) == (month, 0, str(out))
    assert summary["totals"] == {"calls": 0, "duration_seconds": 0, "billed_seconds": 0, "refunds": 0,
                                 "adjustments": 0, "topups": 5000}
    text = pdf_text(out.read_bytes())
    assert f"Nutzungsübersicht {month}" in text
    assert "Zahnarztpraxis Dr. Weber" in text and "Endsaldo: 50,00 €" in text


def test_payment_of_a_company_without_address_is_invoiced_once_the_address_is_set(cli):
    year = datetime.now(UTC).year
    company_id = add_company(cli, "Praxis ohne Anschrift")

    recorded = cli.json("topups", "record", "--company", str(company_id), "--amount", "30.00", "--reference", "R-1")

    assert (recorded["status"], recorded["balance_after"]) == ("succeeded", eur(3000))
    assert cli.json("invoices", "list") == []
    assert cli.run("invoices", "issue-missing").stdout.strip() == "0 issued"

    cli.json("companies", "set", str(company_id), *ADDRESS)
    assert cli.run("invoices", "issue-missing").stdout.strip() == f"1 issued: RE-{year}-000001"
    [listed] = cli.json("invoices", "list", "--company", str(company_id))
    assert (listed["number"], listed["topup_id"], listed["gross"]) == (f"RE-{year}-000001", recorded["id"], eur(3000))


def test_invoice_commands_fail_with_one_line_and_exit_1(cli, tmp_path):
    company_id = add_company(cli, "Zahnarztpraxis Dr. Weber", *ADDRESS)
    out = tmp_path / "never.pdf"

    assert cli.fails("invoices", "show", "RE-1999-000001") == "error (not_found): invoice RE-1999-000001 does not exist"
    assert cli.fails("invoices", "show", "RE-1999-000001", "--pdf", str(out)).startswith("error (not_found):")
    assert cli.fails("invoices", "regenerate", "RE-1999-000001").startswith("error (not_found):")
    assert cli.fails("invoices", "statement", "--company", str(company_id), "--month", "2026-13",
                     "--pdf", str(out)) == "error (invalid_input): month must be between 1 and 12"
    assert cli.fails("invoices", "statement", "--company", "999", "--month", "2026-11", "--pdf", str(out)).startswith(
        "error (not_found):"
    )
    assert cli.fails("topups", "record", "--company", str(company_id), "--amount", "-5.00", "--reference", "x") \
        .startswith("error (")
    assert not out.exists()
    assert cli.json("invoices", "list") == []


def test_pdf_path_that_cannot_be_written_fails_with_one_line(cli, tmp_path):
    company_id = add_company(cli, "Zahnarztpraxis Dr. Weber", *ADDRESS)

    line = cli.fails("invoices", "statement", "--company", str(company_id), "--month", "2026-11",
                     "--pdf", str(tmp_path / "missing-dir" / "statement.pdf"))

    assert line.startswith("error (") and "missing-dir" in line
