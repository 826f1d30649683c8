"""The outbox sender: claims due notifications, renders them, sends them over SMTP, records the outcome.

Each cycle of :meth:`MailerService.send_due` runs three kinds of short transactions and no long one:

1. **claim**: due ``pending`` rows are selected ``FOR UPDATE SKIP LOCKED``, their ``attempts`` counted up and
   their ``next_attempt_at`` moved one lease ahead, then committed. Another worker skips rows locked by the
   claim and, once it committed, no longer sees them as due: two workers never send one mail twice.
2. **send**: outside any transaction, through the mail adapter.
3. **finish**: one transaction per mail marks it ``sent``, puts it back to ``pending`` with an exponential
   backoff, or marks it ``failed`` (a permanent refusal, or ``max_attempts`` used up). The update is fenced on
   the attempt count of the claim, so a worker whose lease ran out cannot overwrite a newer claim.

Only the ``notifications`` table is ever written here; a mail that fails never touches billing.
When the SMTP server cannot be reached at all, the rest of the batch is handed back without counting an
attempt, and a batch that takes longer than half its lease hands back what it has not started.

:meth:`MailerService.queue_low_balance_alerts` and :meth:`MailerService.queue_failure_rate_alert` are the
periodic checks that fill the outbox with alerts; a ``dedupe_key`` per day or hour makes "at most once" a
unique key.

Templates live in ``billing_core/templates/mail/<language>/<kind>.<recipient>.{txt,html}``; the subject is
the ``subject`` block of the text template. German for ``de*`` locales, English otherwise; amounts and dates
are formatted with babel for the recipient's full locale.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_percent
from sqlalchemy import Connection, case, func, select, true, update

from billing_core.adapters.mail import MailError
from billing_core.db.tables import balances, companies, notifications, topups
from billing_core.money import Money
from billing_core.services import notifications as outbox
from billing_core.services.context import ServiceContext

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "mail"
LANGUAGES = ("de", "en")

# Every (kind, recipient) pair that has templates; a notification queued for another pair fails at once.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("invoice", "company"),
    ("credit_note", "company"),
    ("low_balance", "company"),
    ("payment_failed", "company"),
    ("payment_failed", "admin"),
    ("auto_topup_succeeded", "company"),
    ("auto_topup_failed", "company"),
    ("auto_topup_disabled", "company"),
    ("high_failure_rate", "admin"),
    ("dispute_opened", "admin"),
    ("dispute_closed", "admin"),
    ("payment_method_detached", "company"),
    ("invoice_blocked", "admin"),
    ("webhook_dead_letter", "admin"),
)
ATTACHMENT_KINDS = frozenset({"invoice", "credit_note"})
# Top-ups that go through a payment provider and so can fail; bank transfers and manual credits cannot.
PAYMENT_SOURCES = ("checkout", "payment_intent", "auto_topup")
FAILURE_RATE_WINDOW = timedelta(hours=1)
FAILURE_RATE_LIMIT = Decimal("0.10")

Attachment = tuple[str, bytes, str]  # file name, content, MIME type ("application/pdf")


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


# -- rendering ------------------------------------------------------------------------------------


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


def _one_line(text: str) -> str:
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
        subject = _one_line("".join(subject_block(text_template.new_context(context))))
        text = text_template.render(context)
        html = self._env.get_template(f"{name}.html").render(context, subject=subject)
        return RenderedMail(subject=subject, text=text, html=html)


# -- the outbox sender ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """A claimed outbox row; ``attempts`` counts this attempt."""

    id: int
    kind: str
    recipient: str  # company | admin
    company_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    dedupe_key: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one notification in a :meth:`MailerService.send_due` cycle."""

    notification_id: int
    kind: str
    to: str | None
    status: str  # sent | retry | failed | deferred
    attempts: int
    error: str | None = None
    next_attempt_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "kind": self.kind,
            "to": self.to,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
        }


@dataclass(frozen=True)
class MailerPolicy:
    max_attempts: int = 8
    base_delay: timedelta = field(default_factory=lambda: timedelta(minutes=1))
    max_delay: timedelta = field(default_factory=lambda: timedelta(hours=1))
    # How long a claim keeps other workers away; far longer than one SMTP exchange (SMTP_URL timeout).
    lease: timedelta = field(default_factory=lambda: timedelta(minutes=10))

    def delay(self, attempts: int) -> timedelta:
        return min(self.base_delay * (1 << min(max(attempts - 1, 0), 30)), self.max_delay)


