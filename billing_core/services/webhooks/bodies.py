"""Webhook bodies decoded once, strictly: UTF-8 JSON objects of bounded depth, with text we can store.

``json.loads`` alone is too forgiving for a boundary: it guesses UTF-16 and UTF-32 from bytes, accepts
``NaN`` and ``Infinity``, lets a later duplicate key win, recurses until ``RecursionError`` on deeply
nested input and returns strings holding lone surrogates (``"\\ud800"``) that no database can store.
Every one of those becomes :class:`MalformedBody`, an ``InvalidInput`` that no retry can fix.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from billing_core.errors import InvalidInput

MAX_DEPTH = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedBody(InvalidInput):
    code = "malformed_body"


def _deeper_than(text: str, limit: int) -> bool:
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def decode_object(raw: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The JSON object in ``raw`` (UTF-8, no BOM), or :class:`MalformedBody` saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the body is not UTF-8") from None
    if _deeper_than(text, max_depth):
        raise MalformedBody(f"JSON nested deeper than {max_depth} levels")
    try:
        data = json.loads(text, parse_constant=_constant, parse_float=_finite, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so are over-long integers
        raise MalformedBody("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedBody("the body is not a JSON object")
    # Strict UTF-8 decoding refuses encoded surrogates, so only a \u escape can make one: most bodies have none.
    if "\\u" in text and _has_surrogate(data):
        raise MalformedBody("the body holds a lone surrogate (not Unicode text)")
    return data
