"""The one backoff rule: how long to wait before the next attempt, for webhooks, mails and transactions."""

from __future__ import annotations

import random
from datetime import timedelta


def backoff(attempt: int, *, base: timedelta, cap: timedelta, jitter: float = 0.0) -> timedelta:
    """The wait after the ``attempt``-th failed attempt (1, 2, ...): ``base`` doubled per further attempt,
    at most ``cap``; with ``jitter`` (0 to 1) spread uniformly over ±``jitter`` of that, so retries of
    many callers that failed together do not come back together."""
    wait = min(base * (1 << min(max(attempt - 1, 0), 30)), cap)
    if jitter:
        wait *= random.uniform(1 - jitter, 1 + jitter)
    return wait
