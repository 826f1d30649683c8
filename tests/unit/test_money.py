"""Money: integer minor units with a currency, exact parsing, half-up rounding, locale formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_core.errors import CurrencyMismatch, InvalidAmount, InvalidInput
from billing_core.money import Money, minor_digits, normalize_currency, round_to_minor

# -- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("50.00", 5000),
        ("50", 5000),
        ("12", 1200),
        ("0.01", 1),
        ("0.1", 10),
        ("-3.5", -350),
        ("+7.25", 725),
        ("-0.00", 0),
        ("1.230", 123),  # a trailing zero adds no precision, so nothing is rounded
        ("  42.00\n", 4200),
        ("92233720368547758.07", 9_223_372_036_854_775_807),  # BIGINT's maximum, exact
    ],
)
def test_decimal_string_parses_to_exact_minor_units(text, cents):
    assert Money.parse(text, "EUR") == Money(cents, "EUR")


@pytest.mark.parametrize("text", ["1.234", "0.001", "-3.505", "10.0001"])
def test_more_decimal_places_than_the_currency_has_is_rejected_not_rounded(text):
    with pytest.raises(InvalidAmount, match="more than 2 decimal places for EUR"):
        Money.parse(text, "EUR")


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "",
        " ",
        "1e5",
        "1E5",
        "1,50",
        "1.",
        ".5",
        "1.2.3",
        "--1",
        "NaN",
        "Infinity",
        "0x10",
        "1_000",
        "€5",
        "5 EUR",
    ],
)
def test_text_that_is_not_a_plain_decimal_amount_is_rejected(text):
    with pytest.raises(InvalidAmount, match="is not a decimal amount"):
        Money.parse(text, "EUR")


@pytest.mark.parametrize("value", [1.5, 0.42, 1e5])
def test_float_given_to_parse_is_rejected(value):
    with pytest.raises(InvalidAmount):
        Money.parse(value, "EUR")


def test_boolean_given_to_parse_is_rejected():
    with pytest.raises(InvalidAmount):
        Money.parse(True, "EUR")  # type: ignore[arg-type]


def test_yen_has_no_minor_digits():
    assert minor_digits("JPY") == 0
    assert Money.parse("1200", "JPY") == Money(1200, "JPY")
    assert Money.parse("1200.0", "JPY") == Money(1200, "JPY")
    with pytest.raises(InvalidAmount, match="more than 0 decimal places for JPY"):
        Money.parse("1200.5", "JPY")


@pytest.mark.parametrize(("currency", "digits"), [("EUR", 2), ("USD", 2), ("CHF", 2), ("JPY", 0), ("KWD", 3)])
def test_minor_digits_come_from_the_currency(currency, digits):
    assert minor_digits(currency) == digits


def test_three_digit_currency_parses_to_thousandths():
    assert Money.parse("1.234", "KWD") == Money(1234, "KWD")


# -- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cents", [1.5, 1.0, Decimal("1"), "100", True, None])
def test_money_only_accepts_integer_minor_units(cents):
    with pytest.raises(InvalidAmount, match="integer minor units"):
        Money(cents, "EUR")  # type: ignore[arg-type]


def test_currency_code_is_normalized_to_upper_case():
    assert Money(100, " eur ").currency == "EUR"
    assert normalize_currency("jpy") == "JPY"


@pytest.mark.parametrize("code", ["EURO", "EU", "€", "", "E1R"])
def test_malformed_currency_code_is_rejected(code):
    with pytest.raises(InvalidAmount, match="ISO 4217"):
        Money(100, code)


def test_invalid_amount_is_an_invalid_input_error_with_a_code():
    with pytest.raises(InvalidInput) as caught:
        Money.parse("abc", "EUR")
    assert caught.value.code == "invalid_amount"
    assert "abc" in caught.value.message


def test_money_is_an_immutable_hashable_value():
    a = Money(4200, "EUR")
    assert a == Money(4200, "EUR")
    assert len({a, Money(4200, "EUR"), Money(4200, "USD")}) == 2
    with pytest.raises(AttributeError):
        a.cents = 1  # type: ignore[misc]


# -- arithmetic and comparisons --------------------------------------------------------------------


def test_addition_and_subtraction_keep_the_currency():
    assert Money(4200, "EUR") + Money(58, "EUR") == Money(4258, "EUR")
    assert Money(100, "EUR") - Money(250, "EUR") == Money(-150, "EUR")
    assert -Money(150, "EUR") == Money(-150, "EUR")
    assert Money.zero("JPY") == Money(0, "JPY")


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
def test_combining_two_currencies_raises_currency_mismatch(operation):
    with pytest.raises(CurrencyMismatch) as caught:
        operation(Money(100, "EUR"), Money(100, "USD"))
    assert (caught.value.expected, caught.value.got) == ("EUR", "USD")
    assert caught.value.code == "currency_mismatch"


def test_amounts_in_different_currencies_are_never_equal():
    assert Money(100, "EUR") != Money(100, "USD")


@pytest.mark.parametrize("other", [5, 1.5, Decimal("1"), "1.00"])
def test_money_does_not_combine_with_plain_numbers(other):
    with pytest.raises(TypeError):
        Money(100, "EUR") + other  # type: ignore[operator]
    with pytest.raises(TypeError):
        assert Money(100, "EUR") < other  # type: ignore[operator]


def test_comparisons_order_by_minor_units():
    small, large = Money(-1, "EUR"), Money(1, "EUR")
    assert small < large and small <= large and large > small and large >= small
    assert Money(1, "EUR") <= Money(1, "EUR") and Money(1, "EUR") >= Money(1, "EUR")
    assert not Money(1, "EUR") < Money(1, "EUR")
    assert Money(1, "EUR").is_positive() and not Money(0, "EUR").is_positive() and not small.is_positive()


# -- rounding --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("major", "cents"),
    [
        ("0.525", 53),  # exactly half a cent: up
        ("0.515", 52),
        ("0.5249999", 52),
        ("0.005", 1),
        ("0.0049999999", 0),
        ("0.004", 0),
        ("12.345", 1235),
        ("-0.525", -53),  # half away from zero for negatives
        ("-0.005", -1),
        ("-0.0049", 0),
        ("-12.344", -1234),
        ("7", 700),
    ],
)
def test_round_to_minor_is_half_up_away_from_zero(major, cents):
    assert round_to_minor(Decimal(major), "EUR") == cents


@pytest.mark.parametrize(("major", "yen"), [("2.5", 3), ("2.4999", 2), ("-2.5", -3), ("0.5", 1)])
def test_round_to_minor_uses_the_currency_digits(major, yen):
    assert round_to_minor(Decimal(major), "JPY") == yen


def test_round_to_minor_returns_an_int():
    assert type(round_to_minor(Decimal("1.005"), "EUR")) is int


# -- display and wire shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "locale", "shown"),
    [
        (Money(4200, "EUR"), "de_DE", "42,00\xa0€"),
        (Money(123456, "EUR"), "de_DE", "1.234,56\xa0€"),
        (Money(-350, "EUR"), "de_DE", "-3,50\xa0€"),
        (Money(4200, "EUR"), "en_US", "€42.00"),
        (Money(5, "EUR"), "de_DE", "0,05\xa0€"),
        (Money(1200, "JPY"), "en_US", "¥1,200"),
    ],
)
def test_format_follows_the_locale(money, locale, shown):
    assert money.format(locale) == shown


def test_str_is_an_exact_decimal_with_the_currency():
    assert str(Money(4200, "EUR")) == "42.00 EUR"
    assert str(Money(-5, "EUR")) == "-0.05 EUR"
    assert str(Money(1200, "JPY")) == "1200 JPY"


def test_to_decimal_is_exact():
    assert Money(1, "EUR").to_decimal() == Decimal("0.01")
    assert Money(1234, "KWD").to_decimal() == Decimal("1.234")


def test_as_json_is_integer_minor_units_plus_currency():
    shape = Money.parse("42.00", "eur").as_json()
    assert shape == {"cents": 4200, "currency": "EUR"}
    assert type(shape["cents"]) is int


@pytest.mark.parametrize("text", ["0.01", "1.10", "-3.50", "999999.99", "0.00"])
def test_parse_and_str_round_trip(text):
    money = Money.parse(text, "EUR")
    assert Money.parse(str(money).removesuffix(" EUR"), "EUR") == money
