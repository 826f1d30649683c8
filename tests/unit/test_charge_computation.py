"""How a finished call becomes an amount: billed seconds per increment, one half-up rounding step."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_core.domain.charges import Rate, billed_seconds, compute_charge, reservation_amount
from billing_core.errors import InvalidInput
from billing_core.money import Money


def eur_rate(per_minute: str, increment: int = 1) -> Rate:
    return Rate(Decimal(per_minute), "EUR", increment)


# -- billed seconds --------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 3599, 86_400])
def test_one_second_increment_bills_the_exact_duration(seconds):
    assert billed_seconds(seconds, 1) == seconds


@pytest.mark.parametrize(
    ("seconds", "billed"),
    [(0, 0), (1, 60), (59, 60), (60, 60), (61, 120), (119, 120), (120, 120), (121, 180)],
)
def test_sixty_second_increment_rounds_up_to_whole_minutes(seconds, billed):
    assert billed_seconds(seconds, 60) == billed


@pytest.mark.parametrize(("seconds", "increment", "billed"), [(1, 6, 6), (7, 6, 12), (31, 30, 60), (3601, 3600, 7200)])
def test_other_increments_round_up_to_the_next_whole_increment(seconds, increment, billed):
    assert billed_seconds(seconds, increment) == billed


@given(seconds=st.integers(0, 10**7), increment=st.integers(1, 3600))
def test_billed_seconds_is_the_smallest_whole_increment_covering_the_call(seconds, increment):
    billed = billed_seconds(seconds, increment)
    assert billed % increment == 0
    assert seconds <= billed < seconds + increment


def test_negative_duration_is_rejected():
    with pytest.raises(InvalidInput, match="negative"):
        billed_seconds(-1, 1)
    with pytest.raises(InvalidInput, match="negative"):
        compute_charge(-1, eur_rate("0.42"))


@pytest.mark.parametrize("increment", [0, -60])
def test_billed_seconds_rejects_an_increment_below_one_second(increment):
    with pytest.raises(InvalidInput):
        billed_seconds(61, increment)


# -- the rate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("increment", [0, -1, -60])
def test_rate_with_increment_below_one_second_is_rejected(increment):
    with pytest.raises(InvalidInput, match="at least one second"):
        eur_rate("0.42", increment)


@pytest.mark.parametrize("per_minute", [Decimal("-0.01"), Decimal("-0.42")])
def test_negative_rate_is_rejected(per_minute):
    with pytest.raises(InvalidInput, match="non-negative Decimal"):
        Rate(per_minute, "EUR")


@pytest.mark.parametrize("per_minute", [0.42, 1, "0.42"])
def test_rate_that_is_not_a_decimal_is_rejected(per_minute):
    with pytest.raises(InvalidInput, match="non-negative Decimal"):
        Rate(per_minute, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("per_minute", ["NaN", "Infinity"])
def test_rate_that_is_not_a_finite_amount_is_rejected(per_minute):
    with pytest.raises(InvalidInput):
        Rate(Decimal(per_minute), "EUR")


# -- the charge ------------------------------------------------------------------------------------


def test_sixty_one_seconds_at_one_second_increment():
    charge = compute_charge(61, eur_rate("0.42"))
    assert charge.billed_seconds == 61
    assert charge.amount == Money(43, "EUR")  # 0.427


def test_sixty_one_seconds_at_sixty_second_increment_bills_two_minutes():
    charge = compute_charge(61, eur_rate("0.42", 60))
    assert charge.billed_seconds == 120
    assert charge.amount == Money(84, "EUR")


@pytest.mark.parametrize(
    ("per_minute", "seconds", "increment", "cents"),
    [
        ("0.42", 75, 1, 53),  # 0.525 exactly: half a cent rounds up
        ("0.42", 15, 1, 11),  # 0.105
        ("0.42", 45, 1, 32),  # 0.315
        ("0.30", 1, 1, 1),  # 0.005
        ("0.4250", 60, 60, 43),  # 0.425
        ("0.4250", 1, 60, 43),  # one second billed as a minute at 0.425
        ("0.4250", 300, 60, 213),  # 2.125
        ("0.15", 2, 1, 1),  # 0.005
    ],
)
def test_exact_half_cent_rounds_up(per_minute, seconds, increment, cents):
    assert compute_charge(seconds, eur_rate(per_minute, increment)).amount == Money(cents, "EUR")


@pytest.mark.parametrize(
    ("per_minute", "seconds", "cents"),
    [
        ("0.29", 1, 0),  # 0.004833...
        ("0.2999", 1, 0),  # 0.0049983...
        ("0.42", 74, 52),  # 0.518
        ("0.42", 1, 1),  # 0.007
        ("0.4199", 75, 52),  # 0.524875
    ],
)
def test_below_half_a_cent_rounds_down_and_above_rounds_up(per_minute, seconds, cents):
    assert compute_charge(seconds, eur_rate(per_minute)).amount == Money(cents, "EUR")


def test_rounding_happens_once_on_the_total_not_per_increment():
    # 0.42/min is 0.007/s: 150 one-second increments are 1.05, not 150 x round(0.007) = 1.50
    assert compute_charge(150, eur_rate("0.42")).amount == Money(105, "EUR")


def test_yen_rate_rounds_to_whole_yen():
    assert compute_charge(3, Rate(Decimal("10"), "JPY")).amount == Money(1, "JPY")  # 0.5 yen
    assert compute_charge(2, Rate(Decimal("10"), "JPY")).amount == Money(0, "JPY")  # 0.33 yen
    assert compute_charge(61, Rate(Decimal("10"), "JPY", 60)).amount == Money(20, "JPY")


@pytest.mark.parametrize("increment", [1, 60])
def test_zero_second_call_costs_nothing(increment):
    charge = compute_charge(0, eur_rate("0.42", increment))
    assert charge.billed_seconds == 0
    assert charge.amount == Money(0, "EUR")


def test_free_rate_charges_nothing_but_still_bills_seconds():
    charge = compute_charge(61, eur_rate("0", 60))
    assert charge.billed_seconds == 120
    assert charge.amount == Money(0, "EUR")


@given(
    seconds=st.integers(0, 100_000),
    increment=st.sampled_from([1, 6, 30, 60, 3600]),
    micro_per_minute=st.integers(0, 10_000_000),  # rates with up to 6 decimal places, up to 10.00/min
)
def test_charge_equals_billed_seconds_times_rate_rounded_half_up(seconds, increment, micro_per_minute):
    rate = Rate(Decimal(micro_per_minute).scaleb(-6), "EUR", increment)
    charge = compute_charge(seconds, rate)
    billed = -(-seconds // increment) * increment
    exact_cents = Fraction(billed * micro_per_minute, 60 * 10_000)  # micro-units per minute -> cents
    assert charge.billed_seconds == billed
    assert charge.amount == Money(math.floor(exact_cents + Fraction(1, 2)), "EUR")


@given(shorter=st.integers(0, 10_000), extra=st.integers(0, 10_000), increment=st.sampled_from([1, 60]))
def test_a_longer_call_never_costs_less(shorter, extra, increment):
    rate = eur_rate("0.42", increment)
    assert compute_charge(shorter, rate).amount <= compute_charge(shorter + extra, rate).amount


# -- the reservation -------------------------------------------------------------------------------


def test_reservation_holds_the_minutes_at_the_rate_when_enough_is_available():
    assert reservation_amount(5, eur_rate("0.42"), Money(10_000, "EUR")) == Money(210, "EUR")


def test_reservation_rounds_half_up_like_a_charge():
    assert reservation_amount(5, eur_rate("0.4250", 60), Money(10_000, "EUR")) == Money(213, "EUR")  # 2.125


@pytest.mark.parametrize(("available", "held"), [(210, 210), (209, 209), (100, 100), (1, 1), (0, 0)])
def test_reservation_is_capped_by_what_is_available(available, held):
    assert reservation_amount(5, eur_rate("0.42"), Money(available, "EUR")) == Money(held, "EUR")


def test_reservation_with_a_negative_available_balance_holds_nothing():
    assert reservation_amount(5, eur_rate("0.42"), Money(-500, "EUR")) == Money(0, "EUR")


def test_reservation_of_zero_minutes_holds_nothing():
    assert reservation_amount(0, eur_rate("0.42"), Money(10_000, "EUR")) == Money(0, "EUR")


def test_reservation_of_negative_minutes_is_rejected():
    with pytest.raises(InvalidInput):
        reservation_amount(-1, eur_rate("0.42"), Money(10_000, "EUR"))


@given(minutes=st.integers(0, 600), available=st.integers(-(10**6), 10**6))
def test_reservation_never_exceeds_the_wanted_amount_or_what_is_available(minutes, available):
    rate = eur_rate("0.42")
    held = reservation_amount(minutes, rate, Money(available, "EUR"))
    assert 0 <= held.cents <= max(available, 0)
    assert held.cents <= compute_charge(minutes * 60, rate).amount.cents
    assert held.cents == min(max(available, 0), compute_charge(minutes * 60, rate).amount.cents)
