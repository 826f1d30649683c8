"""Demo data for a first look (``billing demo``, ``make run``): loaded only into an empty database.

Three companies with a top-up and a call or two each, then an operator's first weeks with three more:
German, Austrian and Swiss addresses, their own rates and bonus rules, three weeks of calls, bank transfers
and card payments, a declined card, a refunded call, a disputed payment, invoices and mails waiting in the
outbox. Card payments and their outcomes arrive as Stripe would report them (signed events into the
inbox), so they look the same with or without a Stripe emulator. When Stripe (or ``billing run``'s
emulator) is configured, the companies with auto top-up also get a saved test card.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from billing_core.bootstrap import Services
from billing_core.config import Settings
from billing_core.db.tables import companies
from billing_core.money import Money
from billing_core.services.webhooks.inbox import InboundEvent

# The seller on the demo's invoices when the operator has configured none (Settings invents no seller):
# named as a demo so that nobody takes these documents for real ones.
DEMO_SELLER: dict[str, str] = {
    "seller_name": "Demo Sprachassistenz GmbH (Demo-Daten)",
    "seller_address_line1": "Musterstraße 1",
    "seller_postal_code": "10115",
    "seller_city": "Berlin",
    "seller_country": "DE",
    "seller_vat_id": "DE136695976",
    "seller_email": "rechnung@demo.example",
}


def demo_settings(settings: Settings) -> Settings:
    """The operator's settings for loading the demo: their seller if configured, the demo seller otherwise."""
    if not settings.missing_seller_settings():
        return settings
    return settings.model_copy(update=DEMO_SELLER)


@dataclass(frozen=True)
class DemoCompany:
    name: str
    email: str
    locale: str
    topup: str
    calls: tuple[tuple[str, int], ...]
    address: dict[str, Any] = field(default_factory=dict)


DEMO_COMPANIES = (
    DemoCompany(
        "Zahnarztpraxis Dr. Weber",
        "praxis@weber-dental.example",
        "de_DE",
        "150.00",
        (("demo-call-1", 245), ("demo-call-2", 61)),
        {
            "address_line1": "Königsallee 12",
            "postal_code": "40212",
            "city": "Düsseldorf",
            "country": "DE",
            "tax_number": "103/5734/0815",
        },
    ),
    DemoCompany(
        "Autohaus Berger GmbH",
        "service@berger-auto.example",
        "de_DE",
        "500.00",
        (("demo-call-3", 1830),),
        {
            "address_line1": "Mariahilfer Straße 88",
            "postal_code": "1070",
            "city": "Wien",
            "country": "AT",
            "vat_id": "ATU13585627",  # format and check digit right (an invented one would be refused)
        },
    ),
    DemoCompany(
        "Alpine Physio AG",
        "hello@alpine-physio.example",
        "en_GB",
        "25.00",
        (("demo-call-4", 2100),),
        {"address_line1": "Bahnhofstrasse 5", "postal_code": "8001", "city": "Zürich", "country": "CH"},
    ),
)


def load_demo_data(services: Services, *, actor: str) -> bool:
    """Seed companies, a bonus rule, top-ups and calls; returns False (and does nothing) if data exists."""
    has_companies = services.db.read(
        lambda conn: conn.execute(select(func.count()).select_from(companies)).scalar_one() > 0
    )
    if has_companies:
        return False
    services.bonus_rules.add(
        name="10% on 500 EUR and more", min_topup=Money.parse("500.00", "EUR"), bonus_percent=Decimal(10), actor=actor
    )
    for spec in DEMO_COMPANIES:
        company = services.companies.add(
            name=spec.name, email=spec.email, locale=spec.locale, actor=actor, **spec.address
        )
        services.topups.record_payment(
            company_id=company.id,
            amount=Money.parse(spec.topup, company.currency),
            reference=f"DEMO-{company.id}",
            actor=actor,
        )
        for call_id, seconds in spec.calls:
            started = services.ctx.clock() - timedelta(seconds=seconds + 60)
            services.charging.charge_call(
                call_id=call_id, company_id=company.id, duration_seconds=seconds, started_at=started
            )
    load_first_weeks(services, actor=actor)
    return True


@dataclass(frozen=True)
class FirstWeeksCompany:
    name: str
    email: str
    locale: str
    rate: str
    increment: int
    bank_transfer: str
    calls_per_day: tuple[int, int]
    address: dict[str, Any]
    auto_topup: tuple[str, str] | None = None  # threshold, amount
    bonus: tuple[str, int] | None = None  # the company's own rule: minimum top-up, percent


FIRST_WEEKS = (
    FirstWeeksCompany(
        "Hausarztpraxis Dr. Gruber",
        "ordination@gruber-med.example",
        "de_AT",
        "0.39",
        1,
        "100.00",
        (2, 5),
        {"address_line1": "Herrengasse 16", "postal_code": "8010", "city": "Graz", "country": "AT"},
        auto_topup=("30.00", "100.00"),
    ),
    FirstWeeksCompany(
        "Kanzlei Hofmann & Partner",
        "kanzlei@hofmann-partner.example",
        "de_DE",
        "0.45",
        60,
        "300.00",
        (1, 3),
        {
            "address_line1": "Jungfernstieg 7",
            "postal_code": "20354",
            "city": "Hamburg",
            "country": "DE",
            "tax_number": "22/815/08154",
        },
        bonus=("250.00", 5),
    ),
    FirstWeeksCompany(
        "Hotel Seeblick Luzern",
        "rezeption@seeblick-luzern.example",
        "de_CH",
        "0.42",
        1,
        "150.00",
        (3, 6),
        {"address_line1": "Haldenstrasse 4", "postal_code": "6006", "city": "Luzern", "country": "CH"},
        auto_topup=("25.00", "75.00"),
    ),
)


