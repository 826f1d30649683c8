"""Holds expire: a reservation whose call_ended never came is released after the longest call, with an audit."""

from __future__ import annotations

from typing import Any

import pytest

from billing_core.bootstrap import Services, build_services
from billing_core.errors import NotFound
from billing_core.queries.operations import AuditFilters
from tests.conftest import Clock, make_settings
from tests.integration.helpers import assert_ledger_ok, eur, new_company


def hold_audits(services: Services) -> list[dict[str, Any]]:
    """The audit entries of released holds, oldest first, from the read side."""
    page = services.queries.audit_log(AuditFilters(action="call_hold.released"))
    assert not page.has_more
    return [entry.model_dump() for entry in reversed(page.items)]


def test_a_hold_older_than_the_longest_call_is_released_by_the_expiry_with_an_audit_entry(
    services: Services, clock: Clock
):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-lost", company_id=company.id, started_at=clock())
    clock.advance(hours=4, seconds=1)
    [released] = services.charging.expire_holds()
    assert released.call_id == "call-lost" and released.amount == eur("2.10") and released.released_now
    view = services.balances.get(company.id)
    assert view.reserved == eur("0.00") and view.available == eur("10.00")
    [entry] = hold_audits(services)
    assert entry["actor"] == "worker" and entry["company_id"] == company.id and entry["entity_id"] == "call-lost"
    assert entry["details"]["amount"] == {"cents": 210, "currency": "EUR"}
    assert "14400 s" in str(entry["details"]["reason"])
    assert services.charging.expire_holds() == []
    assert len(hold_audits(services)) == 1
    assert_ledger_ok(services)


def test_a_hold_younger_than_the_longest_call_is_kept(services: Services, clock: Clock):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-long", company_id=company.id, started_at=clock())
    clock.advance(hours=3, minutes=59)
    assert services.charging.expire_holds() == []
    assert services.balances.get(company.id).reserved == eur("2.10")


def test_the_longest_call_is_configurable(database_url: str, clock: Clock):
    built = build_services(make_settings(database_url, max_call_seconds=600), clock=clock)
    try:
        company = new_company(built, funded="10.00")
        built.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
        clock.advance(seconds=601)
        assert [r.call_id for r in built.charging.expire_holds()] == ["call-1"]
    finally:
        built.close()


def test_a_call_ended_that_arrives_after_the_expiry_still_charges_the_call_once(services: Services, clock: Clock):
    company = new_company(services, funded="10.00")
    started = clock()
    services.charging.reserve(call_id="call-late", company_id=company.id, started_at=started)
    clock.advance(hours=5)
    services.charging.expire_holds()
    result = services.charging.charge_call(
        call_id="call-late", company_id=company.id, duration_seconds=60, started_at=started
    )
    assert result.amount == eur("0.42") and result.released_reservation == eur("0.00")
    view = services.balances.get(company.id)
    assert view.balance == eur("9.58") and view.reserved == eur("0.00")
    assert_ledger_ok(services)


def test_operator_releases_a_hold_and_a_second_release_changes_nothing(services: Services, clock: Clock):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-stuck", company_id=company.id, started_at=clock())
    first = services.charging.release_hold(call_id="call-stuck", actor="cli:ops", reason="dead-lettered call_ended")
    assert first.released_now and first.amount == eur("2.10") and first.status == "released"
    again = services.charging.release_hold(call_id="call-stuck", actor="cli:ops", reason="again")
    assert not again.released_now and again.amount == eur("0.00") and again.status == "released"
    [entry] = hold_audits(services)
    assert entry["actor"] == "cli:ops" and entry["details"]["reason"] == "dead-lettered call_ended"
    assert services.balances.get(company.id).reserved == eur("0.00")
    assert_ledger_ok(services)


def test_releasing_a_call_that_never_held_anything_is_not_found(services: Services):
    with pytest.raises(NotFound):
        services.charging.release_hold(call_id="call-unknown", actor="cli:ops", reason="typo")


def test_a_charged_call_has_no_hold_left_to_release(services: Services, clock: Clock):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    services.charging.charge_call(call_id="call-1", company_id=company.id, duration_seconds=30, started_at=clock())
    result = services.charging.release_hold(call_id="call-1", actor="cli:ops", reason="late")
    assert not result.released_now
    assert hold_audits(services) == []
    assert_ledger_ok(services)
