"""``billing calls release CALL_ID``: an operator gives back a stuck call hold, once, with an audit entry."""

from __future__ import annotations

import json
from pathlib import Path

from billing_core.bootstrap import Services
from tests.conftest import Clock
from tests.integration.helpers import assert_ledger_ok, eur, new_company
from tests.support.processes import clean_env, run_billing


def test_operator_releases_a_stuck_hold_once_and_a_second_release_changes_nothing(
    services: Services, clock: Clock, database_url: str, tmp_path: Path
):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-stuck", company_id=company.id, started_at=clock())
    env = clean_env(DATABASE_URL=database_url)

    first = run_billing(
        "calls", "release", "call-stuck", "--reason", "call_ended dead-lettered", "--actor", "cli:ops", "--json",
        env=env, cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "call_id": "call-stuck",
        "company_id": company.id,
        "amount": {"cents": 210, "currency": "EUR"},
        "status": "released",
        "released_now": True,
    }
    assert services.balances.get(company.id).reserved == eur("0.00")

    again = run_billing("calls", "release", "call-stuck", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout
    assert services.balances.get(company.id).available == eur("10.00")
    assert_ledger_ok(services)


def test_releasing_an_unknown_call_exits_1_with_one_line(database_url: str, services: Services, tmp_path: Path):
    done = run_billing("calls", "release", "call-nobody", env=clean_env(DATABASE_URL=database_url), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == ["error (not_found): call call-nobody holds no reservation"]
