"""The CLI reads a ``--limit`` larger than one read-side page as several pages, with a cursor that continues."""

from __future__ import annotations

from typing import Any

from billing_cli.main import pages_up_to
from billing_core.queries import MAX_LIMIT, Page

ENTRIES = list(range(1000, 0, -1))  # ids, newest first


def fetch(*, limit: int, cursor: str | None) -> Page[int]:
    assert 1 <= limit <= MAX_LIMIT
    start = 0 if cursor is None else ENTRIES.index(int(cursor)) + 1
    shown = ENTRIES[start : start + limit]
    more = start + limit < len(ENTRIES)
    return Page[Any](items=tuple(shown), has_more=more, next_cursor=str(shown[-1]) if more else None)


def test_a_limit_above_one_page_is_read_in_pages_and_continues_where_it_stopped() -> None:
    first = pages_up_to(fetch, 500, None)
    assert list(first.items) == ENTRIES[:500] and first.has_more and first.next_cursor == "501"
    rest = pages_up_to(fetch, 500, first.next_cursor)
    assert list(rest.items) == ENTRIES[500:] and not rest.has_more and rest.next_cursor is None


def test_a_small_limit_is_one_page() -> None:
    page = pages_up_to(fetch, 3, None)
    assert list(page.items) == [1000, 999, 998] and page.next_cursor == "998"
