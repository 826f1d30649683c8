"""The outbox sender: claims due notifications, renders them, sends them over SMTP, records the outcome.

Each cycle of :meth:`MailerService.send_due` runs three kinds of short transactions and no long one:

1. **claim**: due ``pending`` rows are selected ``FOR UPDATE SKIP LOCKED``, their ``attempts`` counted up and
   their ``next_attempt_at`` moved one lease ahead, then committed. Another worker skips rows locked by the
   claim and, once it committed, no longer sees them as due: two workers never send one mail twice.
2. **send**: outside any transaction, through the :class:`~billing_core.ports.MailSender` port; its
   :class:`~billing_core.ports.MailSendError` says whether the mail is retried or failed.
3. **finish**: one transaction per mail marks it ``sent``, puts it back to ``pending`` with an exponential
   backoff, or marks it ``failed`` (a permanent refusal, or ``max_attempts`` used up). The update is fenced on
   the attempt count of the claim, so a worker whose lease ran out cannot overwrite a newer claim.

Only the ``notifications`` table is ever written here; a mail that fails never touches billing.
When the SMTP server cannot be reached at all, the rest of the batch is handed back without counting an
attempt, and a batch that takes longer than half its lease hands back what it has not started.

Rendering is :mod:`.mail_templates`' job; the alerts are queued by :mod:`.alerts`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Connection, select, update

from billing_core.backoff import backoff
from billing_core.db.tables import companies, notifications
from billing_core.ports import MailSender, MailSendError
from billing_core.services.context import ServiceContext
from billing_core.services.mail_templates import MailCompany, MailRenderer, UnknownTemplate, one_line
from billing_core.services.notifications import ATTACHMENT_KINDS

log = logging.getLogger(__name__)

Attachment = tuple[str, bytes, str]  # file name, content, MIME type ("application/pdf")


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
        return backoff(attempts, base=self.base_delay, cap=self.max_delay)


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
        timezone: str | None = None,
    ) -> None:
        self._ctx = ctx
        self._sender = sender
        self._attachments = attachments
        self._policy = policy or MailerPolicy()
        settings = ctx.settings
        self._renderer = renderer or MailRenderer(
            default_locale=settings.default_locale,
            default_currency=settings.default_currency,
            timezone=timezone or settings.timezone,  # times in mails are the seller's (BILLING_TIMEZONE)
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
        except MailSendError as error:
            outcome = _Outcome("retry" if error.retryable else "failed", error.message, error.server_down)
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
            files = await self._ctx.call.blocking(loader, row)  # may render the PDF
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
            return str(Address(display_name=one_line(name), addr_spec=address))
        except (ValueError, TypeError, IndexError):
            pass
    return address


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:500]
