"""Series selectors, durations and times in the spelling Prometheus users already know.

A selector is `metric{label="v", other=~"re.*", x!="y", z!~"a|b"}` (the metric name is
optional when a matcher names `__name__`). Semantics follow Prometheus: regular expressions
are fully anchored, a missing label has the value "", and a selector must have at least one
matcher that does not match the empty string, so that `{}` cannot select everything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import re2

from popcorn.errors import InvalidInput

OPS = ("=", "!=", "=~", "!~")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_UNITS["y"] = 365 * 86400.0
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


class SelectorError(InvalidInput):
    """A selector that does not parse; the message points at the offending position."""


def _re2(matcher: Matcher) -> Any:
    """The matcher's regex in RE2, fully anchored as in Prometheus.

    RE2 runs in time linear in the input, so `(.*)*Z` cannot stall a request; what RE2
    refuses (backreferences, lookarounds) is a 422 naming the matcher.
    """
    options = re2.Options()
    options.log_errors = False
    options.dot_nl = True
    try:
        return re2.compile(matcher.value, options=options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise SelectorError(
            f"invalid regular expression in {matcher}: {reason}",
            details={"label": matcher.name, "matcher": str(matcher), "regex": matcher.value},
        ) from None


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", _re2(self))

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = self._regex.fullmatch(value) is not None  # type: ignore[attr-defined]
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...]

    @property
    def metric(self) -> str | None:
        """The exact metric name, when the selector pins one (lets storage narrow by index)."""
        for m in self.matchers:
            if m.name == "__name__" and m.op == "=":
                return m.value
        return None

    def equalities(self) -> dict[str, str]:
        return {m.name: m.value for m in self.matchers if m.op == "=" and m.name != "__name__"}

    def matches(self, metric: str, labels: dict[str, str]) -> bool:
        for m in self.matchers:
            value = metric if m.name == "__name__" else labels.get(m.name, "")
            if not m.matches(value):
                return False
        return True

    def __str__(self) -> str:
        name = self.metric
        rest = [str(m) for m in self.matchers if not (m.name == "__name__" and m.op == "=")]
        inner = "{" + ",".join(rest) + "}" if rest or not name else ""
        return f"{name or ''}{inner}"


def parse_selector(text: str) -> Selector:
    """Parse `metric{a="b",c=~"x.*"}`; raises SelectorError naming the position of a mistake."""
    src = text.strip() if isinstance(text, str) else ""
    if not src:
        raise SelectorError('selector: empty; give a metric name or {label="value"}')
    pos = 0
    matchers: list[Matcher] = []

    def fail(message: str, at: int) -> SelectorError:
        return SelectorError(
            f"selector {src!r}: {message} at position {at + 1}",
            details={"selector": src, "position": at + 1},
        )

    def skip_ws() -> None:
        nonlocal pos
        while pos < len(src) and src[pos].isspace():
            pos += 1

    name_match = _NAME.match(src, pos)
    if name_match:
        matchers.append(Matcher("__name__", "=", name_match.group()))
        pos = name_match.end()
    skip_ws()
    if pos < len(src):
        if src[pos] != "{":
            raise fail(f"unexpected {src[pos]!r}", pos)
        pos += 1
        skip_ws()
        while pos < len(src) and src[pos] != "}":
            label = _LABEL.match(src, pos)
            if not label:
                raise fail("expected a label name", pos)
            pos = label.end()
            skip_ws()
            op = next((o for o in ("=~", "!~", "!=", "=") if src.startswith(o, pos)), None)
            if op is None:
                raise fail("expected one of = != =~ !~", pos)
            pos += len(op)
            skip_ws()
            value, pos = _string(src, pos, fail)
            matchers.append(Matcher(label.group(), op, value))
            skip_ws()
            if pos < len(src) and src[pos] == ",":
                pos += 1
                skip_ws()
            elif pos < len(src) and src[pos] != "}":
                raise fail("expected ',' or '}'", pos)
        if pos >= len(src):
            raise fail("missing '}'", pos)
        pos += 1
        skip_ws()
        if pos < len(src):
            raise fail(f"unexpected {src[pos]!r} after '}}'", pos)
    if not any(not m.matches("") for m in matchers):
        raise SelectorError(
            f"selector {src!r}: needs at least one matcher that does not match the empty "
            "string (e.g. a metric name)",
            details={"selector": src},
        )
    return Selector(tuple(matchers))


def _string(src: str, pos: int, fail: Any) -> tuple[str, int]:
    if pos >= len(src) or src[pos] not in "\"'`":
        raise fail("expected a quoted value", pos)
    quote = src[pos]
    pos += 1
    out: list[str] = []
    while pos < len(src):
        ch = src[pos]
        if ch == quote:
            return "".join(out), pos + 1
        if ch == "\\" and quote != "`":
            if pos + 1 >= len(src):
                break
            nxt = src[pos + 1]
            if nxt not in _ESCAPES:
                raise fail(f"unknown escape \\{nxt}", pos)
            out.append(_ESCAPES[nxt])
            pos += 2
            continue
        out.append(ch)
        pos += 1
    raise fail("unterminated string", pos)


def format_series(metric: str, labels: dict[str, str]) -> str:
    """The canonical `metric{a="b"}` spelling of one series (labels sorted)."""
    if not labels:
        return metric
    inner = ",".join(str(Matcher(k, "=", labels[k])) for k in sorted(labels))
    return f"{metric}{{{inner}}}"


def parse_duration(value: Any, field: str = "duration") -> float:
    """Seconds from `90`, `"90"`, `"1m30s"`, `"2h"`, `"1.5d"`; must be positive."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: expected a duration, got {value!r}", details={field: value})
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise InvalidInput(
                    f"{field}: {value!r} is not a duration (e.g. 30s, 5m, 1h30m, 2d)",
                    details={field: value},
                ) from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidInput(f"{field}: must be positive, got {value!r}", details={field: value})
    return seconds


def parse_time(value: Any, field: str = "time", *, now: datetime | None = None) -> datetime:
    """A UTC datetime from unix seconds, RFC 3339, `now`, `now-1h` or `-1h`."""
    now = now or datetime.now(UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool) or value is None:
        raise InvalidInput(f"{field}: expected a time, got {value!r}", details={field: value})
    if isinstance(value, int | float):
        return _from_unix(float(value), field, value)
    text = str(value).strip()
    try:
        return _from_unix(float(text), field, value)
    except ValueError:
        pass
    relative = text[3:] if text.startswith("now") else text
    if relative == "":
        return now
    if relative[0] in "+-":
        seconds = parse_duration(relative[1:], field)
        sign = -1 if relative[0] == "-" else 1
        return datetime.fromtimestamp(now.timestamp() + sign * seconds, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{field}: {value!r} is not a time (unix seconds, RFC 3339, now or now-1h)",
            details={field: value},
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _from_unix(seconds: float, field: str, raw: Any) -> datetime:
    if not (math.isfinite(seconds) and 0 <= seconds < 7.3e9):
        raise InvalidInput(
            f"{field}: {raw!r} is outside 1970..2200 in unix seconds", details={field: raw}
        )
    return datetime.fromtimestamp(seconds, UTC)
