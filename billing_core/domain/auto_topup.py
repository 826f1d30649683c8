"""When an auto top-up may run: pure rules over a snapshot taken under the balance row lock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AutoTopupSnapshot:
    globally_enabled: bool
    company_enabled: bool
    billing_enabled: bool
    balance: int
    threshold: int
    amount: int
    payment_method: str | None
    in_flight: bool
    attempts_today: int
    daily_limit: int
    month_total: int  # pending, processing and succeeded auto top-ups this calendar month
    monthly_limit: int | None


@dataclass(frozen=True, slots=True)
class AutoTopupDecision:
    go: bool
    reason: str


def decide(s: AutoTopupSnapshot) -> AutoTopupDecision:
    """The first rule that says no wins; its reason is shown to operators as is."""
    checks = (
        (s.globally_enabled, "auto top-up is switched off (AUTO_TOPUP_ENABLED)"),
        (s.billing_enabled, "prepaid billing is switched off for the company"),
        (s.company_enabled, "auto top-up is off for the company"),
        (s.balance < s.threshold, f"balance {s.balance} is not below the threshold {s.threshold}"),
        (s.amount > 0, "the auto top-up amount is zero"),
        (s.payment_method is not None, "no saved payment method for auto top-up"),
        (not s.in_flight, "an auto top-up is already in flight"),
        (s.attempts_today < s.daily_limit, f"daily limit of {s.daily_limit} auto top-ups reached"),
        (
            s.monthly_limit is None or s.month_total + s.amount <= s.monthly_limit,
            f"monthly cap of {s.monthly_limit} would be exceeded ({s.month_total} used)",
        ),
    )
    for ok, reason in checks:
        if not ok:
            return AutoTopupDecision(False, reason)
    return AutoTopupDecision(True, "balance below threshold")
