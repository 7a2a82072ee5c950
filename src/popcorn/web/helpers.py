"""Small things every console page shares: time formatting, newest-first lists, roles, charts.

Domain page modules use these so that every page shows times, empty lists,
errors and charts the same way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from flask import g
from markupsafe import Markup, escape

from popcorn import numbers
from popcorn.auth import ROLE_RANK
from popcorn.errors import PopcornError
from popcorn.listing import ListParams, PageResult

PAGE_SIZE = 50


def as_datetime(value: Any) -> datetime | None:
    """A UTC datetime from a datetime, an ISO string or unix seconds (None if none of these)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fmt_time(value: Any, seconds: bool = True) -> str:
    """`2026-03-02 10:00:00` in UTC, or an em dash for nothing."""
    when = as_datetime(value)
    if when is None:
        return "—" if value in (None, "") else str(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def ago(value: Any, now: datetime | None = None) -> str:
    """`5 min ago`, `in 3 days`: how far a time is from now, in the largest sensible unit."""
    when = as_datetime(value)
    if when is None:
        return "never"
    delta = ((now or datetime.now(UTC)) - when).total_seconds()
    future = delta < 0
    delta = abs(delta)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if delta >= size:
            n = int(delta // size)
            text = f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
            break
    else:
        return "just now"
    return f"in {text}" if future else f"{text} ago"


def fmt_duration(seconds: Any) -> str:
    """`850 ms`, `12.3 s`, `4 min 05 s`, `2 h 10 min` (`popcorn.numbers.duration`)."""
    return numbers.duration(seconds)


def fmt_number(value: Any, digits: int = 3) -> str:
    """`10,080`, `0.123`, `42`: never `1.008e+04` (`popcorn.numbers.number`)."""
    return numbers.number(value, digits)


def fmt_bytes(value: Any) -> str:
    n = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def breakable(value: Any) -> Markup:
    """Long names (series, event types, rule paths) that may wrap after . , / = { in tables."""
    text = str(escape("" if value is None else value))
    return Markup(re.sub(r"([.,/={])", r"\1<wbr>", text))


def to_json(value: Any, indent: int | None = 2) -> str:
    """Pretty JSON for a <pre> block (dates as ISO text)."""
    return json.dumps(value, indent=indent, sort_keys=False, default=str, ensure_ascii=False)


def has_endpoint(endpoint: str) -> bool:
    """Whether a console page exists (a domain's pages load only when the domain does)."""
    from flask import current_app

    return endpoint in current_app.view_functions


def can(role: str) -> bool:
    """Whether the signed-in person may do what `role` may (to show or hide buttons)."""
    principal = g.get("principal")
    return principal is not None and ROLE_RANK[principal.role] >= ROLE_RANK[role]


def error_details(exc: PopcornError) -> dict[str, Any]:
    """What a form shows for a refused input: the message and, when known, line and reason."""
    details = dict(exc.details or {})
    return {
        "message": exc.message,
        "line": details.get("line"),
        "reason": details.get("reason"),
        "fields": details.get("fields") or {},
    }


def newest(
    fetch: Callable[[ListParams], PageResult],
    filters: Mapping[str, list[str]] | None = None,
    *,
    page: int = 1,
    size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """A page of a service's list, newest first, from lists the services page oldest first.

    Services paginate by ascending id; counting first lets the console ask for the last
    `size` rows (then the `size` before those, and so on) and reverse them.
    """
    filters = dict(filters or {})
    count = fetch(ListParams(limit=1, filters=filters)).count or 0
    pages = max(1, math.ceil(count / size))
    page = min(max(1, page), pages)
    end = count - (page - 1) * size
    start = max(0, end - size)
    items: list[Any] = []
    if end > 0:
        items = list(fetch(ListParams(limit=end - start, offset=start, filters=filters)).items)
        items.reverse()
    return {"items": items, "count": count, "page": page, "pages": pages}


def page_number(args: Mapping[str, Any]) -> int:
    raw = str(args.get("page", "1"))
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def chart(traces: list[dict[str, Any]], **layout: Any) -> str:
    """A plotly figure as JSON for `<div class="chart" data-figure=...>` (console.js draws it)."""
    base: dict[str, Any] = {
        "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "x unified",
        "font": {"size": 12},
        "autosize": True,
    }
    base.update(layout)
    return json.dumps({"data": traces, "layout": base}, default=str, allow_nan=False)


def finite(values: Any) -> list[Any]:
    """Values with NaN and infinities as None (JSON null, a gap in a plotly line)."""
    return [v if isinstance(v, int | float) and math.isfinite(v) else None for v in values]
