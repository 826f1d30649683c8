"""What every read shares: bounded limits, keyset cursors bound to their list and filters, and the filters' SQL.

The models themselves (money, timestamps, pages) are in :mod:`billing_core.read_models.base`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select

from billing_core.db.tables import companies
from billing_core.errors import CompanyNotFound, InvalidCursor, InvalidInput
from billing_core.read_models.base import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AwareTimestamp,
    MoneyView,
    Page,
    ReadModel,
    Timestamp,
    build,
)

# The models are in billing_core.read_models.base (loadable without SQLAlchemy); they can still be imported
# from here.
__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "AwareTimestamp", "MoneyView", "Page", "ReadModel", "Timestamp", "build"]

T = TypeVar("T")


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number between 1 and {MAX_LIMIT}")
    return limit


def _fingerprint(kind: str, filters: BaseModel | None) -> str:
    text = kind + ":" + ("" if filters is None else filters.model_dump_json())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(kind: str, filters: BaseModel | None, last_id: int) -> str:
    """A keyset cursor: the id of the last entry shown, bound to the list and filters it was issued for."""
    raw = json.dumps([kind, _fingerprint(kind, filters), last_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, filters: BaseModel | None, *, noun: str) -> int:
    """The last id a cursor points after; :class:`InvalidCursor` when it is not one issued for this list."""
    try:
        if not isinstance(cursor, str) or len(cursor) > 200:
            raise ValueError("not a cursor")
        decoded: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        issued_kind, fingerprint, last_id = decoded
        if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 1:
            raise ValueError("bad position")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(f"the {noun} cursor is not one this server issued") from None
    if issued_kind != kind or fingerprint != _fingerprint(kind, filters):
        raise InvalidCursor(f"the {noun} cursor was issued for another list or other filters")
    return last_id


def page_of(items: list[T], *, limit: int, kind: str, filters: BaseModel | None, last_id: Any) -> Page[T]:
    """Build a page from ``limit + 1`` fetched items (the extra one only says that more exist)."""
    more = len(items) > limit
    shown = items[:limit]
    cursor = encode_cursor(kind, filters, int(last_id(shown[-1]))) if more else None
    return Page[T](items=tuple(shown), has_more=more, next_cursor=cursor)


def narrowed(
    query: Any,
    *,
    equal: Sequence[tuple[Any, Any]] = (),
    among: Sequence[tuple[Any, Collection[Any] | None]] = (),
    period: tuple[Any, datetime | None, datetime | None] | None = None,
) -> Any:
    """``query`` with a list's optional filters applied; a filter left unset (None, or no values) is skipped.

    ``equal``: (column, value) pairs; ``among``: (column, values) pairs, matched with IN; ``period``: (column,
    since, until), the range being at-or-after ``since`` and before ``until``.
    """
    for column, value in equal:
        if value is not None:
            query = query.where(column == value)
    for column, values in among:
        if values:
            query = query.where(column.in_(sorted(set(values))))
    if period is not None:
        column, since, until = period
        if since is not None:
            query = query.where(column >= since)
        if until is not None:
            query = query.where(column < until)
    return query


def ensure_company(conn: Any, company_id: int) -> None:
    """A list filtered by a company that does not exist says so, instead of answering an empty page."""
    if conn.execute(select(companies.c.id).where(companies.c.id == company_id)).first() is None:
        raise CompanyNotFound(company_id)


def keyset_page(
    conn: Any,
    query: Any,
    id_column: Any,
    build: Any,
    *,
    kind: str,
    noun: str,
    filters: BaseModel | None,
    limit: int,
    cursor: str | None,
    company_id: int | None = None,
    oldest_first: bool = False,
) -> Page[Any]:
    """Run ``query`` newest first (by ``id_column``; oldest first when asked), one page after ``cursor``; rows
    become items via ``build``.

    Ids only grow, so rows inserted while someone pages appear before the first page, never inside the
    pages already handed out: no gaps, no duplicates.
    """
    check_limit(limit)
    if company_id is not None:
        ensure_company(conn, company_id)
    if oldest_first:
        kind += ":oldest_first"  # a cursor continues only in the order it was issued for
    if cursor:
        after = decode_cursor(cursor, kind, filters, noun=noun)
        query = query.where(id_column > after if oldest_first else id_column < after)
    order = id_column.asc() if oldest_first else id_column.desc()
    rows = conn.execute(query.order_by(order).limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    shown = rows[:limit]
    next_cursor = encode_cursor(kind, filters, int(shown[-1][id_column])) if more else None
    return Page[Any](items=tuple(build(r) for r in shown), has_more=more, next_cursor=next_cursor)
