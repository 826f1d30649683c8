from __future__ import annotations

from decimal import Decimal

import pytest

from billing_core.errors import (
    BillingDisabled,
    CallChargedWithDifferentData,
    CompanyNotFound,
    InvalidInput,
)
from tests.integration.helpers import assert_ledger_ok, balance_cents, charge, eur, new_company


def test_call_is_charged_per_second_at_the_company_rate(services, clock):
    company = new_company(services, funded="10.00")
    result = charge(services, company.id, "call-1", 61, clock())
    assert result.billed_seconds == 61
    assert result.amount == eur("0.43")  # 61 * 0.42 / 60 = 0.427
    assert result.balance_after == eur("9.57")
    assert balance_cents(services, company.id) == 957
    assert_ledger_ok(services)


def test_sixty_second_increment_bills_whole_minutes(services, clock):
    company = new_company(services, increment=60, funded="10.00")
    result = charge(services, company.id, "call-1", 61, clock())
    assert result.billed_seconds == 120
    assert result.amount == eur("0.84")


def test_the_same_call_charged_twice_posts_one_charge(services, clock):
    company = new_company(services, funded="10.00")
    first = charge(services, company.id, "call-1", 300, clock())
    second = charge(services, company.id, "call-1", 300, clock())
    assert not first.replayed and second.replayed
    assert second.amount == first.amount and second.charge_id == first.charge_id
    assert balance_cents(services, company.id) == 1000 - 210
    page = services.balances.history(company.id, types=["charge"])
    assert len(page.entries) == 1


def test_a_call_charged_again_with_different_data_is_rejected_and_changes_nothing(services, clock):
    company = new_company(services, funded="10.00")
    charge(services, company.id, "call-1", 300, clock())
    with pytest.raises(CallChargedWithDifferentData, match="duration_seconds"):
        charge(services, company.id, "call-1", 301, clock())
    other = new_company(services, name="Other", funded="10.00")
    with pytest.raises(CallChargedWithDifferentData, match="company_id"):
        charge(services, other.id, "call-1", 300, clock())
    assert balance_cents(services, company.id) == 790
    assert balance_cents(services, other.id) == 1000


def test_charge_posts_below_zero_and_says_so(services, clock):
    company = new_company(services, funded="1.00")
    result = charge(services, company.id, "long-call", 600, clock())
    assert result.amount == eur("4.20")
    assert result.balance_negative
    assert result.balance_after == eur("-3.20")
    assert_ledger_ok(services)


def test_new_rate_applies_to_calls_that_start_after_it(services, clock):
    company = new_company(services, funded="20.00")
    started_before = clock()
    clock.advance(minutes=1)
    services.companies.set(company.id, actor="test", rate_per_minute=Decimal("0.60"))
    clock.advance(minutes=1)
    old = charge(services, company.id, "old-call", 60, started_before)
    new = charge(services, company.id, "new-call", 60, clock())
    assert old.rate_per_minute == Decimal("0.42") and old.amount == eur("0.42")
    assert new.rate_per_minute == Decimal("0.60") and new.amount == eur("0.60")


def test_reservation_holds_minutes_at_the_rate_and_charge_releases_it(services, clock):
    company = new_company(services, funded="10.00")
    held = services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    assert held.accepted and held.amount == eur("2.10")  # 5 minutes at 0.42
    view = services.balances.get(company.id)
    assert view.reserved == eur("2.10") and view.available == eur("7.90")
    result = charge(services, company.id, "call-1", 90, clock())
    assert result.released_reservation == eur("2.10")
    view = services.balances.get(company.id)
    assert view.reserved == eur("0.00") and view.balance == eur("9.37")
    assert_ledger_ok(services)


def test_reservation_is_capped_by_the_available_balance(services, clock):
    company = new_company(services, funded="1.00")
    held = services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    assert held.amount == eur("1.00")
    second = services.charging.reserve(call_id="call-2", company_id=company.id, started_at=clock())
    assert second.status == "rejected" and second.amount == eur("0.00")


def test_repeated_call_started_holds_once(services, clock):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    again = services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    assert again.replayed
    assert services.balances.get(company.id).reserved == eur("2.10")


def test_late_call_started_after_its_charge_holds_nothing(services, clock):
    company = new_company(services, funded="10.00")
    charge(services, company.id, "call-1", 60, clock())
    late = services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    assert late.status == "already_charged"
    assert services.balances.get(company.id).reserved == eur("0.00")
    assert_ledger_ok(services)


def test_release_without_charge_gives_the_hold_back(services, clock):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="call-1", company_id=company.id, started_at=clock())
    assert services.charging.release(call_id="call-1") == eur("2.10")
    assert services.charging.release(call_id="call-1") is None
    assert services.balances.get(company.id).available == eur("10.00")


def test_zero_second_call_is_recorded_without_moving_money(services, clock):
    company = new_company(services, funded="10.00")
    result = charge(services, company.id, "missed", 0, clock())
    assert result.amount == eur("0.00") and result.billed_seconds == 0
    assert charge(services, company.id, "missed", 0, clock()).replayed
    assert balance_cents(services, company.id) == 1000
    assert_ledger_ok(services)


def test_a_charge_asks_for_an_auto_topup_only_below_the_threshold_of_a_company_that_has_it_on(services, clock):
    company = new_company(services, funded="12.00")  # threshold 10.00 by default, auto top-up off
    assert not charge(services, company.id, "call-1", 300, clock()).auto_topup_due  # 9.90 left, but off
    services.companies.set(company.id, actor="test", auto_topup_enabled=True)
    assert charge(services, company.id, "call-2", 60, clock()).auto_topup_due  # 9.48 left
    services.companies.set(company.id, actor="test", auto_topup_threshold=eur("5.00"))
    assert not charge(services, company.id, "call-3", 60, clock()).auto_topup_due  # 9.06 left, above 5.00


def test_charge_for_unknown_company_is_rejected(services, clock):
    with pytest.raises(CompanyNotFound):
        charge(services, 999, "call-1", 60, clock())


@pytest.mark.parametrize("seconds", [-1, 1.5, True, "60"])
def test_charge_with_bad_duration_is_rejected(services, clock, seconds):
    company = new_company(services, funded="10.00")
    with pytest.raises(InvalidInput):
        charge(services, company.id, "call-1", seconds, clock())
    assert balance_cents(services, company.id) == 1000


def test_charge_with_naive_start_time_is_rejected(services, clock):
    company = new_company(services, funded="10.00")
    with pytest.raises(InvalidInput, match="timezone"):
        charge(services, company.id, "call-1", 60, clock().replace(tzinfo=None))


def test_company_with_billing_disabled_is_not_charged(services, clock):
    company = new_company(services, funded="10.00")
    services.companies.set(company.id, actor="test", prepaid_billing_enabled=False)
    with pytest.raises(BillingDisabled):
        charge(services, company.id, "call-1", 60, clock())
    assert balance_cents(services, company.id) == 1000
