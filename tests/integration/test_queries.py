"""The read side (billing_core.queries) on SQLite and MariaDB: every list's filters and paging, the company
overview and search, and payment statistics checked against numbers worked out by hand.

State is made through the services (the write side) and read only through ``services.queries``; the one
exception is webhook rows with chosen receipt and processing times, which no service can produce on demand.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from billing_core.bootstrap import Services, build_services
from billing_core.db.tables import webhook_events
from billing_core.errors import CompanyNotFound, InvalidCursor, InvalidInput, NotFound
from billing_core.money import Money
from billing_core.queries import MAX_LIMIT, MoneyView, Page
from billing_core.queries.companies import CompanyFilters, LowBalanceFilters
from billing_core.queries.invoices import InvoiceFilters
from billing_core.queries.ledger import CallChargeFilters, LedgerFilters
from billing_core.queries.operations import AuditFilters, OutboxFilters, WebhookFilters
from billing_core.queries.payments import DisputeFilters, TopupFilters, TopupRefundFilters
from billing_core.queries.periods import Period
from billing_core.read_models.base import build
from billing_core.services.disputes import DisputeService
from billing_core.services.topup_refunds import TopupRefundService
from tests.conftest import Clock, make_settings
from tests.integration.helpers import eur

SELLER = {
    "seller_name": "Sprachwerk GmbH",
    "seller_address_line1": "Torstraße 1",
    "seller_postal_code": "10119",
    "seller_city": "Berlin",
    "seller_country": "DE",
    "seller_vat_id": "DE136695976",
}
ADDRESS = {"address_line1": "Hauptstraße 5", "postal_code": "80331", "city": "München", "country": "DE"}


@pytest.fixture
def svc(database_url: str, clock: Clock) -> Any:
    built = build_services(make_settings(database_url, timezone="Europe/Berlin", **SELLER), clock=clock)
    try:
        yield built
    finally:
        built.close()


def add_company(svc: Services, name: str, **extra: Any) -> int:
    return svc.companies.add(name=name, email=f"{name.lower().replace(' ', '.')}@example.com", actor="test", **extra).id


def pay(svc: Services, company_id: int, cents: int, reference: str) -> int:
    return svc.topups.record_payment(
        company_id=company_id, amount=Money(cents, "EUR"), reference=reference, actor="test"
    ).topup.id


def failed_topup(svc: Services, company_id: int, cents: int, key: str, *, source: str = "checkout") -> int:
    pending = svc.topups.create_pending(
        company_id=company_id, amount=Money(cents, "EUR"), source=source, initiated_by="test", idempotency_key=key
    )
    svc.topups.fail(pending.id, reason="card declined", code="card_declined")
    return pending.id


def call(svc: Services, company_id: int, call_id: str, seconds: int, at: datetime) -> None:
    svc.charging.charge_call(call_id=call_id, company_id=company_id, duration_seconds=seconds, started_at=at)


def all_pages(fetch: Any, limit: int) -> list[Any]:
    """Every item of a list, page by page, checking the page contract on the way."""
    items: list[Any] = []
    cursor = None
    while True:
        page = fetch(limit=limit, cursor=cursor)
        assert isinstance(page, Page)
        assert len(page.items) <= limit
        items.extend(page.items)
        assert page.has_more == (page.next_cursor is not None)
        if not page.has_more:
            return items
        assert len(page.items) == limit
        cursor = page.next_cursor


# -- money and models ---------------------------------------------------------------------------------


def test_money_view_has_minor_units_currency_and_locale_text() -> None:
    assert MoneyView.of(4200, "EUR", "de_DE").model_dump() == {
        "cents": 4200,
        "currency": "EUR",
        "formatted": "42,00\xa0€",
    }
    assert MoneyView.of(-123456, "EUR", "en_GB").formatted == "-€1,234.56"
    assert MoneyView.of(500, "JPY", "ja_JP").formatted == "￥500"


def test_read_models_are_frozen(svc: Services) -> None:
    company_id = add_company(svc, "Praxis Weber")
    overview = svc.queries.company(company_id)
    with pytest.raises(ValueError):
        overview.name = "changed"  # type: ignore[misc]


# -- company overview and search ----------------------------------------------------------------------


def test_company_overview_shows_balance_rates_and_auto_topup_state(svc: Services, clock: Clock) -> None:
    company_id = add_company(svc, "Praxis Weber", rate_per_minute=Decimal("0.42"), **ADDRESS)
    pay(svc, company_id, 10_000, "seed")
    call(svc, company_id, "call-1", 120, clock.now)
    svc.companies.set(
        company_id,
        actor="test",
        rate_per_minute=Decimal("0.50"),
        rate_effective_from=clock.now + timedelta(days=7),
        auto_topup_enabled=True,
        auto_topup_amount=eur("50.00"),
        auto_topup_threshold=eur("15.00"),
    )
    svc.companies.map_retell_agent("agent_abc", company_id, actor="test")

    overview = svc.queries.company(company_id)

    assert (overview.balance.cents, overview.reserved.cents, overview.available.cents) == (9916, 0, 9916)
    assert overview.balance.formatted == "99,16\xa0€"
    assert overview.current_rate is not None and overview.current_rate.rate_per_minute == Decimal("0.42")
    assert [r.rate_per_minute for r in overview.scheduled_rates] == [Decimal("0.50")]
    assert [r.rate_per_minute for r in overview.rates] == [Decimal("0.42"), Decimal("0.50")]
    assert overview.auto_topup_enabled and overview.auto_topup_amount.cents == 5000
    assert overview.auto_topup_threshold.cents == 1500 and overview.auto_topup_consecutive_failures == 0
    assert overview.retell_agent_ids == ("agent_abc",)
    assert (overview.city, overview.country, overview.is_low) == ("München", "DE", False)


def test_unknown_company_is_not_found(svc: Services) -> None:
    with pytest.raises(CompanyNotFound):
        svc.queries.company(999)
    with pytest.raises(CompanyNotFound):
        svc.queries.balance(999)
    with pytest.raises(CompanyNotFound):
        svc.queries.ledger_entries(LedgerFilters(company_id=999))
    with pytest.raises(CompanyNotFound):
        svc.queries.payment_statistics(svc.queries.period(30), company_id=999)


def test_balance_overview_flags_a_low_balance(svc: Services, clock: Clock) -> None:
    company_id = add_company(svc, "Praxis Weber")
    pay(svc, company_id, 2500, "seed")
    call(svc, company_id, "call-1", 60 * 20, clock.now)  # 20 min at 0.42 = 8.40
    balance = svc.queries.balance(company_id)
    assert (balance.balance.cents, balance.low_balance_threshold.cents, balance.is_low) == (1660, 2000, True)
    low = svc.queries.low_balance_companies()
    assert [c.company_id for c in low.items] == [company_id]
    assert svc.queries.low_balance_companies(LowBalanceFilters(auto_topup_enabled=True)).items == ()


def test_find_company_by_name_email_stripe_customer_and_retell_agent(svc: Services) -> None:
    weber = add_company(svc, "Praxis Weber")
    physio = add_company(svc, "Physio Nord")
    svc.companies.map_retell_agent("agent_physio_1", physio, actor="test")

    assert [(m.id, m.matched_on) for m in svc.queries.find_companies("weber")] == [(weber, "name")]
    assert [(m.id, m.matched_on) for m in svc.queries.find_companies("PHYSIO.NORD@example.com")] == [(physio, "email")]
    assert [(m.id, m.matched_on) for m in svc.queries.find_companies("agent_physio_1")] == [(physio, "retell_agent_id")]
    assert [m.id for m in svc.queries.find_companies(str(weber))][0] == weber
    assert svc.queries.find_companies("nobody-like-this") == ()
    assert [m.id for m in svc.queries.find_companies("example.com")] == [weber, physio]
    with pytest.raises(InvalidInput):
        svc.queries.find_companies("  ")


def test_find_company_treats_like_wildcards_as_text(svc: Services) -> None:
    add_company(svc, "Praxis Weber")
    assert svc.queries.find_companies("%") == ()
    assert svc.queries.find_companies("_") == ()


def test_company_list_pages_and_filters(svc: Services) -> None:
    ids = [add_company(svc, f"Firma {n}") for n in range(7)]
    svc.companies.set(ids[3], actor="test", prepaid_billing_enabled=False)
    listed = all_pages(lambda **kw: svc.queries.companies(**kw), limit=3)
    assert [c.id for c in listed] == ids
    assert all(c.rates == () and c.current_rate is not None for c in listed)
    off = svc.queries.companies(CompanyFilters(prepaid_billing_enabled=False))
    assert [c.id for c in off.items] == [ids[3]]
    assert [c.id for c in svc.queries.companies(CompanyFilters(name_contains="FIRMA 6")).items] == [ids[6]]


# -- paging contract ----------------------------------------------------------------------------------


def test_ledger_pages_have_no_gaps_or_duplicates_even_when_entries_arrive_between_pages(
    svc: Services, clock: Clock
) -> None:
    company_id = add_company(svc, "Praxis Weber")
    pay(svc, company_id, 50_000, "seed")
    for n in range(6):
        call(svc, company_id, f"call-{n}", 60 + n, clock.advance(minutes=1))
    filters = LedgerFilters(company_id=company_id)
    before = [e.id for e in all_pages(lambda **kw: svc.queries.ledger_entries(filters, **kw), limit=MAX_LIMIT)]
    assert len(before) == 7 and before == sorted(before, reverse=True)

    first = svc.queries.ledger_entries(filters, limit=3)
    call(svc, company_id, "call-late", 30, clock.advance(minutes=1))  # a new entry while someone pages
    second = svc.queries.ledger_entries(filters, limit=3, cursor=first.next_cursor)
    third = svc.queries.ledger_entries(filters, limit=3, cursor=second.next_cursor)
    seen = [e.id for page in (first, second, third) for e in page.items]
    assert seen == before and not third.has_more and third.next_cursor is None


def test_a_cursor_only_works_for_the_list_and_filters_it_was_issued_for(svc: Services, clock: Clock) -> None:
    company_id = add_company(svc, "Praxis Weber")
    pay(svc, company_id, 50_000, "seed")
    for n in range(3):
        call(svc, company_id, f"call-{n}", 60, clock.advance(minutes=1))
    page = svc.queries.ledger_entries(LedgerFilters(company_id=company_id), limit=1)
    assert page.next_cursor
    with pytest.raises(InvalidCursor, match="issued for another list or other filters"):
        svc.queries.ledger_entries(LedgerFilters(company_id=company_id, types=("charge",)), cursor=page.next_cursor)
    with pytest.raises(InvalidCursor):
        svc.queries.call_charges(CallChargeFilters(company_id=company_id), cursor=page.next_cursor)
    for garbage in ("garbage", "", "W10", "eyJhIjoxfQ", "x" * 500, page.next_cursor[:-2]):
        with pytest.raises(InvalidCursor):
            svc.queries.ledger_entries(LedgerFilters(company_id=company_id), cursor=garbage or "=")


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_limit_out_of_bounds_is_rejected(svc: Services, limit: int) -> None:
    with pytest.raises(InvalidInput, match=f"between 1 and {MAX_LIMIT}"):
        svc.queries.topups(limit=limit)


def test_filters_built_from_loose_values_report_bad_input_by_field() -> None:
    with pytest.raises(InvalidInput, match="statuses"):
        build(TopupFilters, statuses=("paid",))
    with pytest.raises(InvalidInput, match="since"):
        build(TopupFilters, since=datetime(2026, 1, 1))  # no time zone
    with pytest.raises(InvalidInput, match="company_id"):
        build(LedgerFilters, company_id=0)


# -- each list's filters ------------------------------------------------------------------------------


def test_ledger_filters_by_type_and_period(svc: Services, clock: Clock) -> None:
    company_id = add_company(svc, "Praxis Weber")
    pay(svc, company_id, 10_000, "seed")
    start = clock.advance(hours=1)
    call(svc, company_id, "call-1", 60, start)
    svc.adjustments.adjust(company_id=company_id, amount=eur("-1.00"), reason="fee", actor="test")
    clock.advance(hours=1)
    svc.refunds.refund_call(call_id="call-1", amount=None, reason="dropped", actor="test")

    def types(**filters: Any) -> list[str]:
        page = svc.queries.ledger_entries(LedgerFilters(company_id=company_id, **filters))
        return [e.type for e in page.items]

    assert types() == ["refund", "adjustment", "charge", "topup"]
    assert types(types=("charge", "refund")) == ["refund", "charge"]
    assert types(since=start) == ["refund", "adjustment", "charge"]
    assert types(since=start, until=start + timedelta(minutes=30)) == ["adjustment", "charge"]
    [refund] = svc.queries.ledger_entries(LedgerFilters(types=("refund",))).items
    assert (refund.amount.cents, refund.reference_type, refund.reference_id) == (42, "call_charge", "call-1")


def test_call_charges_filter_by_refund_status_and_period(svc: Services, clock: Clock) -> None:
    weber = add_company(svc, "Praxis Weber")
    other = add_company(svc, "Physio Nord")
    pay(svc, weber, 10_000, "seed")
    early = clock.now
    call(svc, weber, "call-a", 60, early)
    call(svc, weber, "call-b", 120, clock.advance(hours=2))
    call(svc, other, "call-c", 30, clock.advance(hours=2))
    svc.refunds.refund_call(call_id="call-a", amount=eur("0.10"), reason="partial", actor="test")
    svc.refunds.refund_call(call_id="call-b", amount=None, reason="full", actor="test")

    def ids(**filters: Any) -> list[str]:
        return [c.call_id for c in svc.queries.call_charges(CallChargeFilters(**filters)).items]

    assert ids() == ["call-c", "call-b", "call-a"]
    assert ids(company_id=weber) == ["call-b", "call-a"]
    assert ids(refund_status="partial") == ["call-a"]
    assert ids(refund_status="full") == ["call-b"]
    assert ids(refund_status="none") == ["call-c"]
    assert ids(until=early + timedelta(hours=1)) == ["call-a"]
    charge = svc.queries.call_charge("call-a")
    assert (charge.amount_charged.cents, charge.refunded.cents, charge.billed_seconds) == (42, 10, 60)
    assert charge.rate_per_minute == Decimal("0.42")
    with pytest.raises(NotFound):
        svc.queries.call_charge("no-such-call")


def test_topups_filter_by_status_method_company_and_period(svc: Services, clock: Clock) -> None:
    weber = add_company(svc, "Praxis Weber")
    physio = add_company(svc, "Physio Nord")
    paid = pay(svc, weber, 10_000, "transfer-1")
    clock.advance(hours=1)
    declined = failed_topup(svc, weber, 5_000, "checkout-1")
    auto_failed = failed_topup(svc, physio, 2_500, "auto-1", source="auto_topup")
    later = clock.advance(hours=1)
    open_one = svc.topups.create_pending(
        company_id=physio, amount=eur("30.00"), source="checkout", initiated_by="test", idempotency_key="checkout-2"
    ).id

    def ids(**filters: Any) -> list[int]:
        return [t.id for t in svc.queries.topups(TopupFilters(**filters)).items]

    assert ids() == [open_one, auto_failed, declined, paid]
    assert ids(statuses=("failed",)) == [auto_failed, declined]
    assert ids(statuses=("failed",), methods=("auto_topup",)) == [auto_failed]
    assert ids(methods=("bank_transfer",)) == [paid]
    assert ids(company_id=physio) == [open_one, auto_failed]
    assert ids(since=later) == [open_one]
    assert ids(until=later) == [auto_failed, declined, paid]
    failed = svc.queries.topup(declined)
    assert (failed.status, failed.failure_code, failed.amount.cents) == ("failed", "card_declined", 5000)


def test_topup_refunds_and_disputes_are_listed_with_their_filters(svc: Services, clock: Clock) -> None:
    weber = add_company(svc, "Praxis Weber")
    first = pay(svc, weber, 10_000, "transfer-1")
    second = pay(svc, weber, 4_000, "transfer-2")
    refunds = TopupRefundService(svc.ctx, None, svc.topups)
    disputes = DisputeService(svc.ctx)
    svc.db.write(
        lambda conn: refunds.record_stripe_refund_in(
            conn, topup=svc.topups.get(first), stripe_refund_id="re_1", amount=2_500, status="succeeded",
            our_refund_id=None
        )
    )
    clock.advance(hours=1)
    svc.db.write(
        lambda conn: disputes.open_in(
            conn, topup=svc.topups.get(second), dispute_id="dp_1", charge_id="ch_2", amount=4_000, reason="fraudulent"
        )
    )

    [refund] = svc.queries.topup_refunds(TopupRefundFilters(company_id=weber)).items
    assert (refund.topup_id, refund.amount.cents, refund.status, refund.source) == (
        first,
        2500,
        "succeeded",
        "stripe_dashboard",
    )
    assert svc.queries.topup_refunds(TopupRefundFilters(statuses=("pending",))).items == ()
    assert [r.id for r in svc.queries.topup_refunds(TopupRefundFilters(topup_id=first)).items] == [refund.id]

    [dispute] = svc.queries.disputes(DisputeFilters(statuses=("open",))).items
    assert (dispute.stripe_dispute_id, dispute.amount.cents, dispute.topup_id) == ("dp_1", 4000, second)
    assert svc.queries.disputes(DisputeFilters(statuses=("won", "lost"))).items == ()
    assert svc.queries.balance(weber).reserved.cents == 4000
    assert svc.queries.topup(first).refunded.cents == 2500


def test_invoices_and_credit_notes_are_listed_and_shown(svc: Services, clock: Clock) -> None:
    weber = add_company(svc, "Praxis Weber", **ADDRESS)
    physio = add_company(svc, "Physio Nord", **ADDRESS)
    first = pay(svc, weber, 11_900, "transfer-1")
    clock.advance(days=1)
    pay(svc, physio, 5_950, "transfer-2")
    refunds = TopupRefundService(svc.ctx, None, svc.topups)
    refunds.after_refund.append(svc.invoices.after_refund_in)  # as build_services wires it
    svc.db.write(
        lambda conn: refunds.record_stripe_refund_in(
            conn, topup=svc.topups.get(first), stripe_refund_id="re_1", amount=1_190, status="succeeded",
            our_refund_id=None
        )
    )

    every = all_pages(lambda **kw: svc.queries.invoices(**kw), limit=1)
    assert [(i.type, i.company_id) for i in every] == [
        ("credit_note", weber),
        ("invoice", physio),
        ("invoice", weber),
    ]
    invoice = svc.queries.invoice(every[-1].number)
    assert (invoice.gross.cents, invoice.net.cents, invoice.vat.cents) == (11_900, 10_000, 1_900)
    assert (invoice.vat_rate, invoice.vat_category, invoice.topup_id) == ("19", "S", first)
    assert invoice.document["number"] == invoice.number
    notes = svc.queries.invoices(InvoiceFilters(type="credit_note")).items
    assert [n.corrects_invoice_id for n in notes] == [invoice.id]
    assert [i.number for i in svc.queries.invoices(InvoiceFilters(company_id=physio)).items] == [every[1].number]
    with pytest.raises(NotFound):
        svc.queries.invoice("RE-1999-000001")


def test_audit_log_filters_by_actor_action_company_and_period(svc: Services, clock: Clock) -> None:
    weber = add_company(svc, "Praxis Weber")
    start = clock.advance(hours=1)
    svc.adjustments.adjust(company_id=weber, amount=eur("5.00"), reason="goodwill", actor="cli:anna")
    svc.companies.set(weber, actor="mcp:support", low_balance_threshold=eur("30.00"))

    everything = all_pages(lambda **kw: svc.queries.audit_log(**kw), limit=1)
    assert len(everything) >= 3
    by_anna = svc.queries.audit_log(AuditFilters(actor="cli:anna")).items
    assert [e.actor for e in by_anna] == ["cli:anna"] and by_anna[0].company_id == weber
    action = by_anna[0].action
    assert all(e.action == action for e in svc.queries.audit_log(AuditFilters(action=action)).items)
    recent = svc.queries.audit_log(AuditFilters(company_id=weber, since=start)).items
    assert [e.actor for e in recent] == ["mcp:support", "cli:anna"]
    assert isinstance(recent[0].details, dict)


def add_webhook(
    svc: Services, event_id: str, event_type: str, received: datetime, took_ms: int | None, *, status: str = ""
) -> None:
    processed = None if took_ms is None else received + timedelta(milliseconds=took_ms)
    row = {
        "provider": "retell" if event_type.startswith("call") else "stripe",
        "event_id": event_id,
        "event_type": event_type,
        "payload": json.dumps({"id": event_id}),
        "status": status or ("processed" if processed else "dead"),
        "attempts": 1,
        "next_attempt_at": received,
        "received_at": received,
        "processed_at": processed,
    }
    svc.db.write(lambda conn: conn.execute(insert(webhook_events).values(**row)))


def test_webhook_events_filter_by_provider_status_and_type(svc: Services, clock: Clock) -> None:
    now = clock.now
    add_webhook(svc, "evt_1", "payment_intent.succeeded", now, 120)
    add_webhook(svc, "evt_2", "payment_intent.payment_failed", now, None)
    add_webhook(svc, "call_1", "call_ended", now, 40)
    add_webhook(svc, "call_2", "call_ended", now + timedelta(hours=1), None, status="failed")

    def ids(**filters: Any) -> list[str]:
        return [e.event_id for e in svc.queries.webhook_events(WebhookFilters(**filters)).items]

    assert ids() == ["call_2", "call_1", "evt_2", "evt_1"]
    assert ids(provider="stripe") == ["evt_2", "evt_1"]
    assert ids(statuses=("dead", "failed")) == ["call_2", "evt_2"]
    assert ids(event_type="call_ended") == ["call_2", "call_1"]
    assert ids(since=now + timedelta(minutes=1)) == ["call_2"]
    assert svc.queries.webhook_backlog() == {"dead": 1, "failed": 1}
    oldest = all_pages(lambda **kw: svc.queries.webhook_events(oldest_first=True, **kw), limit=1)
    assert [e.event_id for e in oldest] == ["evt_1", "evt_2", "call_1", "call_2"]
    newest_first_cursor = svc.queries.webhook_events(limit=1).next_cursor
    with pytest.raises(InvalidCursor):
        svc.queries.webhook_events(oldest_first=True, cursor=newest_first_cursor)


def test_outbox_lists_queued_mail_with_filters(svc: Services) -> None:
    weber = add_company(svc, "Praxis Weber")
    physio = add_company(svc, "Physio Nord")
    pay(svc, physio, 5_000, "transfer-1")  # an admin alert: the invoice waits for the buyer's address
    disputed = pay(svc, weber, 5_000, "transfer-2")
    svc.db.write(
        lambda conn: DisputeService(svc.ctx).open_in(
            conn, topup=svc.topups.get(disputed), dispute_id="dp_1", charge_id="ch_1", amount=5_000, reason=None
        )
    )
    everything = all_pages(lambda **kw: svc.queries.outbox(**kw), limit=1)
    kinds = {m.kind for m in everything}
    assert {"invoice_blocked", "dispute_opened"} <= kinds
    assert {m.company_id for m in svc.queries.outbox(OutboxFilters(company_id=weber)).items} == {weber}
    for kind in kinds:
        matching = svc.queries.outbox(OutboxFilters(kind=kind)).items
        assert matching and all(m.kind == kind for m in matching)
    assert all(m.status == "pending" for m in svc.queries.outbox(OutboxFilters(statuses=("pending",))).items)
    assert svc.queries.outbox(OutboxFilters(statuses=("sent",))).items == ()


# -- payment statistics -------------------------------------------------------------------------------

# Berlin leaves summer time on Sunday 2026-10-25 at 03:00 CEST (01:00 UTC): that local day has 25 hours.
OCT_24 = datetime(2026, 10, 23, 22, 0, tzinfo=UTC)  # local midnight starting Saturday 24 October (CEST)
OCT_25 = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # local midnight starting Sunday 25 October (CEST)
OCT_26 = datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # local midnight starting Monday 26 October (CET)
OCT_27 = datetime(2026, 10, 26, 23, 0, tzinfo=UTC)


def at(clock: Clock, instant: datetime) -> datetime:
    clock.now = instant
    return instant


@pytest.fixture
def dst_world(svc: Services, clock: Clock) -> dict[str, int]:
    """Payments, calls and webhooks around the end of summer time, each placed to test a day boundary."""
    at(clock, OCT_24 - timedelta(days=2))
    weber = add_company(svc, "Praxis Weber", rate_per_minute=Decimal("0.60"))
    physio = add_company(svc, "Physio Nord", rate_per_minute=Decimal("0.30"))
    dollars = svc.companies.add(name="US Clinic", email="us@example.com", actor="test", currency="USD").id
    pay(svc, weber, 20_000, "before-the-period")  # credited before the period: not revenue in it

    at(clock, OCT_24 + timedelta(hours=23, minutes=30))  # Sat 23:30 local
    pay(svc, weber, 10_000, "sat-late")
    call(svc, weber, "w-sat", 100, clock.now)  # 1:40 at 0.60 = 1.00
    at(clock, OCT_25 + timedelta(minutes=30))  # Sun 00:30 CEST, still Saturday in UTC
    pay(svc, physio, 5_000, "sun-early")
    call(svc, physio, "p-sun-1", 600, clock.now)  # 10 min at 0.30 = 3.00
    failed_topup(svc, physio, 7_000, "declined-sun")
    at(clock, OCT_26 - timedelta(minutes=30))  # Sun 23:30 CET; +2h would wrongly make it Monday
    call(svc, weber, "w-sun", 60, clock.now)  # 0.60
    failed_topup(svc, weber, 2_500, "auto-sun", source="auto_topup")
    svc.refunds.refund_call(call_id="w-sat", amount=eur("0.40"), reason="echo", actor="test")
    at(clock, OCT_26 + timedelta(minutes=30))  # Mon 00:30 CET
    call(svc, physio, "p-mon", 30, clock.now)  # 0.15
    auto = svc.topups.create_pending(
        company_id=weber, amount=eur("25.00"), source="auto_topup", initiated_by="auto", idempotency_key="auto-mon"
    )
    svc.topups.settle(auto.id)
    call(svc, dollars, "us-mon", 600, clock.now)  # another currency: never in EUR figures
    at(clock, OCT_27)  # the first instant after the period
    call(svc, weber, "w-tue", 60, clock.now)

    add_webhook(svc, "evt_a", "payment_intent.succeeded", OCT_24 + timedelta(hours=23), 100)
    add_webhook(svc, "evt_b", "payment_intent.succeeded", OCT_25 + timedelta(hours=1), 301)
    add_webhook(svc, "call_a", "call_ended", OCT_26 - timedelta(minutes=1), 20)
    add_webhook(svc, "call_b", "call_ended", OCT_26 - timedelta(minutes=2), None)  # not processed: not timed
    add_webhook(svc, "evt_late", "payment_intent.succeeded", OCT_27, 5000)  # after the period
    at(clock, OCT_27 + timedelta(days=1))
    return {"weber": weber, "physio": physio, "dollars": dollars}


def test_payment_statistics_for_the_business_match_hand_computed_figures(
    svc: Services, dst_world: dict[str, int]
) -> None:
    stats = svc.queries.payment_statistics(Period(start=date(2026, 10, 24), end=date(2026, 10, 26)))

    assert (stats.currency, stats.timezone, stats.company_id) == ("EUR", "Europe/Berlin", None)
    assert stats.revenue.cents == 10_000 + 5_000 + 2_500
    assert stats.net_revenue.cents == stats.revenue.cents
    assert stats.topups_credited == 3
    assert {s.status: (s.count, s.amount.cents) for s in stats.topups_by_status} == {
        "succeeded": (3, 17_500),
        "failed": (2, 9_500),
    }
    assert {m.method: (m.count, m.credited, m.failed, m.credited_amount.cents) for m in stats.topups_by_method} == {
        "bank_transfer": (2, 2, 0, 15_000),
        "checkout": (1, 0, 1, 0),
        "auto_topup": (2, 1, 1, 2_500),
    }
    assert stats.failed_topups == 2 and stats.failure_rate == 0.4
    assert (stats.auto_topup.attempts, stats.auto_topup.credited, stats.auto_topup.failed) == (2, 1, 1)
    assert (stats.refunds.call_refunds, stats.refunds.call_refunded.cents) == (1, 40)
    assert (stats.refunds.topup_refunds, stats.refunds.topup_refunded.cents) == (0, 0)
    assert (stats.calls.count, stats.calls.billed_seconds, stats.calls.charged.cents) == (4, 790, 475)
    assert stats.calls.billed_minutes == Decimal("13.17")
    assert stats.active_companies == 2
    assert stats.companies == 2
    balances = [svc.queries.balance(dst_world[name]).balance.cents for name in ("weber", "physio")]
    assert stats.total_balance.cents == sum(balances)
    assert stats.average_balance.cents == (sum(balances) + 1) // 2  # half up
    assert [(t.provider, t.event_type, t.count, t.avg_seconds, t.max_seconds) for t in stats.webhook_processing] == [
        ("retell", "call_ended", 1, 0.02, 0.02),
        ("stripe", "payment_intent.succeeded", 2, 0.201, 0.301),
    ]

    daily = {d.day: d for d in stats.daily}
    assert list(daily) == [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)]
    sat, sun, mon = daily.values()
    assert (sat.revenue.cents, sun.revenue.cents, mon.revenue.cents) == (10_000, 5_000, 2_500)
    assert (sat.calls, sun.calls, mon.calls) == (1, 2, 1)
    assert (sat.call_charges.cents, sun.call_charges.cents, mon.call_charges.cents) == (100, 360, 15)
    assert (sat.active_companies, sun.active_companies, mon.active_companies) == (1, 2, 1)
    assert (sat.topups_failed, sun.topups_failed, mon.topups_failed) == (0, 2, 0)
    assert (sun.auto_topup_attempts, sun.auto_topup_failures, mon.auto_topup_attempts) == (1, 1, 1)
    assert (sat.refunded.cents, sun.refunded.cents, mon.refunded.cents) == (0, 40, 0)
    assert (sat.webhook_events, sun.webhook_events, mon.webhook_events) == (1, 2, 0)
    assert (sat.webhook_avg_seconds, sun.webhook_avg_seconds, mon.webhook_avg_seconds) == (0.1, 0.161, None)
    assert sum(d.revenue.cents for d in stats.daily) == stats.revenue.cents
    assert sum(d.calls for d in stats.daily) == stats.calls.count


def test_payment_statistics_for_one_company_use_its_currency_and_locale(
    svc: Services, dst_world: dict[str, int]
) -> None:
    period = Period(start=date(2026, 10, 24), end=date(2026, 10, 26))
    weber = svc.queries.payment_statistics(period, company_id=dst_world["weber"])
    assert (weber.revenue.cents, weber.calls.count, weber.calls.charged.cents) == (12_500, 2, 160)
    assert weber.revenue.formatted == "125,00\xa0€"
    assert (weber.failed_topups, weber.failure_rate, weber.active_companies, weber.companies) == (1, 0.3333, 1, 1)
    assert weber.webhook_processing == ()
    assert [d.calls for d in weber.daily] == [1, 1, 0]

    dollars = svc.queries.payment_statistics(period, company_id=dst_world["dollars"])
    assert (dollars.currency, dollars.calls.count, dollars.calls.charged.cents) == ("USD", 1, 420)
    business_usd = svc.queries.payment_statistics(period, currency="USD")
    assert (business_usd.calls.count, business_usd.revenue.cents, business_usd.companies) == (1, 0, 1)


def test_payment_statistics_of_a_quiet_period_are_zero_with_one_row_per_day(svc: Services) -> None:
    stats = svc.queries.payment_statistics(Period(start=date(2026, 3, 28), end=date(2026, 3, 30)))
    assert stats.revenue.cents == 0 and stats.failure_rate is None and stats.companies == 0
    assert stats.average_balance.cents == 0
    assert [d.day for d in stats.daily] == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]


def test_periods_are_whole_local_days_and_bounded(clock: Clock) -> None:
    clock.now = datetime(2026, 10, 25, 22, 30, tzinfo=UTC)  # 23:30 CET on Sunday
    period = Period.last_days(2, now=clock.now, timezone="Europe/Berlin")
    assert (period.start, period.end) == (date(2026, 10, 24), date(2026, 10, 25))
    assert period.utc_bounds("Europe/Berlin") == (OCT_24, OCT_26)
    with pytest.raises(InvalidInput):
        Period.of(date(2026, 1, 2), date(2026, 1, 1))
    with pytest.raises(InvalidInput):
        Period.last_days(367, now=clock.now, timezone="Europe/Berlin")


def test_a_whole_year_of_daily_statistics_counts_the_same_events(svc: Services, dst_world: dict[str, int]) -> None:
    year = svc.queries.payment_statistics(Period(start=date(2026, 1, 1), end=date(2026, 12, 31)))
    assert len(year.daily) == 365
    # everything except the first payment (22 Oct) and the call after the period (27 Oct)
    assert year.revenue.cents == 20_000 + 17_500
    assert (year.calls.count, year.calls.charged.cents) == (5, 475 + 60)
    busy = {d.day for d in year.daily if d.calls}
    assert busy == {date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26), date(2026, 10, 27)}


def test_tax_totals_sum_invoices_and_credit_notes_by_vat_treatment(svc: Services, clock: Clock) -> None:
    weber = add_company(svc, "Praxis Weber", **ADDRESS)
    physio = add_company(svc, "Physio Nord", **ADDRESS)
    first = pay(svc, weber, 11_900, "transfer-1")
    pay(svc, physio, 5_950, "transfer-2")
    refunds = TopupRefundService(svc.ctx, None, svc.topups)
    refunds.after_refund.append(svc.invoices.after_refund_in)
    svc.db.write(
        lambda conn: refunds.record_stripe_refund_in(
            conn, topup=svc.topups.get(first), stripe_refund_id="re_1", amount=1_190, status="succeeded",
            our_refund_id=None,
        )
    )
    period = svc.queries.period(1)

    totals = svc.queries.tax_totals(period)
    assert [(t.type, t.vat_category, t.vat_rate, t.documents) for t in totals.lines] == [
        ("invoice", "S", "19", 2),
        ("credit_note", "S", "19", 1),
    ]
    assert [(t.net.cents, t.vat.cents, t.gross.cents) for t in totals.lines] == [
        (15_000, 2_850, 17_850),
        (1_000, 190, 1_190),
    ]
    assert (totals.net.cents, totals.vat.cents, totals.gross.cents) == (14_000, 2_660, 16_660)
    only_weber = svc.queries.tax_totals(period, company_id=weber)
    assert (only_weber.net.cents, only_weber.vat.cents, only_weber.gross.cents) == (9_000, 1_710, 10_710)
    earlier = Period(start=period.start - timedelta(days=30), end=period.start - timedelta(days=1))
    assert svc.queries.tax_totals(earlier).lines == ()
