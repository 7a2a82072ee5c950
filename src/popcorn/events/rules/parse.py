"""Reading rules: YAML text (or files) into compiled `Rule`s, errors naming file and line.

The text is composed by `popcorn.safeyaml.compose_all`, so the platform's one
set of YAML limits (size, expanded nodes, aliases, depth) applies, and the
composed nodes keep their line numbers for every error this reader raises.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import yaml

from popcorn import safeyaml
from popcorn.events.formats import MISSING, EventFormatError, parse_time
from popcorn.events.rules.model import (
    ACTION_TYPES,
    MODES,
    REQUIRED_PARAMS,
    RULE_KEYS,
    Action,
    Mode,
    Rule,
    RuleSyntaxError,
    Window,
    type_pattern,
)
from popcorn.events.rules.operators import (
    ALWAYS,
    OPERATORS,
    Condition,
    PatternError,
    TimeWindow,
    age_test,
    all_of,
    any_of,
    as_time,
    compile_glob,
    compile_regex,
    contains_test,
    leaf,
    not_,
    ordering,
    same_value,
    show_value,
)
from popcorn.events.templating import Template, TemplateError, compile_params

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
        self.rule_name = ""  # the rule being read, once its name is known
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node | None, reason: str, path: str = "") -> RuleSyntaxError:
        line = node.start_mark.line + 1 if node is not None and node.start_mark else None
        return RuleSyntaxError(reason, file=self.file, line=line, path=path, rule=self.rule_name)

    def visit(self, node: yaml.Node) -> None:
        """Refuse tags a rule has no use for (sizes and depth are safeyaml's to check)."""
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

    def value(self, node: yaml.Node, path: str) -> Any:
        """Any JSON-like value (action parameters)."""
        self.visit(node)
        if isinstance(node, yaml.MappingNode):
            pairs = self.pairs(node, path, path)
            return {k: self.value(v, f"{path}.{k}") for k, _, v in pairs}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
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
                pred = lambda a, _n: same_value(a, operand)  # noqa: E731
                if isinstance(operand, str) and name != "time":
                    index = (name, frozenset((operand,)))
            else:
                pred = lambda a, _n: not same_value(a, operand)  # noqa: E731
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
                member = lambda a: any(same_value(a, v) for v in values)  # noqa: E731
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
            pred = ordering(op, value)
            if isinstance(value, int | float):
                fast = (op, value)
        elif op == "contains":
            shown = self.operand(node, path, labels)
            pred = contains_test(shown)
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
            try:
                search = compile_regex(patterns) if op == "regex" else compile_glob(patterns)
            except PatternError as exc:
                raise self.fail(node, str(exc), path) from None
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
            pred = lambda a, _n: (t := as_time(a)) is not None and window.contains(t)  # noqa: E731
            cost = 3
        else:  # older_than, newer_than
            seconds = self.duration(node, path)
            shown = str(node.value) if isinstance(node, yaml.ScalarNode) else seconds
            pred = age_test(seconds, older=op == "older_than")
            cost = 3
        text = f"{name} {op}" + (f" {show_value(shown)}" if shown is not None else "")
        if op == "time_of_day":
            text = f"{name} {op} {self.window_text(node)}"
        return leaf(name, op, pred, text, line, cost, index, fast)

    def time_window(self, node: yaml.Node, path: str) -> TimeWindow:
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
        return TimeWindow(start, end % (24 * 60) if end == 24 * 60 else end, tz, days)

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
        self.rule_name = ""
        name = self.text(entries["name"][1], "name")
        if not _NAME.fullmatch(name):
            raise self.fail(entries["name"][1], "a rule name is letters, digits and _.:/- "
                            "(at most 200 characters)", "name")  # fmt: skip
        self.rule_name = name
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
            _type_patterns=tuple(type_pattern(p) for p in events),
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


def _yaml_error(exc: safeyaml.YAMLLimitError, file: str) -> RuleSyntaxError:
    """The safe loader's refusal as a rule error, keeping its line."""
    line = exc.details.get("line")
    text = exc.message
    for prefix in (f"{file}:{line}: ", f"{file}: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    reason = text if "YAML" in text else f"invalid YAML: {text}"
    return RuleSyntaxError(reason, file=file, line=line if isinstance(line, int) else None)


def rule_nodes(text: str, file: str = "<string>") -> list[tuple[str, yaml.Node]]:
    """(path, composed node) of every rule in a text, in order, within safeyaml's limits."""
    try:
        documents = safeyaml.compose_all(text, source=file)
    except safeyaml.YAMLLimitError as exc:
        raise _yaml_error(exc, file) from None
    nodes: list[tuple[str, yaml.Node]] = []
    reader = _Reader(file)
    for document in documents:
        if isinstance(document, yaml.ScalarNode) and document.tag.endswith(":null"):
            continue
        if isinstance(document, yaml.SequenceNode):
            reader.visit(document)
            nodes.extend((f"[{i}]", item) for i, item in enumerate(document.value))
        else:
            nodes.append(("", document))
    return nodes


def parse_rules(text: str, file: str = "<string>") -> list[Rule]:
    """Every rule in a YAML text (one rule, a list of rules, or several documents)."""
    builder = _RuleBuilder(file)
    rules = [builder.rule(node, path) for path, node in rule_nodes(text, file)]
    check_unique(rules)
    return rules


def rule_files(path: str | Path) -> list[Path]:
    """A YAML file, or every ``*.yaml``/``*.yml`` under a directory (hidden ones skipped)."""
    root = Path(path)
    if not root.is_dir():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_rules(path: str | Path) -> list[Rule]:
    """Read and compile the rules of a YAML file or of every YAML file under a directory."""
    rules: list[Rule] = []
    for file in rule_files(path):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RuleSyntaxError(f"not UTF-8 text: {exc.reason}", file=str(file)) from None
        rules.extend(parse_rules(text, str(file)))
    check_unique(rules)
    return rules


def check_unique(rules: Iterable[Rule]) -> None:
    """Refuse two rules of one name, naming where the first was defined."""
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
