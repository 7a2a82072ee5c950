"""Numbers for people: the one formatter behind the console's filters and the CLI's tables.

`10,080` not `1.008e+04`, `1` not `1.0000000000000002`, `926 ms` not `926.3533349999875`,
`3 min 08 s`, `96%`, `12.5 Gbps`. Raw values stay in JSON (`--json`, the API); only what
is printed for a person goes through here.
"""

from __future__ import annotations

import json
import math
from typing import Any

DASH = "—"
GROUPED_FROM = 10_000  # 1030 (a frame, a year, a port) reads better without a separator


def number(value: Any, digits: int = 3) -> str:
    """`digits` significant digits, thousands separators from 10,000, never scientific
    notation."""
    if value is None:
        return DASH
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= GROUPED_FROM else str(value)
    if not math.isfinite(value):
        return "∞" if value == math.inf else "-∞" if value == -math.inf else "NaN"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    if decimals > 8:  # smaller than a person can use: keep its significant digits
        return f"{value:.{digits}g}"
    comma = "," if abs(value) >= GROUPED_FROM else ""
    text = f"{round(value, decimals):{comma}.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity(value: Any, unit: str, digits: int = 3) -> str:
    """`12.5 Gbps`, `1,200 req/s`, `23 instances` (a dash when there is no value)."""
    if value is None:
        return DASH
    return f"{number(value, digits)} {unit}"


def percent(fraction: Any, digits: int = 3) -> str:
    """A fraction as a percentage: 0.9634 → `96.3%`, 1.0000000000000002 → `100%`."""
    if fraction is None:
        return DASH
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return str(fraction)
    return f"{number(float(fraction) * 100, digits)}%"


def duration(seconds: Any) -> str:
    """`850 ms`, `12.3 s`, `3 min 08 s`, `2 h 10 min`, `3 days 4 h`."""
    if seconds is None:
        return DASH
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return str(seconds)
    s = float(seconds)
    if not math.isfinite(s):
        return number(s)
    if s < 0:
        return "-" + duration(-s)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{number(s, 3)} s"
    if s < 3600:
        minutes, rest = int(s // 60), round(s % 60)
        if rest == 60:
            minutes, rest = minutes + 1, 0
        return f"{minutes} min" + (f" {rest:02d} s" if rest else "")
    hours, minutes = int(s // 3600), int(s % 3600 // 60)
    if hours >= 48:
        return f"{hours // 24} days" + (f" {hours % 24} h" if hours % 24 else "")
    return f"{hours} h" + (f" {minutes:02d} min" if minutes else "")


def duration_ms(milliseconds: Any) -> str:
    """A duration given in milliseconds (`duration_ms` fields): 926.35 → `926 ms`."""
    if milliseconds is None or isinstance(milliseconds, bool):
        return DASH if milliseconds is None else str(milliseconds)
    if not isinstance(milliseconds, int | float):
        return str(milliseconds)
    return duration(milliseconds / 1000)


# How a table column is read from its name: the suffix says the unit.
_SUFFIXES: list[tuple[str, Any]] = [
    ("_ms", duration_ms),
    ("_seconds", duration),
    ("_s", duration),
    ("_gbps", lambda v: quantity(v, "Gbps")),
    ("_tb", lambda v: quantity(v, "TB")),
    ("_pct", lambda v: f"{number(v)}%" if isinstance(v, int | float) else str(v)),
    ("utilisation", percent),
    ("headroom", percent),
    ("utilization", percent),
    ("_fraction", percent),
    ("_rps", lambda v: quantity(v, "req/s")),
]


def compact(value: Any, key: str | None = None) -> str:
    """Nested data on one line for a person: `us-west-2: [12, 22]`, numbers formatted."""
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {compact(v, str(k))}" for k, v in value.items())
        return "{" + inner + "}" if key is not None else inner
    if isinstance(value, list | tuple):
        return "[" + ", ".join(compact(v, key) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, str) and key is not None:
        return json.dumps(value, ensure_ascii=False)
    return cell(value, key)


def cell(value: Any, column: str | None = None) -> str:
    """A value in a table cell for a person: by its column's unit when the name says it."""
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return compact(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    name = (column or "").lower()
    if name == "id" or name.endswith("_id") or name in {"position", "attempts", "port"}:
        return str(value)
    for suffix, shown in _SUFFIXES:
        if name.endswith(suffix):
            return str(shown(value))
    return number(value)
