"""Text that customers or webhooks control reaches the model as length-capped data, never as instructions."""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"


def capped(value: str | None, limit: int = 200) -> str:
    """``value`` without control characters and at most ``limit`` characters long."""
    if value is None:
        return ""
    cleaned = "".join(ch if unicodedata.category(ch)[0] != "C" or ch in "\t" else " " for ch in value)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + ELLIPSIS
