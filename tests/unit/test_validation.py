"""The shared input checks: text with control characters is refused, whatever its alphabet."""

from __future__ import annotations

import pytest

from billing_core.errors import InvalidInput
from billing_core.services import validation


@pytest.mark.parametrize("value", ["call\x00id", "esc\x1b[0m", "del\x7f", "next\x85line", "rtl\u202eltr", "a\u200bb"])
def test_text_with_a_control_or_format_character_is_refused(value: str):
    with pytest.raises(InvalidInput, match="control characters"):
        validation.text(value, "reason")


@pytest.mark.parametrize("value", ["call_8f14e45f-ceea", "Praxis Dr. Müller & Söhne", "  trimmed  ", "東京 クリニック"])
def test_printable_text_in_any_alphabet_is_kept_trimmed(value: str):
    assert validation.text(value, "name") == value.strip()
