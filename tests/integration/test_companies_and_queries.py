"""Companies and their settings, and the read side (balances, history, low balance, ledger check)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from billing_core.db.tables import audit_log, balances, billing_rates, companies, ledger
from billing_core.errors import CompanyNotFound, InvalidAmount, InvalidCursor, InvalidInput
from billing_core.money import Money
from billing_core.queries import MAX_LIMIT
from billing_core.queries.operations import AuditFilters
from billing_core.services.companies import BEGINNING_OF_TIME
from tests.integration.helpers import assert_ledger_ok, charge, eur, new_company


def state(services):
    """Every row a company change may touch, to prove that a rejected one changed nothing."""
    tables = (companies, balances, billing_rates, audit_log)
    return services.db.read(lambda conn: {t.name: conn.execute(select(t).order_by(t.c.id)).all() for t in tables})


def audit_rows(services, action):
    """The audit entries of one action, oldest first, read through the read side."""
    page = services.queries.audit_log(AuditFilters(action=action), limit=MAX_LIMIT)
    assert not page.has_more
    return [entry.model_dump() for entry in reversed(page.items)]


def rate_rows(services, company_id):
    return services.db.read(
        lambda conn: (
            conn.execute(
                select(billing_rates).where(billing_rates.c.company_id == company_id).order_by(billing_rates.c.id)
            )
            .mappings()
            .all()
        )
    )


def raw_sql(services, statement, **params):
    with services.db.engine.begin() as conn:
        conn.execute(text(statement), params)


# -- companies add / show / list ------------------------------------------------------------------------


def test_new_company_gets_the_configured_defaults(services, clock):
    company = services.companies.add(name="Praxis Weber", email="billing@weber.example", actor="cli:root")
    assert company.name == "Praxis Weber" and company.email == "billing@weber.example"
    assert (company.currency, company.locale, company.prepaid_billing_enabled) == ("EUR", "de_DE", True)
    assert (company.balance, company.reserved, company.available) == (eur("0.00"), eur("0.00"), eur("0.00"))
    assert company.low_balance_threshold == eur("20.00")
    assert company.auto_topup_enabled is False
    assert (company.auto_topup_threshold, company.auto_topup_amount) == (eur("10.00"), eur("50.00"))
    assert company.auto_topup_daily_limit == 2
    assert company.auto_topup_monthly_limit is None
    [rate] = company.rates
    assert (rate.rate_per_minute, rate.billing_increment_seconds, rate.effective_from) == (
        Decimal("0.42"),
        1,
        BEGINNING_OF_TIME,
    )
    [row] = audit_rows(services, "company.created")
    assert (row["actor"], row["entity_type"], row["entity_id"], row["company_id"]) == (
        "cli:root",
        "company",
        str(company.id),
        company.id,
    )
    assert row["created_at"] == clock()
    assert row["details"] == {
        "name": "Praxis Weber",
        "currency": "EUR",
        "rate_per_minute": "0.42",
        "increment": 1,
    }


def test_new_company_takes_its_own_rate_currency_threshold_and_address(services):
    company = services.companies.add(
        name="  Autohaus Berger  ",
        email="service@berger.example",
        actor="t",
        currency="chf",
        locale="de_CH",
        rate_per_minute=Decimal("0.5525"),
        billing_increment_seconds=60,
        low_balance_threshold=Money(5000, "CHF"),
        vat_id="CHE-123.456.789",
        city="Zürich",
        country="ch",
        address_line1="Bahnhofstrasse 5",
        postal_code="8001",
    )
    assert company.name == "Autohaus Berger"
    assert (company.currency, company.locale) == ("CHF", "de_CH")
    assert company.low_balance_threshold == Money(5000, "CHF")
    assert company.auto_topup_amount == Money(5000, "CHF")
    assert [(r.rate_per_minute, r.billing_increment_seconds) for r in company.rates] == [(Decimal("0.5525"), 60)]
    assert company.details["country"] == "CH"
    assert company.details["city"] == "Zürich"
    assert company.details["vat_id"] == "CHE-123.456.789"
    assert company.details["address_line2"] is None
    assert services.companies.show(company.id) == company


def test_show_returns_what_add_returned_and_list_every_company_in_order(services):
    first = new_company(services, name="First")
    second = new_company(services, name="Second", rate="0.30")
    assert services.companies.show(second.id) == second
    listing = services.companies.list()
    assert [c.id for c in listing] == [first.id, second.id]
    assert [c.name for c in listing] == ["First", "Second"]
    assert all(c.rates == () for c in listing)


def test_list_is_empty_without_companies(services):
    assert services.companies.list() == []


def test_company_view_serializes_money_as_minor_units_with_currency(services):
    company = new_company(services, funded="12.34")
    data = services.companies.show(company.id).as_json()
    assert data["balance"] == {"cents": 1234, "currency": "EUR"}
    assert data["available"] == {"cents": 1234, "currency": "EUR"}
    assert data["low_balance_threshold"] == {"cents": 2000, "currency": "EUR"}
    assert data["auto_topup_monthly_limit"] is None
    assert data["rates"] == [
        {"rate_per_minute": "0.420000", "billing_increment_seconds": 1, "effective_from": "1970-01-01T00:00:00+00:00"}
    ]


# -- companies set ----------------------------------------------------------------------------------------


def test_rate_change_adds_a_rate_from_now_and_old_calls_keep_the_old_rate(services, clock):
    company = new_company(services, funded="50.00")
    before_change = clock()
    changed_at = clock.advance(hours=1)
    updated = services.companies.set(
        company.id, actor="finance:eva", rate_per_minute=Decimal("0.50"), billing_increment_seconds=60
    )
    assert [(r.rate_per_minute, r.billing_increment_seconds, r.effective_from) for r in updated.rates] == [
        (Decimal("0.42"), 1, BEGINNING_OF_TIME),
        (Decimal("0.50"), 60, changed_at),
    ]
    rows = rate_rows(services, company.id)
    assert len(rows) == 2
    assert (rows[1]["created_by"], rows[1]["created_at"]) == ("finance:eva", changed_at)
    clock.advance(minutes=5)
    old_call = charge(services, company.id, "old-call", 61, before_change)
    new_call = charge(services, company.id, "new-call", 61, clock())
    assert (old_call.rate_per_minute, old_call.billing_increment_seconds, old_call.amount) == (
        Decimal("0.42"),
        1,
        eur("0.43"),
    )
    assert (new_call.rate_per_minute, new_call.billing_increment_seconds, new_call.amount) == (
        Decimal("0.50"),
        60,
        eur("1.00"),
    )


def test_increment_change_keeps_the_current_rate(services, clock):
    company = new_company(services, rate="0.30")
    clock.advance(minutes=1)
    updated = services.companies.set(company.id, actor="t", billing_increment_seconds=30)
    assert [(r.rate_per_minute, r.billing_increment_seconds) for r in updated.rates] == [
        (Decimal("0.30"), 1),
        (Decimal("0.30"), 30),
    ]


def test_rate_can_be_scheduled_for_later(services, clock):
    company = new_company(services, funded="10.00")
    starts = datetime(2026, 12, 1, tzinfo=UTC)
    services.companies.set(company.id, actor="t", rate_per_minute=Decimal("0.60"), rate_effective_from=starts)
    assert charge(services, company.id, "now", 60, clock()).amount == eur("0.42")
    assert charge(services, company.id, "december", 60, starts).amount == eur("0.60")


def test_increment_change_keeps_the_rate_in_force_when_a_later_rate_is_scheduled(services, clock):
    company = new_company(services, funded="10.00")
    services.companies.set(
        company.id, actor="t", rate_per_minute=Decimal("0.60"), rate_effective_from=datetime(2026, 12, 1, tzinfo=UTC)
    )
    clock.advance(minutes=1)
    services.companies.set(company.id, actor="t", billing_increment_seconds=60)
    clock.advance(minutes=1)
    result = charge(services, company.id, "november-call", 60, clock())
    assert (result.rate_per_minute, result.billing_increment_seconds) == (Decimal("0.42"), 60)


def test_second_rate_for_the_same_instant_is_a_typed_error(services):
    company = new_company(services)
    starts = datetime(2026, 12, 1, tzinfo=UTC)
    services.companies.set(company.id, actor="t", rate_per_minute=Decimal("0.60"), rate_effective_from=starts)
    with pytest.raises(InvalidInput):
        services.companies.set(company.id, actor="t", rate_per_minute=Decimal("0.70"), rate_effective_from=starts)


def test_thresholds_and_auto_topup_settings_are_changed(services, clock):
    company = new_company(services)
    updated = services.companies.set(
        company.id,
        actor="t",
        low_balance_threshold=eur("30.00"),
        auto_topup_enabled=True,
        auto_topup_threshold=eur("15.00"),
        auto_topup_amount=eur("100.00"),
        auto_topup_daily_limit=5,
        auto_topup_monthly_limit=eur("500.00"),
        stripe_payment_method_id="pm_card_visa",
    )
    assert updated.low_balance_threshold == eur("30.00")
    assert updated.auto_topup_enabled is True
    assert (updated.auto_topup_threshold, updated.auto_topup_amount) == (eur("15.00"), eur("100.00"))
    assert updated.auto_topup_daily_limit == 5
    assert updated.auto_topup_monthly_limit == eur("500.00")
    assert updated.stripe_payment_method_id == "pm_card_visa"
    assert services.companies.show(company.id) == updated
    assert len(updated.rates) == 1
    removed = services.companies.set(company.id, actor="t", auto_topup_monthly_limit=None)
    assert removed.auto_topup_monthly_limit is None


def test_prepaid_billing_can_be_switched_off_and_on(services):
    company = new_company(services)
    assert services.companies.set(company.id, actor="t", prepaid_billing_enabled=False).prepaid_billing_enabled is False
    assert services.companies.show(company.id).prepaid_billing_enabled is False
    assert services.companies.set(company.id, actor="t", prepaid_billing_enabled=True).prepaid_billing_enabled is True


def test_name_email_and_address_are_changed(services):
    company = new_company(services)
    updated = services.companies.set(
        company.id, actor="t", name="Praxis Dr. Weber", email="neu@weber.example", city="Köln", country="de"
    )
    assert (updated.name, updated.email) == ("Praxis Dr. Weber", "neu@weber.example")
    assert (updated.details["city"], updated.details["country"]) == ("Köln", "DE")


def test_setting_change_writes_an_audit_row_with_the_difference(services, clock):
    company = new_company(services)
    clock.advance(minutes=3)
    services.companies.set(company.id, actor="admin:max", low_balance_threshold=eur("30.00"), auto_topup_enabled=True)
    [row] = audit_rows(services, "company.updated")
    assert (row["actor"], row["entity_type"], row["entity_id"], row["company_id"]) == (
        "admin:max",
        "company",
        str(company.id),
        company.id,
    )
    assert row["created_at"] == clock()
    assert row["details"] == {
        "low_balance_threshold": {"from": {"cents": 2000, "currency": "EUR"}, "to": {"cents": 3000, "currency": "EUR"}},
        "auto_topup_enabled": {"from": False, "to": True},
    }


def test_rate_change_audit_row_shows_the_new_rate(services, clock):
    company = new_company(services)
    clock.advance(minutes=1)
    services.companies.set(company.id, actor="t", rate_per_minute=Decimal("0.50"))
    [row] = audit_rows(services, "company.updated")
    details = row["details"]
    assert list(details) == ["rates"]
    assert details["rates"]["to"][-1] == {
        "rate_per_minute": "0.500000",
        "billing_increment_seconds": 1,
        "effective_from": clock().isoformat(),
    }


# -- bad input ------------------------------------------------------------------------------------------


BAD_EMAILS = ["no-at-sign.example", "someone@localhost", "@example.com", "a b@example.com", "", "   "]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_company_with_a_bad_email_is_not_created(services, email):
    with pytest.raises(InvalidInput):
        services.companies.add(name="X", email=email, actor="t")
    assert services.companies.list() == []


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_bad_email_is_not_stored(services, email):
    company = new_company(services)
    before = state(services)
    with pytest.raises(InvalidInput):
        services.companies.set(company.id, actor="t", email=email)
    assert state(services) == before


@pytest.mark.parametrize(
    "field", ["low_balance_threshold", "auto_topup_threshold", "auto_topup_amount", "auto_topup_monthly_limit"]
)
def test_negative_amount_setting_is_rejected_and_changes_nothing(services, field):
    company = new_company(services)
    before = state(services)
    with pytest.raises(InvalidInput, match=f"{field} cannot be negative"):
        services.companies.set(company.id, actor="t", **{field: eur("-0.01")})
    assert state(services) == before


def test_company_with_a_negative_threshold_is_not_created(services):
    with pytest.raises(InvalidInput):
        services.companies.add(name="X", email="x@example.com", actor="t", low_balance_threshold=eur("-5.00"))
    assert services.companies.list() == []


def test_amount_setting_in_another_currency_is_rejected(services):
    company = new_company(services)
    before = state(services)
    with pytest.raises(InvalidInput, match="USD"):
        services.companies.set(company.id, actor="t", low_balance_threshold=Money(100, "USD"))
    with pytest.raises(InvalidInput, match="USD"):
        services.companies.add(name="X", email="x@example.com", actor="t", low_balance_threshold=Money(100, "USD"))
    assert state(services) == before


@pytest.mark.parametrize("rate", ["0.4200001", "-0.01", "NaN", "Infinity"])
def test_bad_rate_is_rejected_and_changes_nothing(services, clock, rate):
    company = new_company(services)
    clock.advance(minutes=1)
    before = state(services)
    with pytest.raises(InvalidInput, match="rate per minute"):
        services.companies.set(company.id, actor="t", rate_per_minute=Decimal(rate))
    with pytest.raises(InvalidInput, match="rate per minute"):
        services.companies.add(name="X", email="x@example.com", actor="t", rate_per_minute=Decimal(rate))
    assert state(services) == before


def test_rate_with_six_decimals_is_accepted(services):
    company = services.companies.add(name="X", email="x@example.com", actor="t", rate_per_minute=Decimal("0.123456"))
    assert company.rates[0].rate_per_minute == Decimal("0.123456")


@pytest.mark.parametrize("increment", [0, -1, 3601, True])
def test_bad_increment_is_rejected_and_changes_nothing(services, clock, increment):
    company = new_company(services)
    clock.advance(minutes=1)
    before = state(services)
    with pytest.raises(InvalidInput, match="billing increment"):
        services.companies.set(company.id, actor="t", billing_increment_seconds=increment)
    assert state(services) == before


def test_company_with_a_zero_increment_is_not_created(services):
    with pytest.raises(InvalidInput, match="billing increment"):
        services.companies.add(name="X", email="x@example.com", actor="t", billing_increment_seconds=0)


def test_unknown_field_is_rejected(services):
    company = new_company(services)
    before = state(services)
    with pytest.raises(InvalidInput, match="unknown company fields: favourite_colour"):
        services.companies.add(name="X", email="x@example.com", actor="t", favourite_colour="blue")
    with pytest.raises(InvalidInput, match="unknown settings: balance"):
        services.companies.set(company.id, actor="t", balance=eur("1000.00"))
    assert state(services) == before


@pytest.mark.parametrize("country", ["DEU", "D"])
def test_country_must_be_a_two_letter_code(services, country):
    with pytest.raises(InvalidInput, match="two-letter"):
        services.companies.add(name="X", email="x@example.com", actor="t", country=country)
    assert services.companies.list() == []


def test_blank_name_or_actor_is_rejected(services):
    company = new_company(services)
    before = state(services)
    with pytest.raises(InvalidInput, match="name is required"):
        services.companies.add(name=" ", email="x@example.com", actor="t")
    with pytest.raises(InvalidInput, match="actor is required"):
        services.companies.add(name="X", email="x@example.com", actor="")
    with pytest.raises(InvalidInput, match="name is required"):
        services.companies.set(company.id, actor="t", name="")
    with pytest.raises(InvalidInput, match="actor is required"):
        services.companies.set(company.id, actor=" ", name="Y")
    assert state(services) == before


def test_negative_daily_limit_is_rejected(services):
    company = new_company(services)
    with pytest.raises(InvalidInput, match="daily_limit"):
        services.companies.set(company.id, actor="t", auto_topup_daily_limit=-1)


def test_bad_currency_code_is_rejected(services):
    with pytest.raises(InvalidAmount, match="ISO 4217"):
        services.companies.add(name="X", email="x@example.com", actor="t", currency="EURO")


def test_unknown_company_is_a_typed_error(services):
    company = new_company(services)
    missing = company.id + 1000
    before = state(services)
    for call in (
        lambda: services.companies.show(missing),
        lambda: services.companies.set(missing, actor="t", name="Y"),
        lambda: services.balances.get(missing),
        lambda: services.balances.history(missing),
    ):
        with pytest.raises(CompanyNotFound) as caught:
            call()
        assert caught.value.company_id == missing
    assert state(services) == before


@pytest.mark.parametrize("company_id", [0, -3, "1", None])
def test_malformed_company_id_is_rejected(services, company_id):
    with pytest.raises(InvalidInput, match="company id"):
        services.companies.show(company_id)


# -- balances --------------------------------------------------------------------------------------------


def test_balance_shows_balance_reserved_and_available(services, clock):
    company = new_company(services, funded="10.00")
    services.charging.reserve(call_id="running", company_id=company.id, started_at=clock())
    view = services.balances.get(company.id)
    assert view.company_id == company.id
    assert (view.balance, view.reserved, view.available) == (eur("10.00"), eur("2.10"), eur("7.90"))
    assert view.low_balance_threshold == eur("20.00")
    assert view.is_low is True
    assert view.as_json() == {
        "company_id": company.id,
        "balance": {"cents": 1000, "currency": "EUR"},
        "reserved": {"cents": 210, "currency": "EUR"},
        "available": {"cents": 790, "currency": "EUR"},
        "low_balance_threshold": {"cents": 2000, "currency": "EUR"},
        "is_low": True,
    }


# -- history ---------------------------------------------------------------------------------------------


@pytest.fixture
def busy(services, clock):
    """A company with 8 ledger entries: top-up, 2 charges, a refund and 4 adjustments."""
    company = new_company(services, funded="100.00")
    charge(services, company.id, "call-1", 60, clock())
    charge(services, company.id, "call-2", 120, clock())
    services.refunds.refund_call(call_id="call-1", amount=None, reason="r", actor="a")
    for cents in (100, -50, 200, -25):
        services.adjustments.adjust(company_id=company.id, amount=Money(cents, "EUR"), reason="r", actor="a")
    return company


def all_pages(services, company_id, limit, **kwargs):
    pages, cursor = [], None
    while True:
        page = services.balances.history(company_id, limit=limit, cursor=cursor, **kwargs)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_history_pages_do_not_overlap_and_cover_everything(services, busy):
    everything = services.balances.history(busy.id, limit=500).entries
    assert len(everything) == 8
    assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
    pages = all_pages(services, busy.id, limit=3)
    assert [len(p.entries) for p in pages] == [3, 3, 2]
    assert [e.id for p in pages for e in p.entries] == [e.id for e in everything]
    assert [e.type for e in everything] == [
        "adjustment",
        "adjustment",
        "adjustment",
        "adjustment",
        "refund",
        "charge",
        "charge",
        "topup",
    ]


def test_last_full_page_has_no_next_cursor(services, busy):
    pages = all_pages(services, busy.id, limit=4)
    assert [len(p.entries) for p in pages] == [4, 4]
    assert pages[-1].next_cursor is None


def test_history_is_stable_when_entries_arrive_between_pages(services, busy):
    first = services.balances.history(busy.id, limit=3)
    services.adjustments.adjust(company_id=busy.id, amount=eur("1.00"), reason="late", actor="a")
    second = services.balances.history(busy.id, limit=3, cursor=first.next_cursor)
    assert second.entries[0].id < first.entries[-1].id
    assert {e.id for e in first.entries}.isdisjoint(e.id for e in second.entries)


def test_history_filters_by_type_across_pages(services, busy):
    pages = all_pages(services, busy.id, limit=3, types=["adjustment"])
    assert [len(p.entries) for p in pages] == [3, 1]
    amounts = [e.amount.cents for p in pages for e in p.entries]
    assert amounts == [-25, 200, -50, 100]
    charges_and_refunds = services.balances.history(busy.id, types=["charge", "refund"]).entries
    assert [e.type for e in charges_and_refunds] == ["refund", "charge", "charge"]
    assert services.balances.history(busy.id, types=["reversal"]).entries == []


def test_history_of_a_company_without_entries_is_empty(services):
    company = new_company(services)
    page = services.balances.history(company.id)
    assert (page.entries, page.next_cursor) == ([], None)


def test_history_entries_serialize_money_as_minor_units(services, busy):
    [entry] = services.balances.history(busy.id, limit=500, types=["topup"]).entries
    data = entry.as_json()
    assert data["amount"] == {"cents": 10000, "currency": "EUR"}
    assert data["balance_before"] == {"cents": 0, "currency": "EUR"}
    assert data["balance_after"] == {"cents": 10000, "currency": "EUR"}


def test_cursor_of_another_company_is_rejected(services, busy):
    other = new_company(services, name="Other", funded="5.00")
    cursor = services.balances.history(busy.id, limit=2).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor, match="another company"):
        services.balances.history(other.id, cursor=cursor)


def forged(raw):
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "x",
        "é",
        "////",
        forged("1"),
        forged("a:b"),
        forged("1:2:3"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_garbage_cursor_is_rejected(services, busy, cursor):
    with pytest.raises(InvalidCursor):
        services.balances.history(busy.id, cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_page_size_out_of_range_is_rejected(services, busy, limit):
    with pytest.raises(InvalidInput, match="limit"):
        services.balances.history(busy.id, limit=limit)


# -- low balance -----------------------------------------------------------------------------------------


def test_low_balance_lists_companies_strictly_below_their_threshold_lowest_first(services, clock):
    low = new_company(services, name="Low", funded="5.00")
    new_company(services, name="At threshold", funded="20.00")
    new_company(services, name="Rich", funded="100.00")
    negative = new_company(services, name="Negative", funded="1.00")
    charge(services, negative.id, "long", 600, clock())
    custom = new_company(services, name="Custom", funded="40.00")
    services.companies.set(custom.id, actor="t", low_balance_threshold=eur("50.00"), auto_topup_enabled=True)
    rows = services.balances.low_balance_companies()
    assert [(r.company_id, r.name, r.balance, r.low_balance_threshold, r.auto_topup_enabled) for r in rows] == [
        (negative.id, "Negative", eur("-3.20"), eur("20.00"), False),
        (low.id, "Low", eur("5.00"), eur("20.00"), False),
        (custom.id, "Custom", eur("40.00"), eur("50.00"), True),
    ]
    assert rows[0].as_json()["balance"] == {"cents": -320, "currency": "EUR"}


def test_no_company_is_low_when_all_are_funded(services):
    new_company(services, funded="20.00")
    assert services.balances.low_balance_companies() == []


# -- ledger check ----------------------------------------------------------------------------------------


@pytest.fixture
def two_companies(services, clock):
    good = new_company(services, name="Good", funded="10.00")
    bad = new_company(services, name="Tampered", funded="10.00")
    for company in (good, bad):
        charge(services, company.id, f"call-{company.id}", 60, clock())
        services.adjustments.adjust(company_id=company.id, amount=eur("1.00"), reason="r", actor="a")
    assert_ledger_ok(services)
    return good, bad


def failing_only(services, company_id):
    report = services.balances.check_ledger()
    assert not report.ok
    assert len(report.companies) == 2
    [failing] = report.failing
    assert failing.company_id == company_id
    assert report.as_json()["failing"][0]["company_id"] == company_id
    return failing


def test_ledger_check_passes_on_an_untouched_ledger(services, two_companies):
    report = services.balances.check_ledger()
    assert report.ok and report.failing == []
    assert [(c.company_id, c.entries, c.balance, c.ledger_sum) for c in report.companies] == [
        (company.id, 3, 1058, 1058) for company in two_companies
    ]
    assert report.as_json() == {"ok": True, "companies_checked": 2, "failing": []}


def test_ledger_check_names_the_company_whose_balance_was_changed(services, two_companies):
    _, bad = two_companies
    raw_sql(services, "UPDATE prepaid_balances SET balance = balance + 500 WHERE company_id = :id", id=bad.id)
    failing = failing_only(services, bad.id)
    assert failing.problems == ["balance 1558 != ledger sum 1058", "last balance_after 1058 != balance 1558"]


def test_ledger_check_names_the_company_whose_entry_amount_was_changed(services, two_companies):
    _, bad = two_companies
    [charge_entry] = services.balances.history(bad.id, types=["charge"]).entries
    raw_sql(services, "UPDATE balance_transactions SET amount = -1 WHERE id = :id", id=charge_entry.id)
    failing = failing_only(services, bad.id)
    assert failing.problems == [
        f"entry {charge_entry.id}: 1000 + -1 != balance_after 958",
        "balance 1058 != ledger sum 1099",
    ]


def test_ledger_check_finds_a_deleted_entry(services, two_companies):
    _, bad = two_companies
    [charge_entry] = services.balances.history(bad.id, types=["charge"]).entries
    raw_sql(services, "DELETE FROM balance_transactions WHERE id = :id", id=charge_entry.id)
    failing = failing_only(services, bad.id)
    assert failing.problems[0].endswith("balance_before 958 but previous balance_after 1000")
    assert "balance 1058 != ledger sum 1100" in failing.problems


def test_ledger_check_finds_a_reservation_total_that_does_not_match(services, two_companies):
    _, bad = two_companies
    raw_sql(services, "UPDATE prepaid_balances SET reserved_balance = 99 WHERE company_id = :id", id=bad.id)
    failing = failing_only(services, bad.id)
    [problem] = failing.problems
    assert problem.startswith("reserved 99 != ")  # the stored hold total against the open holds (0)
    assert problem.split(" (")[0].endswith(" 0")


def test_ledger_check_passes_with_running_reservations(services, two_companies, clock):
    good, _ = two_companies
    services.charging.reserve(call_id="running", company_id=good.id, started_at=clock())
    assert_ledger_ok(services)


def test_history_reads_ledger_rows_written_by_every_service(services, busy):
    rows = services.db.read(
        lambda conn: (
            conn.execute(select(ledger.c.type).where(ledger.c.company_id == busy.id).order_by(ledger.c.id))
            .scalars()
            .all()
        )
    )
    assert rows == ["topup", "charge", "charge", "refund", "adjustment", "adjustment", "adjustment", "adjustment"]
    assert_ledger_ok(services)
