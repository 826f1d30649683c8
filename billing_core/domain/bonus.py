"""Bonus rules: free credit added to large top-ups (volume tiers, global or per company, time-boxed)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing_core.money import Money, round_to_minor


@dataclass(frozen=True, slots=True)
class BonusRule:
    id: int
    name: str
    min_topup_cents: int
    bonus_percent: Decimal = Decimal(0)
    bonus_fixed_cents: int = 0
    max_topup_cents: int | None = None
    max_bonus_cents: int | None = None
    company_id: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    active: bool = True

    def applies_to(self, topup: Money, company_id: int, at: datetime) -> bool:
        return (
            self.active
            and (self.company_id is None or self.company_id == company_id)
            and topup.cents >= self.min_topup_cents
            and (self.max_topup_cents is None or topup.cents <= self.max_topup_cents)
            and (self.valid_from is None or self.valid_from <= at)
            and (self.valid_until is None or at < self.valid_until)
        )

    def bonus_for(self, topup: Money) -> Money:
        cents = round_to_minor(topup.to_decimal() * self.bonus_percent / 100, topup.currency)
        cents += self.bonus_fixed_cents
        if self.max_bonus_cents is not None:
            cents = min(cents, self.max_bonus_cents)
        return Money(max(cents, 0), topup.currency)


@dataclass(frozen=True, slots=True)
class AppliedBonus:
    rule: BonusRule
    amount: Money


def best_bonus(rules: Iterable[BonusRule], topup: Money, company_id: int, at: datetime) -> AppliedBonus | None:
    """The matching rule that gives the most credit; a company's own rule wins a tie over a global one."""
    best: AppliedBonus | None = None
    for rule in rules:
        if not rule.applies_to(topup, company_id, at):
            continue
        amount = rule.bonus_for(topup)
        if amount.cents <= 0:
            continue
        candidate = AppliedBonus(rule, amount)
        if best is None or _ranks_above(candidate, best):
            best = candidate
    return best


def _ranks_above(a: AppliedBonus, b: AppliedBonus) -> bool:
    key_a = (a.amount.cents, a.rule.company_id is not None, -a.rule.id)
    key_b = (b.amount.cents, b.rule.company_id is not None, -b.rule.id)
    return key_a > key_b


def bonus_taken_back(*, bonus: int, paid: int, returned: int, already_taken: int, returned_after: int) -> int:
    """The bonus that goes back with ``returned`` of a payment of ``paid`` that came with ``bonus``.

    The one rule for refunds and lost disputes: the same share of the bonus as of the payment (rounded
    down), never more than is left after ``already_taken``; once the payment is returned in full
    (``returned_after`` reaches ``paid``) whatever bonus is left, so the shares add up to the bonus exactly.
    All amounts are minor units of the payment's currency.
    """
    if bonus <= 0 or paid <= 0:
        return 0
    left = max(0, bonus - already_taken)
    if returned_after >= paid:
        return left
    return min(bonus * min(returned, paid) // paid, left)