def load_first_weeks(services: Services, *, actor: str) -> None:
    rng = random.Random(20261201)  # the same demo every time
    now = services.ctx.clock()
    ids: dict[str, int] = {}
    for spec in FIRST_WEEKS:
        company = services.companies.add(
            name=spec.name,
            email=spec.email,
            locale=spec.locale,
            rate_per_minute=Decimal(spec.rate),
            billing_increment_seconds=spec.increment,
            actor=actor,
            **spec.address,
        )
        ids[spec.name] = company.id
        if spec.bonus is not None:
            minimum, percent = spec.bonus
            services.bonus_rules.add(
                name=f"{percent}% ab {minimum} EUR ({spec.name})",
                min_topup=Money.parse(minimum, "EUR"),
                bonus_percent=Decimal(percent),
                company_id=company.id,
                actor=actor,
            )
        services.topups.record_payment(
            company_id=company.id,
            amount=Money.parse(spec.bank_transfer, "EUR"),
            reference=f"SEPA-{company.id}-0001",
            actor=actor,
        )
        for day in range(21, 0, -1):
            for n in range(rng.randint(*spec.calls_per_day)):
                seconds = max(15, int(rng.lognormvariate(4.4, 0.7)))
                started = now - timedelta(days=day, hours=rng.randint(8, 17), minutes=rng.randint(0, 59))
                services.charging.charge_call(
                    call_id=f"demo-{company.id}-{day:02d}-{n}",
                    company_id=company.id,
                    duration_seconds=seconds,
                    started_at=started,
                )
        if spec.auto_topup is not None:
            threshold, amount = spec.auto_topup
            services.companies.set(
                company.id,
                actor=actor,
                auto_topup_threshold=Money.parse(threshold, "EUR"),
                auto_topup_amount=Money.parse(amount, "EUR"),
            )
            save_test_card(services, company.id, actor=actor)

    hofmann, seeblick, gruber = (ids[spec.name] for spec in (FIRST_WEEKS[1], FIRST_WEEKS[2], FIRST_WEEKS[0]))
    # A card payment that went through (with the company's own bonus), and one the bank declined.
    card_payment(services, hofmann, "250.00", actor=actor, succeeded=True)
    card_payment(services, hofmann, "100.00", actor=actor, succeeded=False)
    # A guest disputes a card payment: the amount is held until the dispute is decided.
    paid = card_payment(services, seeblick, "120.00", actor=actor, succeeded=True)
    stripe_event(
        services,
        "charge.dispute.created",
        {
            "id": f"dp_demo_{paid}",
            "object": "dispute",
            "amount": 12000,
            "currency": "eur",
            "charge": f"ch_demo_{paid}",
            "payment_intent": f"pi_demo_{paid}",
            "reason": "fraudulent",
            "status": "needs_response",
        },
    )
    # A dropped call refunded in part.
    services.refunds.refund_call(
        call_id=f"demo-{gruber}-03-0",
        amount=Money.parse("0.50", "EUR"),
        reason="call dropped after the greeting",
        actor=actor,
        idempotency_key=f"demo-refund-{gruber}",
    )


def save_test_card(services: Services, company_id: int, *, actor: str) -> None:
    """A saved Visa test card for auto top-up; only where Stripe or its emulator is configured."""
    if services.stripe_services is None:
        return
    payments = services.stripe_services.payments
    method = payments.attach_payment_method(company_id, "pm_card_visa", actor=actor)
    payments.use_for_auto_topup(company_id, method.id, actor=actor)
    services.companies.set(company_id, actor=actor, auto_topup_enabled=True)


def card_payment(services: Services, company_id: int, amount: str, *, actor: str, succeeded: bool) -> int:
    """A top-up paid by card, reported as Stripe reports it: a PaymentIntent event into the inbox."""
    topup = services.topups.create_pending(
        company_id=company_id,
        amount=Money.parse(amount, "EUR"),
        source="payment_intent",
        initiated_by=actor,
        idempotency_key=f"demo-card-{company_id}-{amount}",
    )
    # As the payment service does: the PaymentIntent's id is stored before Stripe reports on it, since
    # events settle only the objects we stored.
    topup = services.topups.attach_stripe_ids(topup.id, stripe_payment_intent_id=f"pi_demo_{topup.id}")
    intent: dict[str, Any] = {
        "id": f"pi_demo_{topup.id}",
        "object": "payment_intent",
        "amount": topup.amount.cents,
        "currency": "eur",
        "metadata": {"topup_id": str(topup.id), "company_id": str(company_id), "source": "payment_intent"},
        "payment_method_types": ["card"],
    }
    if succeeded:
        intent.update(status="succeeded", amount_received=topup.amount.cents, latest_charge=f"ch_demo_{topup.id}")
        stripe_event(services, "payment_intent.succeeded", intent)
    else:
        intent.update(
            status="requires_payment_method",
            amount_received=0,
            last_payment_error={
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            },
        )
        stripe_event(services, "payment_intent.payment_failed", intent)
    return topup.id


def stripe_event(services: Services, event_type: str, obj: dict[str, Any]) -> None:
    event_id = f"evt_demo_{obj['id']}_{event_type.replace('.', '_')}"
    obj = {**obj, "livemode": False}
    data = {"id": event_id, "object": "event", "type": event_type, "livemode": False, "data": {"object": obj}}
    services.webhooks.receive(InboundEvent("stripe", event_id, event_type, data), json.dumps(data).encode())
