"""Sane ranges for numeric options: each config type keeps one table of `name: (low, high)` (inclusive), checked
by `range_problems`, so a finite but absurd value (`"workers": 100000`, `lr=1e30`, a layer 10⁶ channels wide) is
refused by name before it costs anything, and docs/limits.md can list the tables as they are.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

Bounds = tuple[float, float]

_SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """`repr(value)`, short enough for a one-line message: an integer of thousands of digits (a 5,000-digit
    number in a JSON file) cannot even be printed by Python, so it is described by its length."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def number(x: float) -> str:
    """A bound as docs write it: 1000, 0.5, 1e-12."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def range_problems(values: Mapping[str, Any], table: Mapping[str, Bounds],
                   reasons: Mapping[str, str] | None = None) -> list[str]:
    """One "name=value must lie in low..high" per value outside its bounds (each item of a list or tuple is
    checked on its own), with `reasons[name]` where one explains the range. Values must already be numbers:
    the types are each config's own check."""
    bad = []
    for name, (low, high) in table.items():
        value = values[name]
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if not low <= item <= high:  # exact for ints of any size: no float conversion can overflow
                why = (reasons or {}).get(name)
                bad.append(f"{name}={shown(value)} must lie in {number(low)}..{number(high)}"
                           + (f" ({why})" if why else ""))
                break
    return bad


def cpu_bounds() -> Bounds:
    """Threads or worker processes: 0 (the library's default) up to this machine's CPU count; more only
    oversubscribes, and 100,000 workers took the machine down."""
    return (0, os.cpu_count() or 1)


def check_numbers(obj: object, table: Mapping[str, Bounds], what: str,
                  reasons: Mapping[str, str] | None = None) -> None:
    """Raise a ValueError naming every attribute of `obj` in `table` that is not a real number (booleans
    and text are not) within its bounds; an attribute that is None is optional and not checked."""
    values = {k: getattr(obj, k) for k in table if getattr(obj, k) is not None}
    bad = [f"{k}={shown(v)} must be a number" for k, v in values.items()
           if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    bad = bad or range_problems(values, {k: table[k] for k in values}, reasons)
    if bad:
        raise ValueError(f"invalid {what}: {'; '.join(bad)}")
