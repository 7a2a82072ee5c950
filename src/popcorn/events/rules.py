"""Rules: which events deserve which actions.

A rule is YAML. A file holds one rule, a list of rules, or several YAML
documents; `load_rules` reads a file or a directory of ``*.yaml``/``*.yml``::

    name: disk-full-page
    description: Page storage on-call when a cache disk fills up.
    events: [alertmanager.alert.firing]       # glob patterns on the event type
    priority: 10                              # higher runs first (default 0)
    mode: enforce                             # enforce | monitor | off
    stop: false                               # true: skip lower-priority rules (enforce only)
    conditions:
      labels.alertname: DiskFull              # a plain value means eq
      labels.severity: [critical, page]       # a list means in
      data.annotations.summary: {regex: "(?i)cache"}
      labels.used_pct: {ge: 90, lt: 101}      # several operators: all must hold
      any:
        - labels.team: storage
        - labels.service: {prefix: "oca-"}
      not: {labels.env: {glob: "staging*"}}
      time: {time_of_day: {between: ["08:00", "20:00"], tz: Europe/Amsterdam,
                           days: [mon-fri]}}
    actions:
      - type: runbook                         # webhook | runbook | job | emit | incident
        params: {runbook: disk-cleanup, device: "{{ labels.instance }}"}
    throttle: {key: "{{ labels.instance }}", window: 10m}   # act once per key per window
    dedupe: {key: "{{ labels.alertname }}/{{ labels.instance }}", window: 1h}

Conditions are a mapping (every entry must hold) or a list of mappings (every
item must hold); ``all``, ``any`` and ``not`` nest. A key is a field: ``id``,
``type``, ``source``, ``subject``, ``time``, ``labels.<name>`` (the rest of the
key is the label name, dots included) or ``data.<path>`` (dotted keys and list
indexes). Its value is a plain value (eq), a list (in), or a mapping of
operators:

===================  =============================================================
eq, ne               equal / not equal (labels compare as text: ``{eq: 503}`` matches "503")
lt, le, gt, ge       order; a numeric operand compares numbers and numeric strings
in, not_in           one of / none of a list
contains             substring of a string, element of a list, key of an object
prefix, suffix       starts / ends with a string (or any string of a list)
regex                ``re.search`` anywhere in a string (anchor with ^ and $)
glob                 shell-style pattern over the whole string
exists               true: the field is present (even if null); false: absent
time_of_day          ``{between: [HH:MM, HH:MM], tz: Area/City, days: [mon-fri, sun]}``;
                     a window past midnight belongs to the day it starts on
older_than           the time field is older than a duration (``90s``, ``10m``, ``1h30m``)
newer_than           the time field is newer than a duration, relative to now
===================  =============================================================

A missing field fails every test except ``ne``, ``not_in`` and ``exists: false``.
Throttle lets a rule act at most once per key per window (the key defaults to
the rule itself); dedupe drops repeats of the same key within the window (the
key defaults to the event id, so re-deliveries are ignored). In monitor mode a
rule matches and is reported, but callers must not act (`Match.act`); off
rules never match.

Rules are compiled once, at load: every condition becomes a closure, and
`RuleSet` turns each rule's tree into one generated Python function (values
are bound as constants, never pasted into source), so matching never walks
YAML. `RuleSet` indexes rules by event type and by one equality test on a
field (the field with the most distinct values), so an event is only tested
against the few rules that can match it; `RuleSet.explain` tells, for every
rule, why it did or did not match. Errors in a rule raise `RuleSyntaxError`
with the file, line and reason.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo

import yaml

from popcorn.events.formats import MISSING, Event, EventFormatError, parse_time, resolve_path
from popcorn.events.templating import (
    CompiledParams,
    Template,
    TemplateError,
    compile_params,
    event_context,
)

Mode = Literal["enforce", "monitor", "off"]
MODES: Final = ("enforce", "monitor", "off")
ACTION_TYPES: Final = ("webhook", "runbook", "job", "emit", "incident")
# The parameter each action type cannot do without.
REQUIRED_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "webhook": ("url",),
    "runbook": ("runbook",),
    "job": ("job",),
    "emit": ("type",),
    "incident": ("title",),
}
OPERATORS: Final = (
    "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "prefix", "suffix",
    "regex", "glob", "exists", "time_of_day", "older_than", "newer_than",
)  # fmt: skip
RULE_KEYS: Final = (
    "name", "description", "events", "conditions", "actions", "throttle", "dedupe",
    "mode", "priority", "stop",
)  # fmt: skip
_TOP_FIELDS: Final = frozenset(
    ("id", "type", "source", "subject", "time", "datacontenttype", "dataschema", "labels", "data")
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CLOCK = re.compile(r"([01]\d|2[0-4]):([0-5]\d)")
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS_FULL: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES: Final = {name: i for names in (_DAYS, _DAYS_FULL) for i, name in enumerate(names)}
_SCALAR_TAGS: Final = {
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
}
_MAX_NODES: Final = 200_000
_MAX_DEPTH: Final = 64
_GROUP_CACHE_SIZE: Final = 4096

Test = Callable[[Event, datetime], bool]


class RuleSyntaxError(ValueError):
    """A rule that cannot be loaded: file, line (1-based, when known) and reason."""

    def __init__(
        self, reason: str, *, file: str = "<string>", line: int | None = None, path: str = ""
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.path = path
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {path + ': ' if path else ''}{reason}")


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


def _show(value: Any) -> str:
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


def _getter(name: str) -> Callable[[Event], Any]:
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


def _same(actual: Any, expected: Any) -> bool:
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


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_time(value, "")
        except EventFormatError:
            return None
    return None


def _ordering(op: str, operand: Any) -> Callable[[Any, datetime], bool]:
    compare: Callable[[Any, Any], bool] = {
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
    }[op]
    if isinstance(operand, datetime):

        def by_time(actual: Any, _now: datetime) -> bool:
            when = _as_time(actual)
            return when is not None and compare(when, operand)

        return by_time
    if isinstance(operand, str):
        return lambda actual, _now: isinstance(actual, str) and compare(actual, operand)
    number = operand

    def by_number(actual: Any, _now: datetime) -> bool:
        value = _number(actual)
        return value is not None and compare(value, number)

    return by_number


def _contains(operand: Any) -> Callable[[Any, datetime], bool]:
    def contains(actual: Any, _now: datetime) -> bool:
        if isinstance(actual, str):
            return isinstance(operand, str) and operand in actual
        if isinstance(actual, list):
            return any(_same(x, operand) for x in actual)
        if isinstance(actual, dict):
            return isinstance(operand, str) and operand in actual
        return False

    return contains


def _age(seconds: float, *, older: bool) -> Callable[[Any, datetime], bool]:
    def age(actual: Any, now: datetime) -> bool:
        when = _as_time(actual)
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
class _TimeWindow:
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


# --- the YAML reader --------------------------------------------------------------


# Spellings other rule engines use, to suggest Popcorn's.
_OPERATOR_ALIASES: Final = {
    "equals": "eq", "equal": "eq", "==": "eq", "=": "eq", "is": "eq", "neq": "ne",
    "not_eq": "ne", "!=": "ne", "lte": "le", "gte": "ge", "<": "lt", "<=": "le", ">": "gt",
    ">=": "ge", "nin": "not_in", "notin": "not_in", "matches": "regex", "match": "regex",
    "startswith": "prefix", "starts_with": "prefix", "endswith": "suffix",
    "ends_with": "suffix", "exist": "exists", "has": "contains", "icontains": "contains",
}  # fmt: skip


def _known(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    alias = _OPERATOR_ALIASES.get(word.lower())
    if alias in options:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Reader:
    """Builds rules from a composed YAML node tree, so errors can name lines."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.nodes = 0
        self.depth = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node | None, reason: str, path: str = "") -> RuleSyntaxError:
        line = node.start_mark.line + 1 if node is not None and node.start_mark else None
        return RuleSyntaxError(reason, file=self.file, line=line, path=path)

    def nested(self, node: yaml.Node, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise self.fail(node, f"nested more than {_MAX_DEPTH} levels deep")

    def visit(self, node: yaml.Node) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise self.fail(node, "document too large (too many nodes or aliases)")
        if node.tag.startswith("!") or (
            isinstance(node, yaml.ScalarNode)
            and node.tag not in _SCALAR_TAGS
            and node.tag != "tag:yaml.org,2002:str"
            and node.tag != "tag:yaml.org,2002:timestamp"
        ):
            raise self.fail(node, f"unsupported YAML tag {node.tag}")

    @staticmethod
    def line(node: yaml.Node) -> int | None:
        return node.start_mark.line + 1 if node.start_mark else None

    def pairs(
        self, node: yaml.Node, path: str, what: str
    ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        self.visit(node)
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping", path)
        seen: dict[str, int | None] = {}
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            self.visit(key_node)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":null"):
                raise self.fail(key_node, "keys must be plain strings", path)
            key = str(key_node.value)
            if key in seen:
                raise self.fail(
                    key_node, f"duplicate key {key!r} (first on line {seen[key]})", path
                )
            seen[key] = self.line(key_node)
            out.append((key, key_node, value_node))
        return out

    def scalar(self, node: yaml.Node, path: str) -> Any:
        """A scalar as JSON would have it (timestamps stay strings)."""
        self.visit(node)
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "must be a single value", path)
        kind = _SCALAR_TAGS.get(node.tag)
        if kind is None:
            return str(node.value)
        value = self.constructor.construct_object(node)
        if kind == "float" and value != value:
            raise self.fail(node, "NaN is not a usable value", path)
        return value

    def value(self, node: yaml.Node, path: str, depth: int = 0) -> Any:
        """Any JSON-like value (action parameters)."""
        self.visit(node)
        self.nested(node, depth)
        if isinstance(node, yaml.MappingNode):
            pairs = self.pairs(node, path, path)
            return {k: self.value(v, f"{path}.{k}", depth + 1) for k, _, v in pairs}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node.value)]
        return self.scalar(node, path)

    def text(self, node: yaml.Node, path: str, *, empty: bool = False) -> str:
        self.visit(node)
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            raise self.fail(node, "must be a string", path)
        if not node.value and not empty:
            raise self.fail(node, "must not be empty", path)
        return str(node.value)

    def texts(self, node: yaml.Node, path: str) -> list[str]:
        self.visit(node)
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                raise self.fail(node, "must not be an empty list", path)
            return [self.text(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return [self.text(node, path)]

    def duration(self, node: yaml.Node, path: str) -> float:
        self.visit(node)
        raw = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        seconds: float | None = None
        if _DURATION.fullmatch(raw):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(raw))
        elif _SCALAR_TAGS.get(node.tag) in ("int", "float"):
            seconds = float(self.scalar(node, path))
        if seconds is None or not seconds > 0 or seconds == float("inf"):
            raise self.fail(
                node,
                f"not a positive duration: {raw!r} (use seconds or e.g. 90s, 10m, 1h30m)",
                path,
            )
        return seconds

    # --- conditions ---

    def condition(self, node: yaml.Node, path: str) -> Condition:
        self.depth += 1
        try:
            self.nested(node, self.depth)
            return self._condition(node, path)
        finally:
            self.depth -= 1

    def _condition(self, node: yaml.Node, path: str) -> Condition:
        self.visit(node)
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return ALWAYS
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                raise self.fail(node, "an empty list of conditions", path)
            items = [self.condition(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return all_of(items, self.line(node))
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node, "a condition must be a mapping such as {labels.severity: critical} "
                "or a list of them", path
            )  # fmt: skip
        pairs = self.pairs(node, path, "a condition")
        if not pairs:
            raise self.fail(node, "an empty condition", path)
        parts = [self.entry(key, key_node, value, path) for key, key_node, value in pairs]
        return all_of(parts, self.line(node))

    def group(self, node: yaml.Node, path: str) -> list[Condition]:
        self.visit(node)
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                raise self.fail(node, "must list at least one condition", path)
            return [self.condition(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            pairs = self.pairs(node, path, "a condition group")
            if not pairs:
                raise self.fail(node, "must list at least one condition", path)
            return [self.entry(key, key_node, value, path) for key, key_node, value in pairs]
        raise self.fail(node, "must be a list or mapping of conditions", path)

    def entry(self, key: str, key_node: yaml.Node, node: yaml.Node, path: str) -> Condition:
        sub = f"{path}.{key}" if path else key
        line = self.line(key_node)
        if key == "all":
            return all_of(self.group(node, sub), line)
        if key == "any":
            return any_of(self.group(node, sub), line)
        if key == "not":
            return not_(self.condition(node, sub), line)
        name = self.field(key, key_node, path)
        self.visit(node)
        if isinstance(node, yaml.MappingNode):
            ops = self.pairs(node, sub, "operators")
            if not ops:
                raise self.fail(node, "no operator given", sub)
            return all_of(
                [
                    self.operator(name, op, op_node, f"{sub}.{op}", op_key)
                    for op, op_key, op_node in ops
                ],
                line,
            )
        if isinstance(node, yaml.SequenceNode):
            return self.operator(name, "in", node, sub, key_node)
        return self.operator(name, "eq", node, sub, key_node)

    def field(self, key: str, node: yaml.Node, path: str) -> str:
        head, dot, rest = key.partition(".")
        if key in _TOP_FIELDS or (dot and rest and head in ("labels", "data")):
            if head == "data" and rest and "" in rest.split("."):
                raise self.fail(node, f"empty segment in field path {key!r}", path)
            return key
        if key in OPERATORS:
            raise self.fail(node, f"operator {key!r} needs a field, e.g. {{labels.severity: "
                            f"{{{key}: ...}}}}", path)  # fmt: skip
        hint = _known(key, ("all", "any", "not", *sorted(_TOP_FIELDS)))
        if not hint and not dot:
            hint = f" (did you mean 'labels.{key}' or 'data.{key}'?)"
        raise self.fail(
            node, f"unknown field {key!r}{hint}; fields are id, type, source, subject, time, "
            "labels.<name> and data.<path>", path
        )  # fmt: skip

    def operand_texts(self, node: yaml.Node, path: str, labels: bool) -> list[Any]:
        self.visit(node)
        items = node.value if isinstance(node, yaml.SequenceNode) else None
        if items is None:
            raise self.fail(node, "must be a list", path)
        return [self.operand(item, f"{path}[{i}]", labels) for i, item in enumerate(items)]

    def operand(self, node: yaml.Node, path: str, labels: bool) -> Any:
        """A comparison value; label operands keep their literal text."""
        value = self.scalar(node, path)
        if labels:
            if value is None:
                raise self.fail(node, "labels are strings; null is not a label value "
                                "(use exists: false)", path)  # fmt: skip
            assert isinstance(node, yaml.ScalarNode)
            return str(node.value)
        return value

    def operator(
        self, name: str, op: str, node: yaml.Node, path: str, key_node: yaml.Node
    ) -> Condition:
        if op not in OPERATORS:
            raise self.fail(key_node, f"unknown operator {op!r}{_known(op, OPERATORS)}; "
                            f"operators are {', '.join(OPERATORS)}", path)  # fmt: skip
        labels = name.startswith("labels.")
        line = self.line(key_node)
        index: tuple[str, frozenset[str]] | None = None
        pred: Callable[[Any, datetime], bool]
        shown: Any
        fast: tuple[str, Any] | None = None  # what code generation can inline
        cost = 2
        if op in ("eq", "ne"):
            operand = self.operand(node, path, labels)
            shown = operand
            if op == "eq":
                pred = lambda a, _n: _same(a, operand)  # noqa: E731
                if isinstance(operand, str) and name != "time":
                    index = (name, frozenset((operand,)))
            else:
                pred = lambda a, _n: not _same(a, operand)  # noqa: E731
            if isinstance(operand, str):
                fast = (op, operand)
        elif op in ("in", "not_in"):
            values = self.operand_texts(node, path, labels)
            shown = values
            strings = all(isinstance(v, str) for v in values)
            member: Callable[[Any], bool]
            if strings:
                fs = frozenset(values)
                member = lambda a: isinstance(a, str) and a in fs  # noqa: E731
                if op == "in" and name != "time":
                    index = (name, fs)
            else:
                member = lambda a: any(_same(a, v) for v in values)  # noqa: E731
            negate = op == "not_in"
            pred = lambda a, _n: member(a) is not negate  # noqa: E731
            if strings:
                fast = (op, fs)
        elif op in ("lt", "le", "gt", "ge"):
            value = self.scalar(node, path)
            if name == "time" or isinstance(value, datetime):
                if not isinstance(value, str):
                    raise self.fail(node, "needs an RFC 3339 timestamp", path)
                try:
                    value = parse_time(value, path)
                except EventFormatError as exc:
                    raise self.fail(node, exc.reason, path) from None
            elif value is None or isinstance(value, bool):
                raise self.fail(node, "needs a number or a string", path)
            shown = value
            pred = _ordering(op, value)
            if isinstance(value, int | float):
                fast = (op, value)
        elif op == "contains":
            shown = self.operand(node, path, labels)
            pred = _contains(shown)
        elif op in ("prefix", "suffix"):
            affixes = tuple(self.texts(node, path))
            shown = affixes[0] if len(affixes) == 1 else list(affixes)
            if op == "prefix":
                pred = lambda a, _n: isinstance(a, str) and a.startswith(affixes)  # noqa: E731
            else:
                pred = lambda a, _n: isinstance(a, str) and a.endswith(affixes)  # noqa: E731
            fast = (op, affixes)
        elif op in ("regex", "glob"):
            patterns = self.texts(node, path)
            shown = patterns[0] if len(patterns) == 1 else patterns
            if op == "regex":
                source = (
                    "|".join(f"(?:{p})" for p in patterns) if len(patterns) > 1 else patterns[0]
                )
                for pattern in patterns:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise self.fail(node, f"invalid regular expression {pattern!r}: {exc}",
                                        path) from None  # fmt: skip
                search = re.compile(source).search
            else:
                search = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
            pred = lambda a, _n: isinstance(a, str) and search(a) is not None  # noqa: E731
            fast = ("search", search)
            cost = 3
        elif op == "exists":
            flag = self.scalar(node, path)
            if not isinstance(flag, bool):
                raise self.fail(node, "exists takes true or false", path)
            shown = flag
            pred = lambda a, _n: (a is not MISSING) is flag  # noqa: E731
            fast = (op, flag)
        elif op == "time_of_day":
            window = self.time_window(node, path)
            shown = None
            pred = lambda a, _n: (t := _as_time(a)) is not None and window.contains(t)  # noqa: E731
            cost = 3
        else:  # older_than, newer_than
            seconds = self.duration(node, path)
            shown = str(node.value) if isinstance(node, yaml.ScalarNode) else seconds
            pred = _age(seconds, older=op == "older_than")
            cost = 3
        text = f"{name} {op}" + (f" {_show(shown)}" if shown is not None else "")
        if op == "time_of_day":
            text = f"{name} {op} {self.window_text(node)}"
        return _leaf(name, op, pred, text, line, cost, index, fast)

    def time_window(self, node: yaml.Node, path: str) -> _TimeWindow:
        pairs = {k: (kn, v) for k, kn, v in self.pairs(node, path, "time_of_day")}
        for key, (key_node, _) in pairs.items():
            if key not in ("between", "tz", "days"):
                raise self.fail(key_node, f"unknown time_of_day key {key!r}; use between, tz "
                                "and days", path)  # fmt: skip
        if "between" not in pairs:
            raise self.fail(node, "time_of_day needs between: [HH:MM, HH:MM]", path)
        between = pairs["between"][1]
        self.visit(between)
        if not isinstance(between, yaml.SequenceNode) or len(between.value) != 2:
            raise self.fail(between, 'between takes two times, e.g. ["09:00", "17:00"]', path)
        minutes = []
        for item in between.value:
            raw = str(item.value) if isinstance(item, yaml.ScalarNode) else ""
            m = _CLOCK.fullmatch(raw)
            if m is None or (m.group(1) == "24" and m.group(2) != "00"):
                raise self.fail(item, f"not a time of day (HH:MM): {raw!r}", path)
            minutes.append(int(m.group(1)) * 60 + int(m.group(2)))
        start, end = minutes
        if start == 24 * 60:
            raise self.fail(between, "a window cannot start at 24:00", path)
        if start == end % (24 * 60):
            raise self.fail(between, "the window is empty (start equals end)", path)
        tz_name = "UTC"
        if "tz" in pairs:
            tz_name = self.text(pairs["tz"][1], f"{path}.tz")
        try:
            tz = ZoneInfo(tz_name)
        except (ValueError, KeyError, OSError):
            raise self.fail(pairs["tz"][1], f"unknown time zone {tz_name!r}", path) from None
        days = frozenset(range(7))
        if "days" in pairs:
            days = self.days(pairs["days"][1], f"{path}.days")
        return _TimeWindow(start, end % (24 * 60) if end == 24 * 60 else end, tz, days)

    def window_text(self, node: yaml.Node) -> str:
        pairs = {k: v for k, _, v in self.pairs(node, "", "time_of_day")}
        between = pairs["between"]
        assert isinstance(between, yaml.SequenceNode)
        text = "-".join(str(item.value) for item in between.value)
        if "tz" in pairs:
            text += f" {pairs['tz'].value}"
        if "days" in pairs:
            days = pairs["days"]
            items = days.value if isinstance(days, yaml.SequenceNode) else [days]
            text += " " + ",".join(str(i.value) for i in items)
        return text

    def days(self, node: yaml.Node, path: str) -> frozenset[int]:
        out: set[int] = set()
        for text in self.texts(node, path):
            first, dash, last = text.lower().partition("-")
            if first not in _DAY_NAMES or (dash and last not in _DAY_NAMES):
                raise self.fail(node, f"not a weekday or range of weekdays: {text!r} "
                                "(use mon..sun, e.g. mon-fri)", path)  # fmt: skip
            a = _DAY_NAMES[first]
            b = _DAY_NAMES[last] if dash else a
            out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        return frozenset(out)


def _leaf(
    name: str,
    op: str,
    pred: Callable[[Any, datetime], bool],
    text: str,
    line: int | None,
    cost: int,
    index: tuple[str, frozenset[str]] | None,
    fast: tuple[str, Any] | None = None,
) -> Condition:
    get = _getter(name)
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
        return Check(text, pred(actual, n), "leaf", _show(actual), line)

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


# --- rules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Throttle or dedupe: a key template and a window in seconds."""

    key: Template
    seconds: float


@dataclass(frozen=True, slots=True)
class Action:
    """One action of a rule; `params` are compiled templates."""

    type: str
    params: CompiledParams
    line: int | None = None


@dataclass(frozen=True, slots=True)
class RenderedAction:
    """An action with its parameters rendered for one event, ready to run."""

    type: str
    params: Any
    rule: str


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule. `condition.test` is what matching runs; nothing is re-parsed."""

    name: str
    events: tuple[str, ...]
    condition: Condition = field(repr=False)
    description: str = field(default="", repr=False)
    actions: tuple[Action, ...] = field(default=(), repr=False)
    throttle: Window | None = None
    dedupe: Window | None = None
    mode: Mode = "enforce"
    priority: int = 0
    stop: bool = False
    file: str = "<string>"
    line: int | None = None
    _type_patterns: tuple[re.Pattern[str], ...] = field(default=(), repr=False)

    def matches_type(self, event_type: str) -> bool:
        return any(p.match(event_type) for p in self._type_patterns)

    def test(self, event: Event, now: datetime | None = None) -> bool:
        """Type and conditions hold (mode, throttle and dedupe aside)."""
        return self.matches_type(event.type) and self.condition.test(event, _now(now))

    def check(self, event: Event, now: datetime | None = None) -> Check:
        """The condition tree evaluated against the event, for explanations."""
        return self.condition.check(event, _now(now))

    def render_actions(self, context: dict[str, Any]) -> list[RenderedAction]:
        """Every action's parameters rendered; raises `TemplateError` naming the param."""
        return [RenderedAction(a.type, a.params.render(context), self.name) for a in self.actions]


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now


def _type_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class _RuleBuilder(_Reader):
    def rule(self, node: yaml.Node, path: str) -> Rule:
        pairs = self.pairs(node, path, "a rule")
        entries = {key: (key_node, value) for key, key_node, value in pairs}
        for key, (key_node, _) in entries.items():
            if key not in RULE_KEYS:
                raise self.fail(key_node, f"unknown rule key {key!r}{_known(key, RULE_KEYS)}; "
                                f"rule keys are {', '.join(RULE_KEYS)}", path)  # fmt: skip
        for required in ("name", "events"):
            if required not in entries:
                raise self.fail(node, f"a rule needs {required!r}", path)
        name = self.text(entries["name"][1], "name")
        if not _NAME.fullmatch(name):
            raise self.fail(entries["name"][1], "a rule name is letters, digits and _.:/- "
                            "(at most 200 characters)", "name")  # fmt: skip
        events = tuple(self.texts(entries["events"][1], "events"))
        description = ""
        if "description" in entries:
            description = self.text(entries["description"][1], "description", empty=True)
        condition = ALWAYS
        if "conditions" in entries:
            condition = self.condition(entries["conditions"][1], "conditions")
        mode: Mode = "enforce"
        if "mode" in entries:
            value = self.text(entries["mode"][1], "mode")
            if value not in MODES:
                raise self.fail(entries["mode"][1], f"mode must be one of {', '.join(MODES)}",
                                "mode")  # fmt: skip
            mode = value  # type: ignore[assignment]
        priority = 0
        if "priority" in entries:
            value = self.scalar(entries["priority"][1], "priority")
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.fail(entries["priority"][1], "priority must be an integer", "priority")
            priority = value
        stop = False
        if "stop" in entries:
            value = self.scalar(entries["stop"][1], "stop")
            if not isinstance(value, bool):
                raise self.fail(entries["stop"][1], "stop must be true or false", "stop")
            stop = value
        actions: tuple[Action, ...] = ()
        if "actions" in entries:
            actions = self.actions(entries["actions"][1])
        throttle = dedupe = None
        if "throttle" in entries:
            throttle = self.window(entries["throttle"][1], "throttle", "")
        if "dedupe" in entries:
            dedupe = self.window(entries["dedupe"][1], "dedupe", "{{ id }}")
        return Rule(
            name=name,
            events=events,
            condition=condition,
            description=description,
            actions=actions,
            throttle=throttle,
            dedupe=dedupe,
            mode=mode,
            priority=priority,
            stop=stop,
            file=self.file,
            line=self.line(node),
            _type_patterns=tuple(_type_pattern(p) for p in events),
        )

    def actions(self, node: yaml.Node) -> tuple[Action, ...]:
        self.visit(node)
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, "actions must be a list", "actions")
        out = []
        for i, item in enumerate(node.value):
            path = f"actions[{i}]"
            entries = {k: (kn, v) for k, kn, v in self.pairs(item, path, "an action")}
            for key, (key_node, _) in entries.items():
                if key not in ("type", "params"):
                    raise self.fail(key_node, f"unknown action key {key!r}; use type and "
                                    "params", path)  # fmt: skip
            if "type" not in entries:
                raise self.fail(item, "an action needs a type", path)
            kind = self.text(entries["type"][1], f"{path}.type")
            if kind not in ACTION_TYPES:
                raise self.fail(entries["type"][1], f"unknown action type {kind!r}"
                                f"{_known(kind, ACTION_TYPES)}; types are "
                                f"{', '.join(ACTION_TYPES)}", path)  # fmt: skip
            params_node = entries.get("params", (None, None))[1]
            params: Any = {}
            if params_node is not None:
                params = self.value(params_node, f"{path}.params")
                if not isinstance(params, dict):
                    raise self.fail(params_node, "params must be a mapping", f"{path}.params")
            for required in REQUIRED_PARAMS[kind]:
                if required not in params:
                    raise self.fail(params_node or item, f"a {kind} action needs params.{required}",
                                    path)  # fmt: skip
            try:
                compiled = compile_params(params, f"{path}.params")
            except TemplateError as exc:
                assert params_node is not None
                raise self.fail(_locate(params_node, exc.location), exc.reason, exc.path) from None
            out.append(Action(kind, compiled, self.line(item)))
        return tuple(out)

    def window(self, node: yaml.Node, path: str, default_key: str) -> Window:
        self.visit(node)
        key_source = default_key
        key_node: yaml.Node = node
        if isinstance(node, yaml.MappingNode):
            entries = {k: (kn, v) for k, kn, v in self.pairs(node, path, path)}
            for key, (kn, _) in entries.items():
                if key not in ("key", "window"):
                    raise self.fail(kn, f"unknown {path} key {key!r}; use key and window", path)
            if "window" not in entries:
                raise self.fail(node, f"{path} needs a window", path)
            seconds = self.duration(entries["window"][1], f"{path}.window")
            if "key" in entries:
                key_node = entries["key"][1]
                key_source = self.text(key_node, f"{path}.key")
        else:
            seconds = self.duration(node, path)
        try:
            template = Template(key_source, f"{path}.key")
        except TemplateError as exc:
            raise self.fail(key_node, exc.reason, exc.path) from None
        return Window(template, seconds)


def _locate(node: yaml.Node, location: tuple[str | int, ...]) -> yaml.Node:
    for step in location:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            node = next((v for k, v in node.value if str(k.value) == step), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            node = node.value[step]
    return node


def parse_rules(text: str, file: str = "<string>") -> list[Rule]:
    """Every rule in a YAML text (one rule, a list of rules, or several documents)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    builder = _RuleBuilder(file)
    rules: list[Rule] = []
    try:
        documents = list(yaml.compose_all(text, Loader=loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = f"invalid YAML: {exc.problem or exc.context}"
        raise RuleSyntaxError(reason, file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise RuleSyntaxError(f"invalid YAML: {exc}", file=file) from None
    for document in documents:
        if document is None or (
            isinstance(document, yaml.ScalarNode) and document.tag.endswith(":null")
        ):
            continue
        if isinstance(document, yaml.SequenceNode):
            builder.visit(document)
            rules.extend(builder.rule(item, f"[{i}]") for i, item in enumerate(document.value))
        else:
            rules.append(builder.rule(document, ""))
    _check_unique(rules)
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    """Rules from a YAML file, or from every ``*.yaml``/``*.yml`` under a directory."""
    root = Path(path)
    files = (
        sorted(
            p
            for p in root.rglob("*")
            if p.suffix in (".yaml", ".yml")
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if root.is_dir()
        else [root]
    )
    rules: list[Rule] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RuleSyntaxError(f"not UTF-8 text: {exc.reason}", file=str(file)) from None
        rules.extend(parse_rules(text, str(file)))
    _check_unique(rules)
    return rules


def _check_unique(rules: Iterable[Rule]) -> None:
    first: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in first:
            other = first[rule.name]
            raise RuleSyntaxError(
                f"duplicate rule name {rule.name!r} (first defined at {other.file}:{other.line})",
                file=rule.file,
                line=rule.line,
            )
        first[rule.name] = rule


# --- throttle and dedupe state --------------------------------------------------------


class RateState(Protocol):
    """Remembers keys for a while, shared by everything that matches rules.

    `seen` returns True if `key` was recorded less than `window_s` seconds
    before `now` (so the caller suppresses); otherwise it records `key` at
    `now` and returns False. It must be atomic: a Redis ``SET key 1 NX PX``
    has exactly these semantics.
    """

    def seen(self, key: str, window_s: float, now: float) -> bool: ...


class MemoryRateState:
    """`RateState` for one process; bounded, oldest keys go first when full."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def seen(self, key: str, window_s: float, now: float) -> bool:
        with self._lock:
            expiry = self._expiry.get(key)
            if expiry is not None and now < expiry:
                return True
            if window_s <= 0:
                return False
            self._expiry.pop(key, None)
            if len(self._expiry) >= self._max_keys:
                self._evict(now)
            self._expiry[key] = now + window_s
            return False

    def _evict(self, now: float) -> None:
        live = {k: v for k, v in self._expiry.items() if v > now}
        if len(live) >= self._max_keys:
            drop = len(live) - self._max_keys + max(1, self._max_keys // 10)
            for key in list(live)[:drop]:
                del live[key]
        self._expiry = live

    def __len__(self) -> int:
        return len(self._expiry)


# --- matching ------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Match:
    """A rule that matched an event.

    Act on it only if `act` is true: monitor rules, throttled or deduplicated
    matches and matches whose key template failed are reported, not acted on.
    """

    rule: Rule
    event: Event
    now: datetime
    suppressed: Literal["throttle", "dedupe"] | None = None
    error: str | None = None

    @property
    def act(self) -> bool:
        return self.rule.mode == "enforce" and self.suppressed is None and self.error is None

    @property
    def explanation(self) -> list[str]:
        """Why the rule matched, one line per condition (computed on demand)."""
        head = f"event type {self.event.type!r} matches {list(self.rule.events)}"
        return [head, *self.rule.check(self.event, self.now).lines()]

    def render_actions(self) -> list[RenderedAction]:
        """The rule's actions with parameters rendered from the event."""
        context = event_context(self.event)
        context["rule"] = {"name": self.rule.name, "description": self.rule.description}
        return self.rule.render_actions(context)


@dataclass(frozen=True, slots=True, eq=False)
class RuleExplanation:
    """For one rule and one event: whether `RuleSet.match` would report it, and why."""

    rule: Rule
    matched: bool
    reason: str
    check: Check

    def lines(self) -> list[str]:
        head = f"{'MATCH' if self.matched else 'no match'}  {self.rule.name}: {self.reason}"
        return [head, *("  " + line for line in self.check.lines())]


_Entry = tuple[int, Rule, Test]


@dataclass(slots=True)
class _Group:
    """The rules that can match one event type, split for indexed lookup."""

    always: list[_Entry]
    lookups: list[tuple[Callable[[Event], Any], dict[str, list[_Entry]]]]


class RuleSet:
    """Compiled rules with indexes; `match` touches only rules that can match."""

    def __init__(self, rules: Iterable[Rule], state: RateState | None = None) -> None:
        ordered = sorted(enumerate(rules), key=lambda item: (-item[1].priority, item[0]))
        self.rules: tuple[Rule, ...] = tuple(rule for _, rule in ordered)
        _check_unique(self.rules)
        self.state: RateState = state if state is not None else MemoryRateState()
        self._groups: dict[str, _Group] = {}
        self._exact: dict[str, list[int]] = {}
        self._globs: list[tuple[re.Pattern[str], int]] = []
        self._entries: list[_Entry] = []
        self._index_field: list[tuple[str, frozenset[str]] | None] = []
        self._build()

    @classmethod
    def from_path(cls, path: str | Path, state: RateState | None = None) -> RuleSet:
        return cls(load_rules(path), state)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def _build(self) -> None:
        """Pick, per rule, the equality test on the most discriminating field."""
        active = [r for r in self.rules if r.mode != "off"]
        distinct: dict[str, set[str]] = {}
        for rule in active:
            for conj in _conjuncts(rule.condition):
                if conj.index is not None:
                    distinct.setdefault(conj.index[0], set()).update(conj.index[1])
        # Rules sharing a field spread over its distinct values: more values, fewer per bucket.
        spread = {name: len(values) for name, values in distinct.items()}
        for ordinal, rule in enumerate(active):
            conjuncts = _conjuncts(rule.condition)
            candidates = [c for c in conjuncts if c.index is not None]
            chosen = min(
                candidates,
                key=lambda c: (-spread[c.index[0]], len(c.index[1]), c.index[0]),  # type: ignore[index]
                default=None,
            )
            rest = [c for c in conjuncts if c is not chosen]
            residual = compile_test(all_of(rest) if chosen is not None else rule.condition)
            self._entries.append((ordinal, rule, residual))
            self._index_field.append(chosen.index if chosen is not None else None)
            for pattern in rule.events:
                if _has_glob(pattern):
                    self._globs.append((_type_pattern(pattern), ordinal))
                else:
                    self._exact.setdefault(pattern, []).append(ordinal)

    def _group(self, event_type: str) -> _Group:
        group = self._groups.get(event_type)
        if group is not None:
            return group
        ordinals = set(self._exact.get(event_type, ()))
        ordinals.update(o for p, o in self._globs if p.match(event_type))
        always: list[_Entry] = []
        tables: dict[str, dict[str, list[_Entry]]] = {}
        for ordinal in sorted(ordinals):
            entry = self._entries[ordinal]
            index = self._index_field[ordinal]
            if index is None:
                always.append(entry)
                continue
            table = tables.setdefault(index[0], {})
            for value in index[1]:
                table.setdefault(value, []).append(entry)
        group = _Group(always, [(_getter(name), table) for name, table in tables.items()])
        if len(self._groups) >= _GROUP_CACHE_SIZE:
            self._groups.clear()
        self._groups[event_type] = group
        return group

    def candidates(self, event: Event) -> list[Rule]:
        """The rules `match` will test for this event, in priority order."""
        return [rule for _, rule, _ in self._candidates(event)]

    def _candidates(self, event: Event) -> list[_Entry]:
        group = self._group(event.type)
        found: list[_Entry] | None = None
        for get, table in group.lookups:
            value = get(event)
            if value.__class__ is str:
                hit = table.get(value)
                if hit:
                    found = hit if found is None else found + hit
        if found is None:
            return group.always
        if not group.always and len(group.lookups) == 1:
            return found
        return sorted(group.always + found)  # ordinals are unique: rules never compared

    def match(self, event: Event, now: datetime | None = None) -> list[Match]:
        """The rules that match, in priority order, with throttle and dedupe applied."""
        when = _now(now)
        matches: list[Match] = []
        context: dict[str, Any] | None = None
        for _, rule, test in self._candidates(event):
            if not test(event, when):
                continue
            suppressed: Literal["throttle", "dedupe"] | None = None
            error = None
            if rule.dedupe is not None or rule.throttle is not None:
                if context is None:
                    context = event_context(event)
                try:
                    suppressed = self._suppressed(rule, context, when.timestamp())
                except TemplateError as exc:
                    error = str(exc)
            matches.append(Match(rule, event, when, suppressed, error))
            if rule.stop and rule.mode == "enforce":
                break
        return matches

    def _suppressed(
        self, rule: Rule, context: dict[str, Any], ts: float
    ) -> Literal["throttle", "dedupe"] | None:
        if rule.dedupe is not None:
            key = f"dedupe:{rule.name}:{rule.dedupe.key.render(context)}"
            if self.state.seen(key, rule.dedupe.seconds, ts):
                return "dedupe"
        if rule.throttle is not None:
            key = f"throttle:{rule.name}:{rule.throttle.key.render(context)}"
            if self.state.seen(key, rule.throttle.seconds, ts):
                return "throttle"
        return None

    def explain(self, event: Event, now: datetime | None = None) -> list[RuleExplanation]:
        """Every rule, in priority order: would it match this event, and if not, why.

        Throttle and dedupe state is neither read nor changed.
        """
        when = _now(now)
        out: list[RuleExplanation] = []
        stopped_by: str | None = None
        for rule in self.rules:
            check = rule.check(event, when)
            matched = False
            if rule.mode == "off":
                reason = "rule is off"
            elif not rule.matches_type(event.type):
                reason = f"event type {event.type!r} does not match {list(rule.events)}"
            elif not check.passed:
                reason = f"condition failed: {check.summary()}"
            elif stopped_by is not None:
                reason = f"skipped: rule {stopped_by!r} matched first and stops processing"
            else:
                matched = True
                reason = (
                    "matched (monitor mode: no action)" if rule.mode == "monitor" else "matched"
                )
                if rule.stop and rule.mode == "enforce":
                    stopped_by = rule.name
            out.append(RuleExplanation(rule, matched, reason, check))
        return out


def _conjuncts(condition: Condition) -> tuple[Condition, ...]:
    if condition.kind == "all":
        return condition.children
    if condition.kind == "true":
        return ()
    return (condition,)
