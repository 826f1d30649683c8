"""Mail templates: subject, plain text and HTML of one notification, in the recipient's language.

Templates live in ``billing_core/templates/mail/<language>/<kind>.<recipient>.{txt,html}``; the subject is
the ``subject`` block of the text template. German for ``de*`` locales, English otherwise; amounts and dates
are formatted with babel for the recipient's full locale, times in the seller's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_percent

from billing_core.money import Money
from billing_core.services.notifications import TEMPLATES

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "mail"
LANGUAGES = ("de", "en")


@dataclass(frozen=True, slots=True)
class MailCompany:
    id: int
    name: str
    email: str
    locale: str
    currency: str


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class UnknownTemplate(LookupError):
    def __init__(self, kind: str, recipient: str) -> None:
        super().__init__(f"no mail template for {kind} to {recipient}")
        self.kind = kind
        self.recipient = recipient


def _money(context: jinja2.runtime.Context, value: Any, currency: str | None = None) -> str:
    """``{"cents", "currency"}`` dicts, Money, or integer minor units (of ``currency`` or the company's)."""
    if isinstance(value, Money):
        money = value
    elif isinstance(value, Mapping):
        money = Money(int(value["cents"]), str(value["currency"]))
    elif isinstance(value, int) and not isinstance(value, bool):
        money = Money(value, currency or str(context["currency"]))
    else:
        raise TypeError(f"cannot show {type(value).__name__} as an amount")
    return money.format(str(context["locale"]))


def _local(context: jinja2.runtime.Context, value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(context["timezone"])


def _date(context: jinja2.runtime.Context, value: datetime | str) -> str:
    return str(format_date(_local(context, value), format="long", locale=context["locale"]))


def _datetime(context: jinja2.runtime.Context, value: datetime | str) -> str:
    moment = _local(context, value)
    day = format_date(moment, format="long", locale=context["locale"])
    clock = format_time(moment, format="short", locale=context["locale"])
    return f"{day}, {clock}"


def _percent(context: jinja2.runtime.Context, value: Any) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation as error:
        raise TypeError(f"cannot show {value!r} as a percentage") from error
    # one decimal at most, in the locale's own pattern: "12,5 %" (de), "12.5%" (en)
    number = number.quantize(Decimal("0.001")).normalize()
    return str(format_percent(number, locale=context["locale"], decimal_quantization=False))


_LINE_BREAKS_AND_SPACES = re.compile("[ \t\r\n\f\v\x85\u2028\u2029]+")


def one_line(text: str) -> str:
    """Header-safe: runs of spaces and line breaks become one space; no-break spaces in amounts stay."""
    return _LINE_BREAKS_AND_SPACES.sub(" ", text).strip()


def make_environment(directory: Path = TEMPLATE_DIR) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = jinja2.pass_context(_money)
    env.filters["date"] = jinja2.pass_context(_date)
    env.filters["datetime"] = jinja2.pass_context(_datetime)
    env.filters["percent"] = jinja2.pass_context(_percent)
    return env


def usable_locale(locale: str | None, fallback: str) -> str:
    """``locale`` when babel knows it, else ``fallback`` (and ``en`` when neither is known)."""
    for candidate in (locale, fallback):
        if not candidate:
            continue
        try:
            Locale.parse(candidate)
        except (UnknownLocaleError, ValueError, TypeError):
            continue
        return candidate
    return "en"


def language_of(locale: str) -> str:
    language = Locale.parse(locale).language
    return language if language in LANGUAGES else "en"


class MailRenderer:
    """Renders subject, plain text and HTML of one notification; pure apart from reading template files."""

    def __init__(
        self,
        *,
        default_locale: str = "de_DE",
        default_currency: str = "EUR",
        timezone: str = "Europe/Berlin",
        environment: jinja2.Environment | None = None,
    ) -> None:
        self._env = environment or make_environment()
        self._default_locale = usable_locale(default_locale, "de_DE")
        self._default_currency = default_currency
        self._timezone = ZoneInfo(timezone)

    def render(
        self,
        *,
        kind: str,
        recipient: str,
        payload: Mapping[str, Any],
        locale: str | None = None,
        company: MailCompany | None = None,
        created_at: datetime | None = None,
    ) -> RenderedMail:
        if (kind, recipient) not in TEMPLATES:
            raise UnknownTemplate(kind, recipient)
        locale = usable_locale(locale, self._default_locale)
        language = language_of(locale)
        context: dict[str, Any] = {
            "kind": kind,
            "recipient": recipient,
            "payload": payload,
            "company": company,
            "locale": locale,
            "language": language,
            "currency": company.currency if company else self._default_currency,
            "timezone": self._timezone,
            "created_at": created_at or datetime.now(UTC),
        }
        name = f"{language}/{kind}.{recipient}"
        text_template = self._env.get_template(f"{name}.txt")
        subject_block = text_template.blocks.get("subject")
        if subject_block is None:
            raise jinja2.TemplateError(f"{name}.txt has no subject block")
        subject = one_line("".join(subject_block(text_template.new_context(context))))
        text = text_template.render(context)
        html = self._env.get_template(f"{name}.html").render(context, subject=subject)
        return RenderedMail(subject=subject, text=text, html=html)
