"""What every service needs: the database, the settings, a clock (swapped in tests) and the async hop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from billing_core.concurrency import ServiceCaller
from billing_core.config import Settings
from billing_core.db.database import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServiceContext:
    db: Database
    settings: Settings
    clock: Callable[[], datetime] = field(default=utcnow)
    call: ServiceCaller = field(default_factory=lambda: ServiceCaller(16))
    """The process's one bounded hop from async code to these synchronous services."""
