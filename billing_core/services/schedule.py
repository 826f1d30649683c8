"""The worker's schedule: which periodic job runs now, decided in the database so replicas never double up.

Each job has one ``job_schedule`` row. A worker *claims* the jobs that are due in one write transaction:
the rows are selected ``FOR UPDATE SKIP LOCKED`` on MariaDB (``BEGIN IMMEDIATE`` serialises it on
SQLite), and each due row's ``next_run_at`` is moved one lease ahead with a fresh claim token before the
commit. Another worker skips the locked rows and, once the claim committed, no longer finds them due.
When the job is done, :meth:`JobSchedule.finish` sets the real next run (``finished + interval``), fenced
on the token. A worker that dies mid-job holds the job until the lease runs out; then another one runs it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from billing_core.db.tables import job_schedule
from billing_core.services.context import ServiceContext

# How long a claimed job keeps other workers away while it runs; far longer than one batch of any job.
LEASE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to run ``job`` now; hand it back to :meth:`JobSchedule.finish`."""

    job: str
    token: str
    every: timedelta


@dataclass(frozen=True, slots=True)
class Claimed:
    claims: tuple[Claim, ...]
    next_check_at: datetime  # no job of this worker's list can be due before then


@dataclass(frozen=True, slots=True)
class JobState:
    name: str
    next_run_at: datetime
    claimed_by: str | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_error: str | None


class JobSchedule:
    def __init__(self, ctx: ServiceContext, *, lease: timedelta = LEASE) -> None:
        self._ctx = ctx
        self._lease = lease
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    def claim_due(self, jobs: Mapping[str, timedelta], *, retry_after: timedelta) -> Claimed:
        """Claim every job of ``jobs`` (name -> interval) that is due; a job seen for the first time is due.

        ``retry_after`` bounds ``next_check_at`` when another worker holds a row locked at this moment.
        """
        return self._ctx.db.write(lambda conn: self._claim(conn, jobs, retry_after))

    def _claim(self, conn: Connection, jobs: Mapping[str, timedelta], retry_after: timedelta) -> Claimed:
        now = self._ctx.clock()
        names = sorted(jobs)
        rows = conn.execute(
            select(job_schedule.c.name, job_schedule.c.next_run_at)
            .where(job_schedule.c.name.in_(names))
            .order_by(job_schedule.c.name)
            .with_for_update(skip_locked=True)
        ).all()
        locked = {row.name: row.next_run_at for row in rows}
        claims: list[Claim] = []
        later: list[datetime] = []
        for name, next_run_at in locked.items():
            if next_run_at <= now:
                claims.append(self._take(conn, name, jobs[name], now))
            else:
                later.append(next_run_at)
        missing = [name for name in names if name not in locked]
        if missing:
            existing = set(conn.execute(select(job_schedule.c.name).where(job_schedule.c.name.in_(missing))).scalars())
            for name in missing:
                if name in existing:  # locked by another worker's claim right now
                    later.append(now + retry_after)
                    continue
                claim = self._first(conn, name, jobs[name], now)
                if claim is None:
                    later.append(now + retry_after)
                else:
                    claims.append(claim)
        next_check = min(later, default=now + min(jobs.values(), default=retry_after))
        return Claimed(tuple(claims), next_check)

    def _token(self) -> str:
        return f"{self._owner}:{uuid.uuid4().hex[:12]}"

    def _take(self, conn: Connection, name: str, every: timedelta, now: datetime) -> Claim:
        token = self._token()
        conn.execute(
            update(job_schedule)
            .where(job_schedule.c.name == name)
            .values(next_run_at=now + self._lease, claimed_by=token, last_started_at=now)
        )
        return Claim(name, token, every)

    def _first(self, conn: Connection, name: str, every: timedelta, now: datetime) -> Claim | None:
        """The job's row does not exist yet: create it already claimed (None when another worker just did)."""
        token = self._token()
        savepoint = conn.begin_nested()
        try:
            conn.execute(
                insert(job_schedule).values(
                    name=name, next_run_at=now + self._lease, claimed_by=token, last_started_at=now
                )
            )
        except IntegrityError:
            savepoint.rollback()
            return None
        savepoint.commit()
        return Claim(name, token, every)

    def finish(self, claim: Claim, *, error: str | None = None) -> datetime | None:
        """Schedule the next run one interval after now; None when the claim was lost (its lease ran out)."""

        def work(conn: Connection) -> datetime | None:
            now = self._ctx.clock()
            next_run_at = now + claim.every
            result = conn.execute(
                update(job_schedule)
                .where(job_schedule.c.name == claim.job, job_schedule.c.claimed_by == claim.token)
                .values(
                    next_run_at=next_run_at,
                    last_finished_at=now,
                    last_error=None if error is None else error[:500],
                )
            )
            return next_run_at if result.rowcount == 1 else None

        return self._ctx.db.write(work)

    def states(self) -> list[JobState]:
        """Every job's row, for operators: when it runs next, who ran it last and how it ended."""
        query = select(job_schedule).order_by(job_schedule.c.name)
        return self._ctx.db.read(
            lambda conn: [
                JobState(
                    name=r.name,
                    next_run_at=r.next_run_at,
                    claimed_by=r.claimed_by,
                    last_started_at=r.last_started_at,
                    last_finished_at=r.last_finished_at,
                    last_error=r.last_error,
                )
                for r in conn.execute(query)
            ]
        )
