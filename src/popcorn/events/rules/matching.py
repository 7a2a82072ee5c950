"""Matching: a compiled, indexed `RuleSet` and the throttle/dedupe memory it uses.

`RuleSet` indexes rules by event type and by one equality test on a field (the
field with the most distinct values), so an event is only tested against the
few rules that can match it; `RuleSet.explain` tells, for every rule, why it
did or did not match.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from popcorn.events.formats import Event
from popcorn.events.rules.model import RenderedAction, Rule, aware_now, has_glob, type_pattern
from popcorn.events.rules.operators import Check, Condition, Test, all_of, compile_test, getter
from popcorn.events.rules.parse import check_unique, load_rules
from popcorn.events.templating import TemplateError, event_context

_GROUP_CACHE_SIZE: Final = 4096


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
        check_unique(self.rules)
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
                if has_glob(pattern):
                    self._globs.append((type_pattern(pattern), ordinal))
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
        group = _Group(always, [(getter(name), table) for name, table in tables.items()])
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
        when = aware_now(now)
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
        when = aware_now(now)
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
