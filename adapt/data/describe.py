"""How error messages name a value: its JSON type, or a short repr."""

from __future__ import annotations

from typing import Any

__all__ = ["a_json_type", "json_type", "short"]


def json_type(value: Any) -> str:
    """The JSON type a value would have (``object``, ``array``, ``string``, ...)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


def a_json_type(value: Any) -> str:
    """``json_type`` with its article: "an object", "a string"."""
    kind = json_type(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def short(value: Any, n: int = 60) -> str:
    """``repr(value)``, cut to ``n`` characters; raw bytes by their length."""
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} raw bytes"
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
