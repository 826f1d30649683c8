"""The webhook inbox: store a verified event exactly once, process it exactly once, dead-letter what cannot be.

The HTTP layer calls :meth:`WebhookInbox.receive`: one transaction stores the event and, in a savepoint,
processes it; if processing fails the event stays stored (failed, with a retry time) and the sender
still gets its 2xx. Workers (:meth:`process_due`) claim due events with ``FOR UPDATE SKIP LOCKED``, so
several workers never process one event twice.

Every failure is classified once (:func:`retry_may_help`): an outage, a rate limit, an event that
overtook what it needs is retried with exponential backoff; malformed or contradictory data, an
unknown company, a value the database refuses never get better, so the event goes to the dead
letters at once. A dead event alerts the admin and waits for an operator's replay. What is written
about a failure (``last_error``, the log) names the error's class and code, never SQL, parameters
or payload values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from billing_core.backoff import backoff
from billing_core.db.direct import DirectStatement
from billing_core.db.errors import is_retryable
from billing_core.db.tables import webhook_events
from billing_core.errors import BillingError, DatabaseUnavailable, InvalidInput, NotFound
from billing_core.services import notifications
from billing_core.services.context import ServiceContext

log = logging.getLogger(__name__)

# Python's own errors for data that is not what the code expects: the same data fails the same way.
MALFORMED_DATA_ERRORS = (ValueError, OverflowError, LookupError, AttributeError, TypeError, RecursionError)


class RetryLater(Exception):
    """What the event needs is not there yet (events arrive out of order): try again after a while."""


def retry_may_help(error: BaseException) -> bool:
    """The one classification of handler failures: True to retry with backoff, False for the dead letters."""
    if isinstance(error, RetryLater):
        return True
    if isinstance(error, BillingError):
        return error.retryable
    if isinstance(error, DataError):  # the database refused a value (too long, out of range)
        return False
    if isinstance(error, DBAPIError):  # a lock, a lost connection, a unique key a concurrent writer took
        return True
    return not isinstance(error, MALFORMED_DATA_ERRORS)


@dataclass(frozen=True, slots=True)
class InboundEvent:
    provider: str
    event_id: str
    event_type: str
    data: Mapping[str, Any]
    # False on the fast path of a first delivery: handlers may then rely on unique keys instead of
    # looking first, since any conflict rolls the attempt back and the worker retries with True.
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class FollowUp:
    """Work that must not run inside the event's transaction (it calls Stripe)."""

    kind: str  # auto_topup
    company_id: int


@dataclass(frozen=True, slots=True)
class HandlerResult:
    status: str  # processed | ignored
    note: str = ""
    follow_ups: tuple[FollowUp, ...] = ()


@dataclass(frozen=True, slots=True)
class EventOutcome:
    provider: str
    event_id: str
    event_type: str
    status: str  # processed | ignored | failed | dead | duplicate
    note: str = ""
    follow_ups: tuple[FollowUp, ...] = ()
    received_at: datetime | None = None
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    provider: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "received_at": self.received_at.isoformat(),
            "processed_at": self.processed_at.isoformat() if self.processed_at else None,
            "next_attempt_at": self.next_attempt_at.isoformat(),
        }


Handler = Callable[[Connection, InboundEvent], HandlerResult]
# every stored event gives every column (a processed one in the same transaction as what it caused)
INSERT_EVENT = DirectStatement(insert(webhook_events))


@dataclass
class InboxSettings:
    max_attempts: int = 8
    base_delay: timedelta = field(default_factory=lambda: timedelta(seconds=2))
    max_delay: timedelta = field(default_factory=lambda: timedelta(minutes=30))


