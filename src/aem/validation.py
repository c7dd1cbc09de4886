"""Argument checks that need nothing but the standard library (every layer may use them)."""

from __future__ import annotations

import math


def require_int_at_least(name: str, value: object, minimum: int) -> int:
    """Require a Python int (not a bool) >= ``minimum``; return it. The error names ``name``
    and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def require_finite_number(name: str, value: object) -> float:
    """Require a finite int or float (not a bool); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
