"""An operator who forgot the seller: top-ups are credited, invoices wait, and are issued once the seller is set."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.invoice_helpers import pdf_text
from tests.support.processes import SELLER_ENV, clean_env, run_billing


def test_invoices_wait_for_the_seller_and_issue_missing_issues_them_once_it_is_configured(
    database_url: str, tmp_path: Path
):
    without_seller = clean_env(DATABASE_URL=database_url)
    company = run_billing(
        "companies", "add", "--name", "Praxis Weber", "--email", "praxis@weber.example", "--address-line1",
        "Königsallee 12", "--postal-code", "40212", "--city", "Düsseldorf", "--country", "DE", "--json",
        env=without_seller, cwd=tmp_path,
    )
    company_id = json.loads(company.stdout)["id"]
    recorded = run_billing("topups", "record", "--company", str(company_id), "--amount", "119.00",
                           "--reference", "RF18 0001", "--json", env=without_seller, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(recorded.stdout)["balance_after"] == {"cents": 11900, "currency": "EUR"}

    refused = run_billing("invoices", "issue-missing", env=without_seller, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert "seller is not configured" in line and "BILLING_SELLER_NAME" in line
    listed = run_billing("invoices", "list", "--json", env=without_seller, cwd=tmp_path)
    assert json.loads(listed.stdout) == []

    issued = run_billing("invoices", "issue-missing", env={**without_seller, **SELLER_ENV}, cwd=tmp_path)
    assert issued.returncode == 0, issued.stderr
    assert issued.stdout.startswith("1 issued: RE-")


def test_the_demo_invoices_as_a_seller_named_as_demo_data_when_none_is_configured(tmp_path: Path, database_url: str):
    env = clean_env(DATABASE_URL=database_url)
    demo = run_billing("demo", "--json", env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    listed = json.loads(run_billing("invoices", "list", "--json", env=env, cwd=tmp_path).stdout)
    topups = json.loads(run_billing("topups", "list", "--json", env=env, cwd=tmp_path).stdout)
    # one invoice per credited demo top-up: the demo companies all have addresses
    credited = {t["id"] for t in topups if t["status"] == "succeeded"}
    assert credited and {i["topup_id"] for i in listed} == credited
    pdf = tmp_path / "demo.pdf"
    shown = run_billing("invoices", "show", listed[0]["number"], "--pdf", str(pdf), env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Demo Sprachassistenz GmbH (Demo-Daten)" in pdf_text(pdf.read_bytes())
