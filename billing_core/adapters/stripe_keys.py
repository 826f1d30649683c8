"""Checks of the Stripe configuration that need no SDK (so a process can refuse a bad key before it loads one)."""

from __future__ import annotations

from billing_core.errors import StripeConfigurationError


def check_key_mode(secret_key: str, *, test_mode: bool) -> None:
    """Refuse to start when STRIPE_TEST_MODE and the key's prefix disagree (the classic 'Invalid API Key')."""
    if not secret_key:
        raise StripeConfigurationError("STRIPE_SECRET is not set")
    prefix = secret_key.split("_", 2)
    if len(prefix) < 3 or prefix[0] not in ("sk", "rk") or prefix[1] not in ("test", "live"):
        raise StripeConfigurationError(
            "STRIPE_SECRET does not look like a Stripe secret key (sk_test_... or sk_live_...)"
        )
    is_test_key = prefix[1] == "test"
    if is_test_key != test_mode:
        mode = "test" if test_mode else "live"
        raise StripeConfigurationError(
            f"STRIPE_TEST_MODE says {mode} mode but STRIPE_SECRET is a {prefix[1]} key; use keys of one mode"
        )
