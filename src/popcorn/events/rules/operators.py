"""Conditions: the operators a rule can test, compiled to closures and to generated code.

Each leaf operator (eq, in, regex, time_of_day...) becomes a predicate over
one field; `all_of`, `any_of` and `not_` combine them. `compile_test` turns a
whole tree into one generated Python function in which every value is a bound
constant, never pasted into the source. Regular expressions run on RE2, which
matches in time linear in the input: no rule can make matching backtrack for
seconds, whatever its pattern.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import re2

from popcorn.events.formats import MISSING, Event, EventFormatError, parse_time, resolve_path

OPERATORS: Final = (
    "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "prefix", "suffix",
    "regex", "glob", "exists", "time_of_day", "older_than", "newer_than",
)  # fmt: skip
# A rule's pattern is written by a person; a longer one is a mistake or an attack.
MAX_PATTERN_LENGTH: Final = 1000
# Per pattern: how many recent values' outcomes are kept, and the longest value kept.
REGEX_CACHE_SIZE: Final = 2048
REGEX_CACHE_MAX_VALUE: Final = 512

Test = Callable[[Event, datetime], bool]
Search = Callable[[str], Any]


class PatternError(ValueError):
    """A regular expression RE2 refuses (backreferences, lookaround) or one too long."""


def compile_regex(patterns: Sequence[str]) -> Search:
    """One RE2 search over any of `patterns`; raises `PatternError` naming the bad one."""
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise PatternError(f"regular expression longer than {MAX_PATTERN_LENGTH} characters")
        try:
            re2.compile(pattern)
        except re2.error as exc:
            raise PatternError(
                f"invalid regular expression {pattern!r}: {exc} (rules use RE2 syntax: "
                "no backreferences or lookaround)"
            ) from None
    source = "|".join(f"(?:{p})" for p in patterns) if len(patterns) > 1 else patterns[0]
    compiled = re2.compile(source)

    # RE2's Python binding costs microseconds a call, where `re` costs a tenth of that;
    # label values and summaries repeat from event to event, so short ones are remembered.
    @lru_cache(maxsize=REGEX_CACHE_SIZE)
    def remembered(value: str) -> bool | None:
        return True if compiled.search(value) is not None else None

    def search(value: str) -> bool | None:
        if len(value) <= REGEX_CACHE_MAX_VALUE:
            return remembered(value)
        return True if compiled.search(value) is not None else None

    return search


def compile_glob(patterns: Sequence[str]) -> Search:
    """Shell-style patterns over the whole string (fnmatch's translation cannot backtrack)."""
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise PatternError(f"glob pattern longer than {MAX_PATTERN_LENGTH} characters")
    match: Search = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
    return match


# --- outcomes and explanations ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """How one condition fared against one event (a tree, like the conditions)."""

    text: str
    passed: bool
    kind: Literal["leaf", "all", "any", "not", "true"] = "leaf"
    actual: str | None = None
    line: int | None = None
    children: tuple[Check, ...] = ()

    def failures(self) -> list[Check]:
        """The conditions that made this one fail (leaves, or a `not` that held)."""
        if self.passed:
            return []
        if self.kind in ("leaf", "not"):
            return [self]
        return [f for child in self.children for f in child.failures()]

    def lines(self, indent: int = 0) -> list[str]:
        """An indented report, one line per condition."""
        mark = "pass" if self.passed else "FAIL"
        text = f"{'  ' * indent}{mark} {self.text}"
        if self.actual is not None:
            text += f"  (actual: {self.actual})"
        if self.line is not None:
            text += f"  [line {self.line}]"
        return [text] + [line for child in self.children for line in child.lines(indent + 1)]

    def summary(self) -> str:
        parts = []
        for failure in self.failures():
            text = failure.text
            actual = failure.actual
            if failure.kind == "not" and failure.children:
                actual = failure.children[0].actual
            where = f" (line {failure.line})" if failure.line is not None else ""
            parts.append(f"{text}{where}" + (f": actual {actual}" if actual is not None else ""))
        return "; ".join(parts)


def show_value(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """A compiled condition: a fast `test` and an explaining `check`."""

    text: str
    kind: Literal["leaf", "all", "any", "not", "true"]
    test: Test = field(repr=False)
    check: Callable[[Event, datetime], Check] = field(repr=False)
    line: int | None = None
    cost: int = 2
    # For leaves usable by the index: (field, the string values that satisfy it).
    index: tuple[str, frozenset[str]] | None = None
    children: tuple[Condition, ...] = ()
    # Writes this condition as one Python expression over `e` (event) and `n` (now).
    emit: Callable[[_Codegen], str] | None = field(default=None, repr=False)


class _Codegen:
    """Turns a condition tree into the source of one function.

    Only the shape comes from the rule: every value, key and pattern is bound
    as a named constant, never written into the source.
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"MISSING": MISSING, "_NUMS": (int, float)}
        self.temps = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def expr(self, condition: Condition) -> str:
        if condition.emit is None:
            return f"{self.const(condition.test)}(e, n)"
        return condition.emit(self)


def compile_test(condition: Condition) -> Test:
    """One generated function for the whole tree: no call per node when matching.

    Falls back to the closures if the tree is too deep for the Python compiler.
    """
    codegen = _Codegen()
    try:
        source = f"def _test(e, n):\n    return {codegen.expr(condition)}\n"
        exec(compile(source, "<popcorn rule>", "exec"), codegen.namespace)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return condition.test
    test: Test = codegen.namespace["_test"]
    return test


def _always(_event: Event, _now: datetime) -> bool:
    return True


ALWAYS: Final = Condition(
    text="always", kind="true", test=_always, check=lambda e, n: Check("always", True, "true"),
    cost=0, emit=lambda cg: "True",
)  # fmt: skip


def _all_test(tests: Sequence[Test]) -> Test:
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda e, n: a(e, n) and b(e, n)
    if len(tests) == 3:
        a, b, c = tests
        return lambda e, n: a(e, n) and b(e, n) and c(e, n)

    def test_all(e: Event, n: datetime) -> bool:
        for t in tests:  # noqa: SIM110 (a loop is faster than all() over a generator)
            if not t(e, n):
                return False
        return True

    return test_all


def _any_test(tests: Sequence[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda e, n: a(e, n) or b(e, n)

    def test_any(e: Event, n: datetime) -> bool:
        for t in tests:  # noqa: SIM110 (a loop is faster than any() over a generator)
            if t(e, n):
                return True
        return False

    return test_any


def all_of(children: Sequence[Condition], line: int | None = None) -> Condition:
    """Every child holds; nested `all` groups are flattened."""
    flat: list[Condition] = []
    for child in children:
        if child.kind == "all":
            flat.extend(child.children)
        elif child.kind != "true":
            flat.append(child)
    if not flat:
        return ALWAYS
    if len(flat) == 1:
        return flat[0]
    # Cheap tests first; the explanation keeps the order the author wrote.
    ordered = sorted(flat, key=lambda c: c.cost)
    test = _all_test([c.test for c in ordered])
    checks = [c.check for c in flat]

    def check(e: Event, n: datetime) -> Check:
        results = tuple(c(e, n) for c in checks)
        return Check("all of:", all(r.passed for r in results), "all", None, line, results)

    return Condition("all of", "all", test, check, line, sum(c.cost for c in flat), None,
                     tuple(flat), lambda cg: _join_source(cg, ordered, " and "))  # fmt: skip


def any_of(children: Sequence[Condition], line: int | None = None) -> Condition:
    """At least one child holds."""
    ordered = sorted(children, key=lambda c: c.cost)
    test = _any_test([c.test for c in ordered])
    checks = [c.check for c in children]

    def check(e: Event, n: datetime) -> Check:
        results = tuple(c(e, n) for c in checks)
        return Check("any of:", any(r.passed for r in results), "any", None, line, results)

    return Condition("any of", "any", test, check, line, sum(c.cost for c in children), None,
                     tuple(children), lambda cg: _join_source(cg, ordered, " or "))  # fmt: skip


def not_(child: Condition, line: int | None = None) -> Condition:
    """The child does not hold."""
    inner = child.test
    inner_check = child.check
    text = f"not {child.text}"

    def check(e: Event, n: datetime) -> Check:
        result = inner_check(e, n)
        return Check(text, not result.passed, "not", None, line, (result,))

    return Condition(text, "not", lambda e, n: not inner(e, n), check, line, child.cost + 1,
                     None, (child,), lambda cg: f"(not {cg.expr(child)})")  # fmt: skip


def _join_source(cg: _Codegen, children: Sequence[Condition], joiner: str) -> str:
    return "(" + joiner.join(cg.expr(c) for c in children) + ")"


# --- leaf operators ---------------------------------------------------------------


def getter(name: str) -> Callable[[Event], Any]:
    if name in ("id", "type", "source", "time"):
        return lambda e: getattr(e, name)
    if name in ("subject", "datacontenttype", "dataschema"):
        return lambda e: MISSING if (v := getattr(e, name)) is None else v
    if name == "labels":
        return lambda e: e.labels
    if name == "data":
        return lambda e: e.data
    head, _, rest = name.partition(".")
    if head == "labels":
        return lambda e: e.labels.get(rest, MISSING)
    parts = rest.split(".")
    if len(parts) == 1:
        return lambda e: e.data.get(rest, MISSING)
    return lambda e: resolve_path(e.data, parts)


def same_value(actual: Any, expected: Any) -> bool:
    """JSON equality: booleans are not numbers, null equals only null."""
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, int | float):
        return actual.__class__ in (int, float) and actual == expected
    return bool(actual == expected)


def _number(value: Any) -> float | None:
    if value.__class__ in (int, float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_time(value, "")
        except EventFormatError:
            return None
    return None


def ordering(op: str, operand: Any) -> Callable[[Any, datetime], bool]:
    compare: Callable[[Any, Any], bool] = {
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
    }[op]
    if isinstance(operand, datetime):

        def by_time(actual: Any, _now: datetime) -> bool:
            when = as_time(actual)
            return when is not None and compare(when, operand)

        return by_time
    if isinstance(operand, str):
        return lambda actual, _now: isinstance(actual, str) and compare(actual, operand)
    number = operand

    def by_number(actual: Any, _now: datetime) -> bool:
        value = _number(actual)
        return value is not None and compare(value, number)

    return by_number


def contains_test(operand: Any) -> Callable[[Any, datetime], bool]:
    def contains(actual: Any, _now: datetime) -> bool:
        if isinstance(actual, str):
            return isinstance(operand, str) and operand in actual
        if isinstance(actual, list):
            return any(same_value(x, operand) for x in actual)
        if isinstance(actual, dict):
            return isinstance(operand, str) and operand in actual
        return False

    return contains


def age_test(seconds: float, *, older: bool) -> Callable[[Any, datetime], bool]:
    def age(actual: Any, now: datetime) -> bool:
        when = as_time(actual)
        if when is None:
            return False
        elapsed = (now - when).total_seconds()
        return elapsed > seconds if older else elapsed < seconds

    return age


# The last conversion per zone: the rules tested against one event share it.
_LAST_LOCAL: dict[ZoneInfo, tuple[datetime, int, int]] = {}


def _local_clock(when: datetime, tz: ZoneInfo) -> tuple[int, int]:
    """Minute of the day and weekday of `when` in `tz`."""
    last = _LAST_LOCAL.get(tz)
    if last is not None and last[0] is when:
        return last[1], last[2]
    local = when.astimezone(tz)
    minute, day = local.hour * 60 + local.minute, local.weekday()
    _LAST_LOCAL[tz] = (when, minute, day)
    return minute, day


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: int
    end: int
    tz: ZoneInfo
    days: frozenset[int]

    def contains(self, when: datetime) -> bool:
        minute, day = _local_clock(when, self.tz)
        if self.start < self.end:
            inside = self.start <= minute < self.end
        else:
            inside = minute >= self.start or minute < self.end
            if minute < self.end:
                day = (day - 1) % 7
        return inside and day in self.days


def leaf(
    name: str,
    op: str,
    pred: Callable[[Any, datetime], bool],
    text: str,
    line: int | None,
    cost: int,
    index: tuple[str, frozenset[str]] | None,
    fast: tuple[str, Any] | None = None,
) -> Condition:
    get = getter(name)
    head, _, rest = name.partition(".")
    test: Test
    # The getter inlined where it is a plain lookup: one call less per test.
    if head == "labels" and rest:
        test = lambda e, n: pred(e.labels.get(rest, MISSING), n)  # noqa: E731
    elif head == "data" and rest and "." not in rest:
        test = lambda e, n: pred(e.data.get(rest, MISSING), n)  # noqa: E731
    else:
        test = lambda e, n: pred(get(e), n)  # noqa: E731
    if head == "labels" and rest and index is not None and op in ("eq", "in"):
        # Labels are always strings: a direct lookup gives the same answer, faster.
        values = index[1]
        if len(values) == 1:
            (only,) = values
            test = lambda e, n: e.labels.get(rest) == only  # noqa: E731
        else:
            test = lambda e, n: e.labels.get(rest) in values  # noqa: E731
        cost = 1

    def check(e: Event, n: datetime) -> Check:
        actual = get(e)
        return Check(text, pred(actual, n), "leaf", show_value(actual), line)

    def emit(cg: _Codegen) -> str:
        return _leaf_source(cg, name, get, pred, fast)

    return Condition(text, "leaf", test, check, line, cost, index, (), emit)


_COMPARE: Final = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _leaf_source(
    cg: _Codegen,
    name: str,
    get: Callable[[Event], Any],
    pred: Callable[[Any, datetime], bool],
    fast: tuple[str, Any] | None,
) -> str:
    """One leaf as an expression, inlining the common tests; the rest calls `pred`."""
    head, _, rest = name.partition(".")
    label = cg.const(rest) if head == "labels" and rest else None
    if label is not None:
        value = f"e.labels.get({label}, MISSING)"
    elif head == "data" and rest and "." not in rest:
        value = f"e.data.get({cg.const(rest)}, MISSING)"
    elif name in ("id", "type", "source", "time"):
        value = f"e.{name}"
    else:
        value = f"{cg.const(get)}(e)"
    generic = f"{cg.const(pred)}({value}, n)"
    if fast is None:
        return generic
    kind, arg = fast
    t = cg.temp()
    c = cg.const(arg)
    is_str = f"isinstance(({t} := {value}), str)"
    if label is not None:
        # Labels are strings or absent (None from .get): no type test needed.
        is_str = f"({t} := e.labels.get({label})) is not None"
    if kind == "eq":
        return f"({value} == {c})"
    if kind == "ne":
        return f"({value} != {c})"
    if kind == "in":
        return f"(e.labels.get({label}) in {c})" if label else f"({is_str} and {t} in {c})"
    if kind == "not_in":
        if label:
            return f"(e.labels.get({label}) not in {c})"
        return f"(not ({is_str} and {t} in {c}))"
    if kind == "search":
        return f"({is_str} and {c}({t}) is not None)"
    if kind == "prefix":
        return f"({is_str} and {t}.startswith({c}))"
    if kind == "suffix":
        return f"({is_str} and {t}.endswith({c}))"
    if kind == "exists":
        if label:
            return f"({label} {'in' if arg else 'not in'} e.labels)"
        return f"({value} {'is not' if arg else 'is'} MISSING)"
    if kind in _COMPARE:
        return f"({t} {_COMPARE[kind]} {c} if ({t} := {value}).__class__ in _NUMS else {generic})"
    return generic