@dataclass(frozen=True, slots=True)
class _Claimed:
    row: NotificationRow
    company: MailCompany | None
    problem: str | None = None  # set when the row can never be sent (unreadable payload)


class _Undeliverable(Exception):
    """Nothing about this notification will change on a retry: it fails at once."""


@dataclass
class _Outcome:
    status: str
    error: str | None = None
    server_down: bool = False


class MailerService:
    def __init__(
        self,
        ctx: ServiceContext,
        sender: MailSender,
        *,
        attachments: Callable[[NotificationRow], list[Attachment]] | None = None,
        policy: MailerPolicy | None = None,
        renderer: MailRenderer | None = None,
        timezone: str = "Europe/Berlin",
    ) -> None:
        self._ctx = ctx
        self._sender = sender
        self._attachments = attachments
        self._policy = policy or MailerPolicy()
        settings = ctx.settings
        self._renderer = renderer or MailRenderer(
            default_locale=settings.default_locale, default_currency=settings.default_currency, timezone=timezone
        )

    # -- sending ----------------------------------------------------------------------------------

    async def send_due(self, limit: int = 50) -> list[Delivery]:
        """Send the notifications whose time has come; SMTP trouble is recorded on the rows, never raised."""
        claimed = await self._ctx.call(self._ctx.db.write, lambda conn: self._claim(conn, limit))
        if not claimed:
            return []
        deliveries: list[Delivery] = []
        give_back_after = time.monotonic() + self._policy.lease.total_seconds() / 2
        for index, item in enumerate(claimed):
            if index and time.monotonic() > give_back_after:  # due again at once, for this or another worker
                deliveries += await self._give_back(claimed[index:], "the batch outlived half its lease", timedelta())
                break
            delivery, server_down = await self._deliver(item)
            deliveries.append(delivery)
            if server_down and index + 1 < len(claimed):
                reason = delivery.error or "the mail server is unavailable"
                deliveries += await self._give_back(claimed[index + 1 :], reason, self._policy.base_delay)
                break
        return deliveries

    def _claim(self, conn: Connection, limit: int) -> list[_Claimed]:
        now = self._ctx.clock()
        rows = (
            conn.execute(
                select(notifications)
                .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
                .order_by(notifications.c.next_attempt_at, notifications.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .mappings()
            .all()
        )
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        conn.execute(
            update(notifications)
            .where(notifications.c.id.in_(ids))
            .values(attempts=notifications.c.attempts + 1, next_attempt_at=now + self._policy.lease)
        )
        company_ids = {int(r["company_id"]) for r in rows if r["company_id"] is not None}
        found: dict[int, MailCompany] = {}
        if company_ids:
            for c in conn.execute(
                select(
                    companies.c.id, companies.c.name, companies.c.email, companies.c.locale, companies.c.currency
                ).where(companies.c.id.in_(company_ids))
            ):
                found[int(c.id)] = MailCompany(int(c.id), c.name, c.email, c.locale, c.currency)
        claimed: list[_Claimed] = []
        for r in rows:
            problem = None
            try:
                payload = json.loads(r["payload"])
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
            except ValueError:
                payload, problem = {}, "the payload is not a JSON object"
            row = NotificationRow(
                id=int(r["id"]),
                kind=r["kind"],
                recipient=r["recipient"],
                company_id=r["company_id"],
                payload=payload,
                attempts=int(r["attempts"]) + 1,
                created_at=r["created_at"],
                dedupe_key=r["dedupe_key"],
            )
            company = found.get(int(r["company_id"])) if r["company_id"] is not None else None
            claimed.append(_Claimed(row, company, problem))
        return claimed

    async def _deliver(self, item: _Claimed) -> tuple[Delivery, bool]:
        row = item.row
        to: str | None = None
        try:
            if item.problem:
                raise _Undeliverable(item.problem)
            to = self._address(item)
            message = await self._compose(item, to)
        except _Undeliverable as error:
            return await self._finish(row, to, _Outcome("failed", str(error))), False
        except Exception as error:  # a template bug or an attachment not ready yet: retried with backoff
            log.warning(
                "notification could not be prepared",
                extra={"notification_id": row.id, "kind": row.kind, "error": f"{type(error).__name__}: {error}"},
            )
            return await self._finish(row, to, _Outcome("retry", f"preparing the mail: {error}")), False
        try:
            await self._sender.send(message)
        except MailError as error:
            outcome = _Outcome("retry" if error.transient else "failed", error.message, error.server_down)
        except Exception as error:  # an adapter surprise must not end the cycle
            log.error("mail adapter failed", extra={"notification_id": row.id, "error": type(error).__name__})
            outcome = _Outcome("retry", f"{type(error).__name__}: {error}")
        else:
            outcome = _Outcome("sent")
        return await self._finish(row, to, outcome), outcome.server_down

    def _address(self, item: _Claimed) -> str:
        if item.row.recipient == "admin":
            if "@" not in self._ctx.settings.admin_email:
                raise _Undeliverable("no admin mail address is configured (BILLING_ADMIN_EMAIL)")
            return self._ctx.settings.admin_email
        if item.company is None:
            raise _Undeliverable(f"company {item.row.company_id} does not exist")
        if "@" not in (item.company.email or ""):
            raise _Undeliverable(f"company {item.company.id} has no mail address")
        return item.company.email

    async def _compose(self, item: _Claimed, to: str) -> EmailMessage:
        row, company = item.row, item.company
        if row.recipient == "admin":
            locale = self._ctx.settings.default_locale
        else:
            locale = company.locale if company else self._ctx.settings.default_locale
        try:
            rendered = self._renderer.render(
                kind=row.kind,
                recipient=row.recipient,
                payload=row.payload,
                locale=locale,
                company=company,
                created_at=row.created_at,
            )
        except UnknownTemplate as error:
            raise _Undeliverable(str(error)) from None
        files: list[Attachment] = []
        if row.kind in ATTACHMENT_KINDS:
            loader = self._attachments
            if loader is None:
                raise RuntimeError(f"no attachment loader is configured for {row.kind} mails")
            files = await self._ctx.call(loader, row)
        message = EmailMessage()
        message["Subject"] = rendered.subject
        message["To"] = _recipient_header(to, company.name if company and row.recipient == "company" else None)
        message["X-Billing-Notification"] = f"{row.id}/{row.kind}"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        for filename, content, mime_type in files:
            maintype, _, subtype = mime_type.partition("/")
            message.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
        return message

    async def _finish(self, row: NotificationRow, to: str | None, outcome: _Outcome) -> Delivery:
        now = self._ctx.clock()
        status, next_at = outcome.status, None
        if status == "retry" and row.attempts >= self._policy.max_attempts:
            status = "failed"
        values: dict[str, Any]
        if status == "sent":
            values = {"status": "sent", "sent_at": now, "last_error": None}
        elif status == "failed":
            values = {"status": "failed", "last_error": _clip(outcome.error)}
        else:
            next_at = now + self._policy.delay(row.attempts)
            values = {"status": "pending", "next_attempt_at": next_at, "last_error": _clip(outcome.error)}
        fenced = await self._ctx.call(self._ctx.db.write, lambda conn: _update_claimed(conn, row, values))
        if not fenced:
            log.warning("notification lease lost before it was recorded", extra={"notification_id": row.id})
        if status != "sent":
            log.warning(
                "notification not sent",
                extra={"notification_id": row.id, "kind": row.kind, "status": status, "error": outcome.error},
            )
        return Delivery(row.id, row.kind, to, status, row.attempts, outcome.error, next_at)

    async def _give_back(self, items: list[_Claimed], reason: str, wait: timedelta) -> list[Delivery]:
        """Return claimed rows untried: the attempt is not counted; they are due again after ``wait``."""
        next_at = self._ctx.clock() + wait

        def work(conn: Connection) -> None:
            for item in items:
                _update_claimed(conn, item.row, {"attempts": item.row.attempts - 1, "next_attempt_at": next_at})

        await self._ctx.call(self._ctx.db.write, work)
        return [Delivery(i.row.id, i.row.kind, None, "deferred", i.row.attempts - 1, reason, next_at) for i in items]

    # -- alerts -----------------------------------------------------------------------------------

    def queue_low_balance_alerts(self) -> int:
        """Queue ``low_balance`` for every company below its threshold, at most once per (UTC) day each."""

        def work(conn: Connection) -> int:
            now = self._ctx.clock()
            day = now.astimezone(UTC).strftime("%Y-%m-%d")
            rows = conn.execute(
                select(
                    balances.c.company_id,
                    balances.c.currency,
                    balances.c.balance,
                    balances.c.reserved_balance,
                    balances.c.low_balance_threshold,
                    balances.c.auto_topup_enabled,
                )
                .join(companies, companies.c.id == balances.c.company_id)
                .where(
                    balances.c.balance < balances.c.low_balance_threshold,
                    companies.c.prepaid_billing_enabled.is_(true()),
                )
                .order_by(balances.c.company_id)
            ).all()
            keys = {int(r.company_id): f"low_balance:{r.company_id}:{day}" for r in rows}
            queued_before = (
                set(
                    conn.execute(
                        select(notifications.c.dedupe_key).where(notifications.c.dedupe_key.in_(list(keys.values())))
                    ).scalars()
                )
                if keys
                else set()
            )
            count = 0
            for r in rows:
                key = keys[int(r.company_id)]
                if key in queued_before:
                    continue
                payload = {
                    "balance": Money(int(r.balance), r.currency).as_json(),
                    "available": Money(int(r.balance) - int(r.reserved_balance), r.currency).as_json(),
                    "threshold": Money(int(r.low_balance_threshold), r.currency).as_json(),
                    "auto_topup_enabled": bool(r.auto_topup_enabled),
                }
                if outbox.enqueue(
                    conn,
                    kind="low_balance",
                    recipient="company",
                    company_id=int(r.company_id),
                    payload=payload,
                    now=now,
                    dedupe_key=key,
                ):
                    count += 1
            return count

        return self._ctx.db.write(work)

    def queue_failure_rate_alert(self) -> bool:
        """Alert the admin when more than 10% of the payments of the last hour failed; at most once an hour."""

        def work(conn: Connection) -> bool:
            now = self._ctx.clock()
            since = now - FAILURE_RATE_WINDOW
            total, failed = conn.execute(
                select(func.count(), func.coalesce(func.sum(case((topups.c.status == "failed", 1), else_=0)), 0))
                .select_from(topups)
                .where(
                    topups.c.created_at > since,
                    topups.c.created_at <= now,
                    topups.c.source.in_(PAYMENT_SOURCES),
                )
            ).one()
            total, failed = int(total), int(failed)
            if failed == 0 or Decimal(failed) <= FAILURE_RATE_LIMIT * total:
                return False
            recent = conn.execute(
                select(notifications.c.id)
                .where(notifications.c.kind == "high_failure_rate", notifications.c.created_at > since)
                .limit(1)
            ).first()
            if recent is not None:
                return False
            payload = {
                "failed": failed,
                "total": total,
                "rate": str((Decimal(failed) / total).quantize(Decimal("0.0001"))),
                "since": since.isoformat(),
                "until": now.isoformat(),
            }
            return outbox.enqueue(
                conn,
                kind="high_failure_rate",
                recipient="admin",
                company_id=None,
                payload=payload,
                now=now,
                dedupe_key=f"high_failure_rate:{now.astimezone(UTC):%Y-%m-%dT%H}",
            )

        return self._ctx.db.write(work)


def _update_claimed(conn: Connection, row: NotificationRow, values: dict[str, Any]) -> bool:
    """Update a row only while this claim still owns it (no later claim counted another attempt)."""
    result = conn.execute(
        update(notifications)
        .where(
            notifications.c.id == row.id,
            notifications.c.status == "pending",
            notifications.c.attempts == row.attempts,
        )
        .values(**values)
    )
    return bool(result.rowcount == 1)


def _recipient_header(address: str, name: str | None) -> str:
    if name:
        try:
            return str(Address(display_name=_one_line(name), addr_spec=address))
        except (ValueError, TypeError, IndexError):
            pass
    return address


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:500]