class WebhookInbox:
    def __init__(self, ctx: ServiceContext, handlers: Mapping[str, Handler], policy: InboxSettings | None = None):
        self._ctx = ctx
        self._handlers = handlers
        self._policy = policy or InboxSettings()

    # -- receiving --------------------------------------------------------------------------------

    def receive(self, event: InboundEvent, raw: bytes) -> EventOutcome:
        """Store (once) and process; a duplicate delivery stores nothing new and is still acknowledged.

        The fast path processes the event and stores it as processed in ONE transaction (the inbox's
        unique key, checked by that INSERT, stops a concurrent duplicate). Whatever goes wrong there rolls
        the whole attempt back, and the event is then stored on its own for the worker (or dead-lettered).
        Only a database that cannot be reached escapes, so the sender gets a 503 and retries.
        """
        if event.provider not in self._handlers:
            raise InvalidInput(f"unknown webhook provider {event.provider!r}")
        handler = self._handlers[event.provider]
        received_at = self._ctx.clock()

        def process_and_store(conn: Connection) -> EventOutcome:
            result = handler(conn, event)
            now = self._ctx.clock()
            INSERT_EVENT.insert(conn, self._row(event, raw, result.status, received_at, attempts=1, processed_at=now))
            return EventOutcome(
                event.provider,
                event.event_id,
                event.event_type,
                result.status,
                result.note,
                result.follow_ups,
                received_at,
                now,
            )

        try:
            return self._ctx.db.write(process_and_store)
        except IntegrityError:
            error: Exception | None = None  # a duplicate, or a unique key the handler hit: the worker decides
        except DatabaseUnavailable:
            raise
        except DBAPIError as db_error:
            if is_retryable(db_error):
                raise
            error = db_error
        except Exception as handler_error:
            error = handler_error
        return self._store_for_later(event, raw, received_at, error)

    def _store_for_later(
        self, event: InboundEvent, raw: bytes, received_at: datetime, error: Exception | None
    ) -> EventOutcome:
        def store(conn: Connection) -> EventOutcome:
            existing = conn.execute(
                select(webhook_events.c.status, webhook_events.c.payload).where(
                    webhook_events.c.provider == event.provider, webhook_events.c.event_id == event.event_id
                )
            ).first()
            if existing is not None:
                differences = self._differences(event, existing.payload)
                if differences:
                    return self._store_conflict(conn, event, raw, received_at, differences)
                # a duplicate delivery: whatever its attempt ran into is not news
                return EventOutcome(event.provider, event.event_id, event.event_type, "duplicate", existing.status)
            if error is None:
                status, note, attempts, delay = "pending", "", 0, timedelta(0)
            else:
                status, note, attempts, delay = self._failure(conn, event, error, attempts=1)
            INSERT_EVENT.insert(
                conn,
                {
                    **self._row(event, raw, status, received_at, attempts=attempts, processed_at=None),
                    "last_error": note[:1000] or None,
                    "next_attempt_at": received_at + delay,
                },
            )
            return EventOutcome(event.provider, event.event_id, event.event_type, status, note, received_at=received_at)

        try:
            return self._ctx.db.write(store)
        except IntegrityError:
            return EventOutcome(event.provider, event.event_id, event.event_type, "duplicate")

    def _differences(self, event: InboundEvent, stored_payload: str) -> list[str]:
        """What a second delivery under a stored event id says differently (handlers that can tell)."""
        differ = getattr(self._handlers[event.provider], "differences", None)
        if differ is None:
            return []
        try:
            stored = json.loads(stored_payload)
        except ValueError:
            return []
        return list(differ(stored, event.data)) if isinstance(stored, Mapping) else []

    def _store_conflict(
        self, conn: Connection, event: InboundEvent, raw: bytes, received_at: datetime, differences: list[str]
    ) -> EventOutcome:
        """Keep a contradicting delivery beside the stored one, dead, for a person; alert the admin.

        Its event id is the original's plus a digest of its body, so each distinct contradiction is
        kept once however often it is delivered.
        """
        conflict_id = f"{event.event_id}#{hashlib.sha256(raw).hexdigest()[:12]}"
        note = (
            f"Conflict: this {event.event_type} contradicts the one already received "
            f"({', '.join(differences)} differ); nothing changed"
        )
        INSERT_EVENT.insert(
            conn,
            {
                **self._row(
                    InboundEvent(event.provider, conflict_id, event.event_type, event.data),
                    raw,
                    "dead",
                    received_at,
                    attempts=0,
                    processed_at=None,
                ),
                "last_error": note,
            },
        )
        self._alert(conn, event.provider, conflict_id, event.event_type, note)
        log.warning(
            "webhook conflicts with a stored event",
            extra={"provider": event.provider, "event_type": event.event_type, "event_id": event.event_id},
        )
        return EventOutcome(event.provider, conflict_id, event.event_type, "conflict", note, received_at=received_at)

    def _alert(self, conn: Connection, provider: str, event_id: str, event_type: str, reason: str) -> None:
        digest = hashlib.sha256(f"{provider}:{event_id}".encode()).hexdigest()[:40]
        notifications.enqueue(
            conn,
            kind="webhook_dead_letter",
            recipient="admin",
            company_id=None,
            payload={"provider": provider, "event_id": event_id, "event_type": event_type, "reason": reason},
            now=self._ctx.clock(),
            dedupe_key=f"webhook_dead_letter:{digest}",
        )

    @staticmethod
    def _row(
        event: InboundEvent,
        raw: bytes,
        status: str,
        received_at: datetime,
        *,
        attempts: int,
        processed_at: datetime | None,
    ) -> dict[str, Any]:
        return {
            "provider": event.provider,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "payload": raw.decode("utf-8"),
            "status": status,
            "attempts": attempts,
            "last_error": None,
            "next_attempt_at": received_at,
            "received_at": received_at,
            "processed_at": processed_at,
        }

    # -- processing -------------------------------------------------------------------------------

    def _process(
        self, conn: Connection, row_id: int, event: InboundEvent, *, attempts: int, received_at: datetime
    ) -> EventOutcome:
        handler = self._handlers[event.provider]
        savepoint = conn.begin_nested()
        try:
            result = handler(conn, event)
        except Exception as error:
            if isinstance(error, DBAPIError) and is_retryable(error):
                # A deadlock (on Galera also a brute-force abort by a write set from another node) has
                # rolled back the whole transaction, savepoint included: rolling back to it would fail.
                raise  # the whole transaction is retried (or the sender gets a 503)
            savepoint.rollback()
            return self._record_failure(conn, row_id, event, error, attempts + 1, received_at)
        savepoint.commit()
        now = self._ctx.clock()
        conn.execute(
            update(webhook_events)
            .where(webhook_events.c.id == row_id)
            .values(
                status=result.status,
                attempts=attempts + 1,
                processed_at=now,
                last_error=None,
            )
        )
        return EventOutcome(
            event.provider,
            event.event_id,
            event.event_type,
            result.status,
            result.note,
            result.follow_ups,
            received_at,
            now,
        )

    def _record_failure(
        self,
        conn: Connection,
        row_id: int,
        event: InboundEvent,
        error: Exception,
        attempts: int,
        received_at: datetime,
    ) -> EventOutcome:
        status, message, attempts, delay = self._failure(conn, event, error, attempts=attempts)
        conn.execute(
            update(webhook_events)
            .where(webhook_events.c.id == row_id)
            .values(
                status=status,
                attempts=attempts,
                last_error=message[:1000],
                next_attempt_at=self._ctx.clock() + delay,
            )
        )
        return EventOutcome(event.provider, event.event_id, event.event_type, status, message, received_at=received_at)

    def _failure(
        self, conn: Connection, event: InboundEvent, error: Exception, *, attempts: int
    ) -> tuple[str, str, int, timedelta]:
        """(status, message, attempts, delay): dead at once for errors no retry fixes, else back off.

        A dead event alerts the admin in the same transaction that records it.
        """
        retry = retry_may_help(error)
        dead = not retry or attempts >= self._policy.max_attempts
        message = _describe(error)
        context = {
            "provider": event.provider,
            "event_type": event.event_type,
            "event_id": event.event_id,
            "error": message,
        }
        if not retry:
            log.warning("webhook event dead-lettered: no retry can fix it", extra=context)
        elif not isinstance(error, RetryLater):
            log.error("webhook handler failed", extra=context)
        if dead:
            self._alert(conn, event.provider, event.event_id, event.event_type, message)
        delay = backoff(attempts, base=self._policy.base_delay, cap=self._policy.max_delay)
        return ("dead" if dead else "failed"), message, attempts, delay

    def process_due(self, *, limit: int = 100, only: list[int] | None = None) -> list[EventOutcome]:
        """Process events whose retry time has come (``only`` these rows), one transaction each."""
        outcomes: list[EventOutcome] = []
        for _ in range(limit):
            outcome = self._ctx.db.write(lambda conn: self._process_next(conn, only))
            if outcome is None:
                break
            outcomes.append(outcome)
        return outcomes

    def _process_next(self, conn: Connection, only: list[int] | None = None) -> EventOutcome | None:
        # One status per claim: an equality on the (status, next_attempt_at) index lets InnoDB lock just the
        # row it returns; with IN (...) it sorts and locks every due row, and other workers find none free.
        for status in ("pending", "failed"):
            query = select(webhook_events).where(
                webhook_events.c.status == status, webhook_events.c.next_attempt_at <= self._ctx.clock()
            )
            if only is not None:
                query = query.where(webhook_events.c.id.in_(only))
            query = query.order_by(webhook_events.c.next_attempt_at).limit(1).with_for_update(skip_locked=True)
            row = conn.execute(query).mappings().first()
            if row is not None:
                break
        else:
            return None
        try:
            data = json.loads(row["payload"])
        except ValueError as error:  # stored before bodies were checked on receipt: it never parses
            event = InboundEvent(row["provider"], row["event_id"], row["event_type"], {}, redelivered=True)
            return self._record_failure(conn, row["id"], event, error, row["attempts"] + 1, row["received_at"])
        event = InboundEvent(row["provider"], row["event_id"], row["event_type"], data, redelivered=True)
        return self._process(conn, row["id"], event, attempts=row["attempts"], received_at=row["received_at"])

    # -- operating it -----------------------------------------------------------------------------

    def events(self, *, statuses: tuple[str, ...] = ("dead", "failed"), limit: int = 100) -> list[StoredEvent]:
        query = (
            select(webhook_events)
            .where(webhook_events.c.status.in_(statuses))
            .order_by(webhook_events.c.id)
            .limit(limit)
        )
        return self._ctx.db.read(lambda conn: [_stored(r) for r in conn.execute(query).mappings()])

    def replay(self, row_ids: list[int] | None = None) -> list[EventOutcome]:
        """Reprocess dead or failed events now (the reference's ``queue:retry``); ``None`` means all of them."""

        def reset(conn: Connection) -> list[int]:
            query = select(webhook_events.c.id).where(webhook_events.c.status.in_(("dead", "failed")))
            if row_ids is not None:
                query = query.where(webhook_events.c.id.in_(row_ids))
            ids = list(conn.execute(query).scalars())
            if ids:
                conn.execute(
                    update(webhook_events)
                    .where(webhook_events.c.id.in_(ids))
                    .values(status="pending", attempts=0, next_attempt_at=self._ctx.clock())
                )
            return ids

        ids = self._ctx.db.write(reset)
        if row_ids is not None:
            missing = sorted(set(row_ids) - set(ids))
            if missing:
                raise NotFound(f"no dead or failed webhook events with ids {missing}")
        return self.process_due(limit=len(ids), only=ids) if ids else []

    def backlog(self) -> dict[str, int]:
        query = (
            select(webhook_events.c.status, func.count())
            .where(webhook_events.c.status.in_(("pending", "failed", "dead")))
            .group_by(webhook_events.c.status)
        )
        return self._ctx.db.read(lambda conn: {status: int(n) for status, n in conn.execute(query)})

    def processing_times(self, *, since: datetime) -> list[dict[str, Any]]:
        """Per provider and type: count, average and maximum seconds from receipt to processing."""
        query = select(
            webhook_events.c.provider,
            webhook_events.c.event_type,
            webhook_events.c.received_at,
            webhook_events.c.processed_at,
        ).where(webhook_events.c.received_at >= since, webhook_events.c.processed_at.is_not(None))
        stats: dict[tuple[str, str], list[float]] = {}
        for provider, kind, received, processed in self._ctx.db.read(lambda conn: list(conn.execute(query))):
            stats.setdefault((provider, kind), []).append((processed - received).total_seconds())
        return [
            {
                "provider": p,
                "event_type": t,
                "count": len(v),
                "avg_seconds": round(sum(v) / len(v), 3),
                "max_seconds": round(max(v), 3),
            }
            for (p, t), v in sorted(stats.items())
        ]


def _describe(error: Exception) -> str:
    """Class and code of an error, with our own message where we wrote one; never SQL, parameters or payloads."""
    if isinstance(error, RetryLater):
        return f"waiting: {error}"
    name = type(error).__name__
    if isinstance(error, BillingError):
        if error.code.startswith("database_"):  # raised from a driver error whose text holds SQL and values
            return f"{name} ({error.code})"
        return f"{name}: {error.message}"
    if isinstance(error, DBAPIError):
        args = getattr(error.orig, "args", ())
        code = f" {args[0]}" if args and isinstance(args[0], int) else ""
        return f"{name} ({type(error.orig).__name__}{code})"
    return name


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row["id"],
        provider=row["provider"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        received_at=row["received_at"],
        processed_at=row["processed_at"],
        next_attempt_at=row["next_attempt_at"],
    )
