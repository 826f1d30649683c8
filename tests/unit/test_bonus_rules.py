"""Bonus rules: which rule matches a top-up, how much it gives, and which one wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core.domain.bonus import BonusRule, best_bonus, bonus_taken_back
from billing_core.money import Money

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
COMPANY = 7
OTHER_COMPANY = 8


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def rule(rule_id: int = 1, *, min_topup: str = "0.00", percent: str = "0", **fields: object) -> BonusRule:
    return BonusRule(
        id=rule_id,
        name=f"rule {rule_id}",
        min_topup_cents=eur(min_topup).cents,
        bonus_percent=Decimal(percent),
        **fields,  # type: ignore[arg-type]
    )


def best_amount(rules: list[BonusRule], topup: str, *, company_id: int = COMPANY, at: datetime = NOW) -> Money | None:
    applied = best_bonus(rules, eur(topup), company_id, at)
    return None if applied is None else applied.amount


# -- one rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("topup", "bonus"), [("100.00", "10.00"), ("250.00", "25.00"), ("100.05", "10.01")])
def test_percentage_bonus_is_rounded_half_up_to_the_cent(topup, bonus):
    assert rule(percent="10").bonus_for(eur(topup)) == eur(bonus)  # 10.005 -> 10.01


def test_percentage_bonus_below_half_a_cent_rounds_down():
    assert rule(percent="10").bonus_for(eur("100.04")) == eur("10.00")  # 10.004


def test_fixed_bonus_is_added_to_the_percentage():
    assert rule(percent="5", bonus_fixed_cents=250).bonus_for(eur("100.00")) == eur("7.50")
    assert rule(bonus_fixed_cents=500).bonus_for(eur("50.00")) == eur("5.00")


def test_max_bonus_caps_the_credit():
    capped = rule(percent="10", max_bonus_cents=2500)
    assert capped.bonus_for(eur("200.00")) == eur("20.00")
    assert capped.bonus_for(eur("250.00")) == eur("25.00")
    assert capped.bonus_for(eur("1000.00")) == eur("25.00")


def test_bonus_is_in_the_top_up_currency():
    assert rule(percent="10").bonus_for(Money(10_000, "JPY")) == Money(1_000, "JPY")
    assert rule(percent="10").bonus_for(Money(5, "JPY")) == Money(1, "JPY")  # 0.5 yen rounds up


@pytest.mark.parametrize(("topup", "applies"), [("99.99", False), ("100.00", True), ("500.00", True)])
def test_minimum_top_up_is_inclusive(topup, applies):
    assert rule(min_topup="100.00", percent="10").applies_to(eur(topup), COMPANY, NOW) is applies


@pytest.mark.parametrize(("topup", "applies"), [("199.99", True), ("200.00", True), ("200.01", False)])
def test_maximum_top_up_is_inclusive(topup, applies):
    tier = rule(min_topup="100.00", percent="10", max_topup_cents=20_000)
    assert tier.applies_to(eur(topup), COMPANY, NOW) is applies


@pytest.mark.parametrize(
    ("at", "applies"),
    [
        (NOW - timedelta(microseconds=1), False),
        (NOW, True),  # valid_from is inclusive
        (NOW + timedelta(days=6, hours=23), True),
        (NOW + timedelta(days=7) - timedelta(microseconds=1), True),
        (NOW + timedelta(days=7), False),  # valid_until is exclusive
    ],
)
def test_validity_window_includes_its_start_and_excludes_its_end(at, applies):
    promo = rule(percent="20", valid_from=NOW, valid_until=NOW + timedelta(days=7))
    assert promo.applies_to(eur("100.00"), COMPANY, at) is applies
    assert (best_amount([promo], "100.00", at=at) == eur("20.00")) is applies


def test_open_ended_windows_apply_on_their_open_side():
    assert rule(percent="10", valid_from=NOW).applies_to(eur("1.00"), COMPANY, NOW + timedelta(days=3650))
    assert rule(percent="10", valid_until=NOW).applies_to(eur("1.00"), COMPANY, NOW - timedelta(days=3650))


def test_inactive_rule_never_applies():
    off = rule(percent="50", active=False)
    assert not off.applies_to(eur("100.00"), COMPANY, NOW)
    assert best_amount([off], "100.00") is None


def test_company_rule_applies_only_to_its_company():
    own = rule(percent="10", company_id=COMPANY)
    assert own.applies_to(eur("100.00"), COMPANY, NOW)
    assert not own.applies_to(eur("100.00"), OTHER_COMPANY, NOW)
    assert best_amount([own], "100.00", company_id=OTHER_COMPANY) is None


def test_global_rule_applies_to_every_company():
    everyone = rule(percent="10")
    assert everyone.applies_to(eur("100.00"), COMPANY, NOW)
    assert everyone.applies_to(eur("100.00"), OTHER_COMPANY, NOW)


# -- choosing among rules --------------------------------------------------------------------------


def test_no_rules_means_no_bonus():
    assert best_bonus([], eur("1000.00"), COMPANY, NOW) is None


def test_top_up_below_every_tier_gets_no_bonus():
    assert best_amount([rule(min_topup="100.00", percent="10")], "99.99") is None


def test_volume_tiers_give_the_highest_tier_reached():
    tiers = [
        rule(1, min_topup="100.00", percent="5", max_topup_cents=49_999),
        rule(2, min_topup="500.00", percent="10", max_topup_cents=99_999),
        rule(3, min_topup="1000.00", percent="15"),
    ]
    assert best_amount(tiers, "99.99") is None
    assert best_amount(tiers, "100.00") == eur("5.00")
    assert best_amount(tiers, "499.99") == eur("25.00")
    assert best_amount(tiers, "500.00") == eur("50.00")
    assert best_amount(tiers, "1000.00") == eur("150.00")


def test_the_rule_giving_the_most_credit_wins():
    applied = best_bonus(
        [rule(1, percent="5"), rule(2, bonus_fixed_cents=1_000), rule(3, percent="8")], eur("100.00"), COMPANY, NOW
    )
    assert applied is not None
    assert applied.rule.id == 2 and applied.amount == eur("10.00")


def test_a_better_global_rule_beats_a_weaker_company_rule():
    applied = best_bonus([rule(1, percent="5", company_id=COMPANY), rule(2, percent="10")], eur("100.00"), COMPANY, NOW)
    assert applied is not None
    assert applied.rule.id == 2 and applied.amount == eur("10.00")


def test_a_better_company_rule_beats_a_global_rule():
    rules = [rule(1, percent="10"), rule(2, percent="15", company_id=COMPANY)]
    applied = best_bonus(rules, eur("100.00"), COMPANY, NOW)
    assert applied is not None
    assert applied.rule.id == 2 and applied.amount == eur("15.00")


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_company_rule_wins_a_tie_with_a_global_rule_in_any_order(order):
    rules = [rule(1, percent="10"), rule(2, bonus_fixed_cents=1_000, company_id=COMPANY)]
    applied = best_bonus([rules[i] for i in order], eur("100.00"), COMPANY, NOW)
    assert applied is not None
    assert applied.rule.id == 2 and applied.amount == eur("10.00")


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_tie_between_rules_of_the_same_scope_goes_to_the_oldest_rule(order):
    rules = [rule(5, percent="10"), rule(3, bonus_fixed_cents=1_000), rule(9, percent="10")]
    applied = best_bonus([rules[i] for i in order], eur("100.00"), COMPANY, NOW)
    assert applied is not None
    assert applied.rule.id == 3


def test_capped_rule_loses_to_an_uncapped_one_once_the_cap_bites():
    rules = [rule(1, percent="20", max_bonus_cents=3_000), rule(2, percent="10")]
    assert best_bonus(rules, eur("100.00"), COMPANY, NOW).rule.id == 1  # type: ignore[union-attr]  # 20 vs 10
    assert best_bonus(rules, eur("500.00"), COMPANY, NOW).rule.id == 2  # type: ignore[union-attr]  # 30 vs 50


def test_expired_and_future_rules_are_ignored_when_choosing():
    rules = [
        rule(1, percent="50", valid_until=NOW),
        rule(2, percent="40", valid_from=NOW + timedelta(seconds=1)),
        rule(3, percent="5"),
    ]
    applied = best_bonus(rules, eur("100.00"), COMPANY, NOW)
    assert applied is not None and applied.rule.id == 3


def test_inactive_better_rule_is_ignored_when_choosing():
    applied = best_bonus([rule(1, percent="50", active=False), rule(2, percent="5")], eur("100.00"), COMPANY, NOW)
    assert applied is not None and applied.rule.id == 2


def test_matching_rule_worth_nothing_gives_no_bonus():
    # 1 % of 0.49 is 0.0049: rounds to zero, so no bonus entry would be worth posting
    assert best_amount([rule(percent="1")], "0.49") is None
    assert best_amount([rule(percent="10", max_bonus_cents=0)], "100.00") is None


# -- the bonus taken back with refunds and lost disputes ------------------------------------------------


def test_partial_returns_take_back_the_same_share_of_the_bonus_rounded_down():
    assert bonus_taken_back(bonus=1000, paid=15000, returned=5000, already_taken=0, returned_after=5000) == 333


def test_the_return_that_completes_the_payment_takes_whatever_bonus_is_left():
    first = bonus_taken_back(bonus=1000, paid=15000, returned=5000, already_taken=0, returned_after=5000)
    second = bonus_taken_back(bonus=1000, paid=15000, returned=5000, already_taken=first, returned_after=10000)
    last = bonus_taken_back(bonus=1000, paid=15000, returned=5000, already_taken=first + second, returned_after=15000)
    assert (first, second, last) == (333, 333, 334)
    assert first + second + last == 1000


def test_never_more_bonus_than_is_left_and_none_without_a_bonus():
    assert bonus_taken_back(bonus=1000, paid=10000, returned=8000, already_taken=900, returned_after=8000) == 100
    assert bonus_taken_back(bonus=1000, paid=10000, returned=10000, already_taken=1000, returned_after=10000) == 0
    assert bonus_taken_back(bonus=0, paid=10000, returned=10000, already_taken=0, returned_after=10000) == 0


def test_a_dispute_over_more_than_was_paid_takes_back_the_whole_bonus_once():
    assert bonus_taken_back(bonus=500, paid=10000, returned=12000, already_taken=0, returned_after=10000) == 500
