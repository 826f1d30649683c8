"""Concurrent webhook senders for the end-to-end storms: signed deliveries from many threads, every answer recorded.

Each :class:`Delivery` is one POST of a fixed body; its signature is made afresh for every attempt (as
Stripe and Retell sign each delivery attempt), with the providers' own signers. A :class:`Storm` sends a
list of deliveries from ``senders`` threads (one ``httpx.Client`` each) that take from one shared queue.

Without ``retry`` every delivery is tried once and its outcome kept, so a test can send again what was
never acknowledged (after a crash). With ``retry``, a 503 or a transport error (refused, reset) is tried
again after a short, growing pause until the storm's deadline, as a provider's retry schedule would.
Every loop is bounded by a deadline and a count.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from tests.integration.webhook_helpers import retell_headers, stripe_headers

RETRYABLE_STATUS = frozenset({503})
MAX_ATTEMPTS_PER_DELIVERY = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: str  # retell | stripe
    event_key: str  # provider:event id, for bookkeeping
    body: bytes

    @property
    def path(self) -> str:
        return f"/api/{self.provider}/webhook"

    def headers(self) -> dict[str, str]:
        return retell_headers(self.body) if self.provider == "retell" else stripe_headers(self.body)


@dataclass(frozen=True, slots=True)
class Attempt:
    index: int  # which delivery
    started: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no HTTP answer (refused, reset, timeout)
    error: str | None = None
    outcome: str | None = None  # the sidecar's "status" field on a 2xx


@dataclass
class Storm:
    base_url: Callable[[], str]
    deliveries: Sequence[Delivery]
    senders: int = 16
    retry: bool = False
    deadline_seconds: float = 60
    timeout: float = 30
    max_backoff: float = 1.0
    attempts: list[Attempt] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    started_at: float | None = None
    finished_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queue: queue.SimpleQueue[int] = field(default_factory=queue.SimpleQueue)
    _threads: list[threading.Thread] = field(default_factory=list)
    _final: dict[int, Attempt] = field(default_factory=dict)

    # -- running ----------------------------------------------------------------------------------

    def start(self) -> Storm:
        self.started_at = time.monotonic()
        self._deadline = self.started_at + self.deadline_seconds
        for index in range(len(self.deliveries)):
            self._queue.put(index)
        self._threads = [
            threading.Thread(target=self._sender, name=f"storm-sender-{n}", daemon=True) for n in range(self.senders)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float | None = None) -> Storm:
        limit = time.monotonic() + (timeout if timeout is not None else self.deadline_seconds + self.timeout + 10)
        for thread in self._threads:
            thread.join(max(0.0, limit - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise AssertionError(f"storm senders still running after the deadline: {alive}")
        self.finished_at = time.monotonic()
        return self

    def run(self) -> Storm:
        return self.start().join()

    def wait_for_acks(self, count: int, timeout: float) -> bool:
        """Block until ``count`` deliveries are acknowledged (True) or ``timeout`` passes (False)."""
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            if self.acked_count >= count:
                return True
            time.sleep(0.01)
        return False

    def _sender(self) -> None:
        with httpx.Client(timeout=self.timeout) as http:
            while time.monotonic() < self._deadline:
                try:
                    index = self._queue.get_nowait()
                except queue.Empty:
                    return
                self._deliver(http, index)

    def _deliver(self, http: httpx.Client, index: int) -> None:
        delivery = self.deliveries[index]
        for tries in range(MAX_ATTEMPTS_PER_DELIVERY):
            attempt = self._attempt(http, index, delivery)
            with self._lock:
                self.attempts.append(attempt)
                self._final[index] = attempt
                if attempt.status is not None and 200 <= attempt.status < 300:
                    self.acked.add(index)
                    return
            retryable = attempt.status is None or attempt.status in RETRYABLE_STATUS
            if not (self.retry and retryable):
                return
            pause = min(self.max_backoff, 0.05 * 2 ** min(tries, 6))
            if time.monotonic() + pause >= self._deadline:
                return
            time.sleep(pause)

    def _attempt(self, http: httpx.Client, index: int, delivery: Delivery) -> Attempt:
        started = time.monotonic()
        try:
            response = http.post(f"{self.base_url()}{delivery.path}", content=delivery.body,
                                 headers=delivery.headers())
        except httpx.TransportError as error:
            return Attempt(index, started, time.monotonic() - started, None, type(error).__name__)
        outcome = None
        if response.status_code == 200:
            try:
                outcome = str(response.json().get("status"))
            except ValueError:
                outcome = "unreadable"
        return Attempt(index, started, time.monotonic() - started, response.status_code,
                       None if response.status_code < 400 else response.text[:200], outcome)

    # -- reading the results ----------------------------------------------------------------------

    @property
    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    @property
    def unacked(self) -> list[int]:
        with self._lock:
            return [i for i in range(len(self.deliveries)) if i not in self.acked]

    def statuses(self) -> Counter[int | None]:
        """HTTP status of every attempt (``None`` for no answer)."""
        with self._lock:
            return Counter(a.status for a in self.attempts)

    def final_statuses(self) -> Counter[int | None]:
        """HTTP status of each delivery's last attempt (``None`` also for a delivery never tried)."""
        with self._lock:
            return Counter(self._final[i].status if i in self._final else None for i in range(len(self.deliveries)))

    def outcomes(self) -> Counter[str | None]:
        """The sidecar's ``status`` field of the 2xx answers: processed, duplicate, ignored, failed, dead."""
        with self._lock:
            return Counter(a.outcome for a in self.attempts if a.status == 200)

    def errors(self) -> Counter[str]:
        with self._lock:
            return Counter(f"{a.status} {a.error}" for a in self.attempts if a.status is None or a.status >= 400)

    @property
    def seconds(self) -> float:
        assert self.started_at is not None and self.finished_at is not None
        return self.finished_at - self.started_at

    def latency_percentile(self, fraction: float) -> float:
        with self._lock:
            times = sorted(a.seconds for a in self.attempts if a.status == 200)
        return times[min(len(times) - 1, int(fraction * len(times)))] if times else float("nan")

    def summary(self) -> str:
        return (
            f"{len(self.deliveries)} deliveries, {len(self.attempts)} attempts, {self.acked_count} acked in "
            f"{self.seconds:.1f} s ({len(self.attempts) / max(self.seconds, 1e-9):.0f} requests/s, "
            f"p50 {self.latency_percentile(0.5) * 1000:.0f} ms, p99 {self.latency_percentile(0.99) * 1000:.0f} ms); "
            f"statuses {dict(self.statuses())}"
        )
