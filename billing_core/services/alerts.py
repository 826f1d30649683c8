"""The periodic checks that fill the outbox with alerts: low balances and a high payment failure rate.

They only queue notifications (sending is :mod:`.mailer`'s job), so alerts are queued whether or not
SMTP is configured. A ``dedupe_key`` per day or hour makes "at most once" a unique key. Each public method
is one transaction.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, case, func, select, true

from billing_core.db.tables import balances, companies, notifications, topups
from billing_core.money import Money
from billing_core.services import notifications as outbox
from billing_core.services.context import ServiceContext

# Top-ups that go through a payment provider and so can fail; bank transfers and manual credits cannot.
PAYMENT_SOURCES = ("checkout", "payment_intent", "auto_topup")
FAILURE_RATE_WINDOW = timedelta(hours=1)
FAILURE_RATE_LIMIT = Decimal("0.10")


class AlertService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def queue_low_balance_alerts(self) -> int:
        """Queue ``low_balance`` for every company below its threshold, at most once a day each (the seller's
        day, ``BILLING_TIMEZONE``, as on the invoices)."""

        def work(conn: Connection) -> int:
            now = self._ctx.clock()
            day = now.astimezone(ZoneInfo(self._ctx.settings.timezone)).strftime("%Y-%m-%d")
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
