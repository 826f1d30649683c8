"""The scopes of MCP callers (bearer tokens over HTTP, the local operator over stdio)."""

from __future__ import annotations

from billing_core.errors import InvalidInput

SCOPES = ("billing:read", "billing:refund", "billing:adjust", "billing:approve", "billing:admin")


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Known scopes only, in their canonical order; an unknown one is an error (a typo must not pass silently)."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = sorted(set(items) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    if not items:
        raise InvalidInput("at least one scope is required")
    return tuple(s for s in SCOPES if s in items)
