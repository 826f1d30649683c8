"""A read that concurrent tool calls share: the calls whose audit rows go into one transaction (see
:mod:`mcp_server.audit`) run it as one statement for all their keys, instead of a statement each.

On MariaDB a statement is a round trip through the driver and a socket, which cost a ``get_balance`` call
more CPU than anything else it does; a batch of 16 calls shares one. Loadable without SQLAlchemy (the stdio
server registers its tools before it loads the database).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from billing_core.errors import BillingError

if TYPE_CHECKING:
    from sqlalchemy import Connection

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SharedRead(Generic[K, T]):
    """``fetch`` returns what it found of the keys it is given, by key; a key it left out gets ``missing(key)``
    raised. Without ``missing``, ``fetch`` answers every key it is given."""

    fetch: Callable[[Connection, list[K]], dict[K, T]]
    missing: Callable[[K], BillingError] | None = None

    def one(self, conn: Connection, key: K) -> T:
        found = self.fetch(conn, [key])
        if key not in found and self.missing is not None:
            raise self.missing(key)
        return found[key]
