"""The mail templates: every notification kind renders in German and English, as plain text and HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing_core.services import notifications
from billing_core.services.mail_templates import TEMPLATE_DIR, MailCompany, MailRenderer, UnknownTemplate
from billing_core.services.notifications import TEMPLATES

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # 10:30 in Berlin
COMPANY = MailCompany(id=7, name="Praxis Weber", email="praxis@example.com", locale="de_DE", currency="EUR")
NBSP = "\xa0"


def eur(cents: int) -> dict[str, Any]:
    return {"cents": cents, "currency": "EUR"}


# One payload per kind, shaped like what the services queue (see the notifications.enqueue calls).
PAYLOADS: dict[str, dict[str, Any]] = {
    "invoice": {"invoice_id": 12, "number": "RE-2026-000123", "gross": eur(4200)},
    "credit_note": {"invoice_id": 13, "number": "GS-2026-000007", "gross": eur(4200)},
    "low_balance": {"balance": eur(4200), "available": eur(4200), "threshold": eur(5000), "auto_topup_enabled": False},
    "payment_failed": {
        "topup_id": 3,
        "amount": eur(4200),
        "reason": "Your card was declined.",
        "code": "card_declined",
    },
    "auto_topup_succeeded": {"topup_id": 3, "amount": eur(4200), "balance_after": eur(5250)},
    "auto_topup_failed": {
        "topup_id": 3,
        "amount": eur(4200),
        "reason": "Your card was declined.",
        "code": "card_declined",
        "consecutive_failures": 1,
    },
    "auto_topup_disabled": {
        "topup_id": 3,
        "amount": eur(4200),
        "reason": "Your card has insufficient funds.",
        "code": "insufficient_funds",
        "consecutive_failures": 3,
    },
    "high_failure_rate": {
        "failed": 3,
        "total": 12,
        "rate": "0.2500",
        "since": "2026-11-02T08:30:00+00:00",
        "until": "2026-11-02T09:30:00+00:00",
    },
    "dispute_opened": {"dispute": "dp_1", "topup_id": 3, "amount": 4200, "currency": "EUR", "reason": "fraudulent"},
    "dispute_closed": {"dispute": "dp_1", "topup_id": 3, "amount": 4200, "status": "won"},
    "payment_method_detached": {"payment_method": "pm_1", "auto_topup_disabled": True},
    "invoice_blocked": {"topup_id": 3, "reason": "company 7 cannot be invoiced", "missing": ["postal_code", "city"]},
    "webhook_dead_letter": {
        "provider": "retell",
        "event_id": "call_ended:call_1",
        "event_type": "call_ended",
        "reason": "CallTooLong: call call_1 lasted 90000 s, more than the maximum of 14400 s; not charged",
    },
}
AMOUNT_FREE = {
    "high_failure_rate",
    "payment_method_detached",
    "invoice_blocked",
    "auto_topup_disabled",
    "webhook_dead_letter",
}


@pytest.fixture(scope="module")
def renderer() -> MailRenderer:
    return MailRenderer(default_locale="de_DE", timezone="Europe/Berlin")


def render(renderer: MailRenderer, kind: str, recipient: str, locale: str, **changes: Any):  # type: ignore[no-untyped-def]
    payload = {**PAYLOADS[kind], **changes.pop("payload", {})}
    company = changes.pop("company", COMPANY)
    return renderer.render(
        kind=kind, recipient=recipient, payload=payload, locale=locale, company=company, created_at=WHEN, **changes
    )


def test_every_notification_kind_has_templates_and_every_template_a_kind():
    assert {kind for kind, _ in TEMPLATES} == set(notifications.KINDS)
    on_disk = {path.relative_to(TEMPLATE_DIR).as_posix() for path in TEMPLATE_DIR.rglob("*.*") if "/" in
               path.relative_to(TEMPLATE_DIR).as_posix() and path.stem.count(".") == 1}
    expected = {f"{language}/{kind}.{recipient}.{ext}" for language in ("de", "en") for kind, recipient in TEMPLATES
                for ext in ("txt", "html")}
    assert on_disk == expected
    assert ("payment_failed", "company") in TEMPLATES and ("payment_failed", "admin") in TEMPLATES


@pytest.mark.parametrize("locale", ["de_DE", "en_GB"])
@pytest.mark.parametrize(("kind", "recipient"), TEMPLATES)
def test_every_kind_renders_subject_text_and_html_in_both_languages(renderer, kind, recipient, locale):
    mail = render(renderer, kind, recipient, locale)

    assert mail.subject and "\n" not in mail.subject and len(mail.subject) < 160
    assert mail.text.strip() and "<p>" not in mail.text and "{{" not in mail.text
    assert mail.html.startswith("<!DOCTYPE html>") and "</html>" in mail.html and "{{" not in mail.html
    assert f'<html lang="{locale[:2]}">' in mail.html
    assert f"<title>{mail.subject}</title>" in mail.html
    greeting = {"de": ("Guten Tag", "Hallo"), "en": ("Hello",)}[locale[:2]]
    assert mail.text.lstrip().startswith(greeting)
    if kind not in AMOUNT_FREE:
        amount = f"42,00{NBSP}€" if locale == "de_DE" else "€42.00"
        assert amount in mail.text and amount in mail.html


def test_german_amounts_and_dates_follow_the_german_locale(renderer):
    mail = render(renderer, "auto_topup_succeeded", "company", "de_DE")

    assert mail.subject == f"Automatische Aufladung: 42,00{NBSP}€ gutgeschrieben"
    assert f"am 2. November 2026, 10:30 automatisch um 42,00{NBSP}€ aufgeladen" in mail.text
    assert f"Ihr neues Guthaben beträgt 52,50{NBSP}€." in mail.text


def test_english_amounts_and_dates_follow_the_english_locale(renderer):
    mail = render(renderer, "auto_topup_succeeded", "company", "en_US")

    assert mail.subject == "Auto top-up: €42.00 added"
    assert "On November 2, 2026, 10:30\u202fAM your balance was topped up automatically by €42.00." in mail.text


def test_a_german_speaking_locale_gets_the_german_template_with_its_own_formats(renderer):
    mail = render(renderer, "invoice", "company", "de_CH", payload={"gross": {"cents": 4200, "currency": "CHF"}})

    assert mail.subject == "Ihre Rechnung RE-2026-000123"
    assert "CHF" in mail.text and "42.00" in mail.text


def test_an_unknown_locale_falls_back_to_the_default_locale(renderer):
    mail = render(renderer, "invoice", "company", "xx_YY")

    assert mail.subject == "Ihre Rechnung RE-2026-000123"
    assert f"42,00{NBSP}€" in mail.text


def test_other_languages_get_english_text_with_amounts_in_their_own_format(renderer):
    mail = render(renderer, "payment_failed", "company", "fr_FR")

    assert mail.subject.startswith("Your payment of 42,00")
    assert "€" in mail.subject


def test_html_escapes_company_names_and_provider_text_but_plain_text_keeps_them(renderer):
    company = MailCompany(7, 'Müller <script>alert("x")</script> & Söhne', "m@example.com", "de_DE", "EUR")
    mail = render(
        renderer,
        "payment_failed",
        "admin",
        "de_DE",
        company=company,
        payload={"reason": "<b>declined</b>", "code": None},
    )

    assert "<script>" not in mail.html and "<b>declined</b>" not in mail.html
    assert "Müller &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Söhne" in mail.html
    assert "&lt;b&gt;declined&lt;/b&gt;" in mail.html
    assert 'Müller <script>alert("x")</script> & Söhne' in mail.text
    assert "<b>declined</b>" in mail.text
    assert "&amp;" not in mail.subject and "&lt;" not in mail.subject


def test_company_greeting_is_escaped_once_in_html(renderer):
    company = MailCompany(7, "Weber & Weber", "w@example.com", "en_GB", "EUR")
    mail = render(renderer, "invoice", "company", "en_GB", company=company)

    assert "<p>Hello Weber &amp; Weber,</p>" in mail.html
    assert "&amp;amp;" not in mail.html
    assert mail.text.startswith("Hello Weber & Weber,")


def test_a_line_break_in_a_company_name_never_reaches_the_subject(renderer):
    company = MailCompany(7, "Evil\r\nBcc: victim@example.com", "e@example.com", "de_DE", "EUR")
    mail = render(renderer, "dispute_opened", "admin", "de_DE", company=company)

    assert "\r" not in mail.subject and "\n" not in mail.subject
    assert "Evil Bcc: victim@example.com" in mail.subject


@pytest.mark.parametrize(
    ("locale", "phrase"),
    [("de_DE", "Bitte aktualisieren Sie Ihre Zahlungsmethode"), ("en_GB", "Please update your payment method")],
)
def test_auto_topup_failing_for_authentication_tells_the_company_to_update_its_payment_method(renderer, locale, phrase):
    needs_auth = render(
        renderer,
        "auto_topup_failed",
        "company",
        locale,
        payload={"code": "authentication_required", "reason": "the bank asked the cardholder to authenticate"},
    )
    declined = render(renderer, "auto_topup_failed", "company", locale)

    assert phrase in needs_auth.text and phrase in needs_auth.html
    assert "3-D Secure" in needs_auth.text
    assert phrase not in declined.text and phrase not in declined.html


def test_failure_reasons_are_translated_by_code_and_shown_verbatim_otherwise(renderer):
    known = render(renderer, "payment_failed", "company", "de_DE", payload={"code": "expired_card"})
    unknown = render(renderer, "payment_failed", "company", "de_DE", payload={"code": "odd", "reason": "Odd thing."})

    assert "Grund: Die Karte ist abgelaufen." in known.text
    assert "Grund: Odd thing." in unknown.text


def test_low_balance_mentions_reserved_money_and_auto_top_up_only_when_they_apply(renderer):
    plain = render(renderer, "low_balance", "company", "de_DE")
    reserved = render(
        renderer, "low_balance", "company", "de_DE", payload={"available": eur(1200), "auto_topup_enabled": True}
    )
    empty = render(renderer, "low_balance", "company", "en_GB", payload={"balance": eur(-150)})

    assert plain.subject == f"Ihr Guthaben ist niedrig: 42,00{NBSP}€"
    assert f"unter Ihrer Warnschwelle von 50,00{NBSP}€" in plain.text
    assert "reserviert" not in plain.text and "Bitte laden Sie Ihr Guthaben auf" in plain.text
    assert f"Davon sind 12,00{NBSP}€ verfügbar" in reserved.text
    assert "automatische Aufladung ist eingeschaltet" in reserved.text
    assert empty.subject == "Your balance is used up"
    assert "-€1.50" in empty.text


def test_high_failure_rate_shows_counts_and_a_localized_rate(renderer):
    german = render(renderer, "high_failure_rate", "admin", "de_DE", payload={"rate": "0.1250"})
    english = render(renderer, "high_failure_rate", "admin", "en_GB", payload={"rate": "0.1250"})

    assert german.subject == f"Warnung: 12,5{NBSP}% der Zahlungen der letzten Stunde fehlgeschlagen"
    assert "3 von 12 Zahlungen" in german.text and "2. November 2026, 09:30 bis 2. November 2026, 10:30" in german.text
    assert english.subject == "Warning: 12.5% of the payments of the last hour failed"


def test_dispute_amounts_without_a_currency_use_the_company_currency(renderer):
    company = MailCompany(7, "Zürich AG", "z@example.com", "de_CH", "CHF")
    lost = render(renderer, "dispute_closed", "admin", "de_DE", company=company, payload={"status": "lost"})
    won = render(renderer, "dispute_closed", "admin", "de_DE", company=company)

    assert f"42,00{NBSP}CHF" in lost.text and lost.subject.startswith("Zahlungsstreit verloren")
    assert "vom Guthaben der Firma abgezogen" in lost.text
    assert won.subject.startswith("Zahlungsstreit abgeschlossen") and "wieder freigegeben" in won.text


def test_invoice_blocked_names_the_missing_fields_and_the_command_to_finish(renderer):
    mail = render(renderer, "invoice_blocked", "admin", "de_DE")

    assert mail.subject == "Rechnung nicht erstellt: Angaben fehlen bei Praxis Weber"
    assert "postal_code, city" in mail.text and "billing invoices issue-missing" in mail.text


def test_a_kind_sent_to_a_recipient_it_has_no_template_for_is_refused(renderer):
    with pytest.raises(UnknownTemplate):
        render(renderer, "dispute_opened", "company", "de_DE")
    with pytest.raises(UnknownTemplate):
        renderer.render(kind="invoice", recipient="admin", payload={}, locale="de_DE")
