"""The read side's building blocks without a database: cursors, periods, and the JSON schemas tools publish."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from billing_core.errors import InvalidCursor, InvalidInput
from billing_core.queries import MoneyView, Page
from billing_core.queries.base import check_limit, decode_cursor, encode_cursor
from billing_core.queries.companies import CompanyOverview
from billing_core.queries.ledger import LedgerFilters
from billing_core.queries.payments import TopupFilters, TopupView
from billing_core.queries.periods import Period
from billing_core.queries.statistics import PaymentStatistics


def test_cursor_round_trips_for_the_same_list_and_filters() -> None:
    filters = TopupFilters(statuses=("failed",))
    cursor = encode_cursor("topups", filters, 1234)
    assert decode_cursor(cursor, "topups", TopupFilters(statuses=("failed",)), noun="top-up") == 1234


def test_cursor_is_refused_for_other_filters_or_another_list() -> None:
    cursor = encode_cursor("topups", TopupFilters(statuses=("failed",)), 1234)
    with pytest.raises(InvalidCursor, match="another list or other filters"):
        decode_cursor(cursor, "topups", TopupFilters(statuses=("succeeded",)), noun="top-up")
    with pytest.raises(InvalidCursor, match="another list or other filters"):
        decode_cursor(cursor, "ledger", LedgerFilters(), noun="history")


@pytest.mark.parametrize("cursor", ["", "garbage", "bnVsbA", "WyJ0b3B1cHMiLCJ4IiwwXQ", "WzEsMiwzLDRd", "é"])
def test_malformed_cursor_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="the top-up cursor is not one this server issued"):
        decode_cursor(cursor, "topups", TopupFilters(), noun="top-up")


@pytest.mark.parametrize("limit", [0, 201, -5, True])
def test_limit_outside_1_to_200_is_invalid(limit: int) -> None:
    with pytest.raises(InvalidInput):
        check_limit(limit)


def test_day_bounds_follow_daylight_saving_in_berlin() -> None:
    spring = Period(start=date(2026, 3, 28), end=date(2026, 3, 30)).day_bounds("Europe/Berlin")
    assert [b.hour for b in spring] == [23, 23, 22, 22]  # UTC hour of each local midnight
    assert spring[2] - spring[1] == timedelta(hours=23)  # 29 March has 23 hours
    autumn = Period(start=date(2026, 10, 25), end=date(2026, 10, 25)).day_bounds("Europe/Berlin")
    assert autumn == [datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 23, tzinfo=UTC)]


def test_period_validation_rejects_reversed_and_over_long_periods() -> None:
    with pytest.raises(ValueError):
        Period(start=date(2026, 2, 1), end=date(2026, 1, 1))
    with pytest.raises(InvalidInput):
        Period.of(date(2025, 1, 1), date(2026, 1, 2))
    assert len(list(Period.of(date(2024, 1, 1), date(2024, 12, 31)).days())) == 366


def test_models_publish_json_schemas_with_money_as_minor_units_and_text() -> None:
    money = MoneyView.model_json_schema(mode="serialization")
    assert set(money["required"]) == {"cents", "currency", "formatted"}
    assert money["properties"]["cents"]["type"] == "integer"
    page = Page[TopupView].model_json_schema(mode="serialization")
    assert set(page["required"]) == {"items", "has_more", "next_cursor"}
    for model in (CompanyOverview, PaymentStatistics):
        schema = model.model_json_schema(mode="serialization")
        assert "MoneyView" in schema["$defs"]


def test_timestamps_serialize_as_iso_with_offset() -> None:
    stamp = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    filters = TopupFilters(since=stamp)
    assert filters.model_dump(mode="json")["since"] == "2026-11-02T09:00:00+00:00"
