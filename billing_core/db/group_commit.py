"""Group commit for SQLite: concurrent write transactions of one process share one BEGIN ... COMMIT.

SQLite allows one writer at a time and every COMMIT waits for an fsync, so writers that queue up behind
each other are batched: one thread (the leader) opens ``BEGIN IMMEDIATE``, runs each queued unit of
work inside its own SAVEPOINT (a unit that fails is rolled back to its savepoint alone and gets its
error), commits once, and only then hands every unit its result. Durability and isolation are those of
running the units one after another; the fsync is paid once per batch instead of once per unit.
Leadership passes to the next waiting thread after each batch, so no caller is held hostage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from billing_core.db.errors import retry_wait

MAX_BATCH = 64


class _Unit:
    __slots__ = ("work", "wake", "finished", "result", "error")

    def __init__(self, work: Callable[[Connection], Any]) -> None:
        self.work = work
        self.wake = threading.Event()
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommitter:
    def __init__(
        self,
        engine: Engine,
        *,
        attempts: int,
        is_retryable: Callable[[BaseException], bool],
        on_exhausted: Callable[[DBAPIError], BaseException],
    ) -> None:
        self._engine = engine
        self._attempts = attempts
        self._is_retryable = is_retryable
        self._on_exhausted = on_exhausted
        self._lock = threading.Lock()
        self._queue: list[_Unit] = []
        self._leading = False

    def run(self, work: Callable[[Connection], Any]) -> Any:
        unit = _Unit(work)
        with self._lock:
            self._queue.append(unit)
            lead = not self._leading
            self._leading = True
        if not lead:
            unit.wake.wait()
        if not unit.finished:  # we lead this batch (first in, or promoted by the previous leader)
            self._lead_one_batch()
        if unit.error is not None:
            raise unit.error
        return unit.result

    def _lead_one_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            self._execute(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].wake.set()  # promote the next waiting thread
                else:
                    self._leading = False
            for unit in batch:
                unit.finished = True
                unit.wake.set()

    def _execute(self, batch: list[_Unit]) -> None:
        for attempt in range(1, self._attempts + 1):
            outcomes: list[tuple[Any, Exception | None]] = []
            try:
                with self._engine.connect() as conn:
                    conn.begin()
                    # Savepoints straight on the driver: SQLAlchemy's begin_nested() costs more than the unit.
                    driver = conn.connection.driver_connection
                    assert driver is not None
                    for unit in batch:
                        driver.execute("SAVEPOINT unit")
                        try:
                            result = unit.work(conn)
                        except Exception as unit_error:
                            driver.execute("ROLLBACK TO unit")
                            driver.execute("RELEASE unit")
                            if self._is_retryable(unit_error):
                                raise
                            outcomes.append((None, unit_error))
                        else:
                            driver.execute("RELEASE unit")
                            outcomes.append((result, None))
                    conn.commit()
            except DBAPIError as error:
                if self._is_retryable(error) and attempt < self._attempts:
                    time.sleep(retry_wait(attempt))
                    continue
                failure = self._on_exhausted(error) if self._is_retryable(error) else error
                for unit in batch:
                    unit.error = failure
                return
            except BaseException as error:  # noqa: B036 - every waiting caller must hear of it
                for unit in batch:
                    unit.error = error
                raise
            for unit, (result, unit_failure) in zip(batch, outcomes, strict=True):
                unit.result, unit.error = result, unit_failure
            return
