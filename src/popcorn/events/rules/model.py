"""What a loaded rule is: its parts, its error type and the vocabulary rules use."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from popcorn.events.formats import Event
from popcorn.events.rules.operators import Check, Condition
from popcorn.events.templating import CompiledParams, Template

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
RULE_KEYS: Final = (
    "name", "description", "events", "conditions", "actions", "throttle", "dedupe",
    "mode", "priority", "stop",
)  # fmt: skip


class RuleSyntaxError(ValueError):
    """A rule that cannot be loaded: file, line (1-based, when known), rule and reason."""

    def __init__(
        self,
        reason: str,
        *,
        file: str = "<string>",
        line: int | None = None,
        path: str = "",
        rule: str = "",
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.path = path
        self.rule = rule
        where = f"{file}:{line}" if line is not None else file
        named = f"rule {rule!r}: " if rule else ""
        super().__init__(f"{where}: {named}{path + ': ' if path else ''}{reason}")


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
        return self.matches_type(event.type) and self.condition.test(event, aware_now(now))

    def check(self, event: Event, now: datetime | None = None) -> Check:
        """The condition tree evaluated against the event, for explanations."""
        return self.condition.check(event, aware_now(now))

    def render_actions(self, context: dict[str, Any]) -> list[RenderedAction]:
        """Every action's parameters rendered; raises `TemplateError` naming the param."""
        return [RenderedAction(a.type, a.params.render(context), self.name) for a in self.actions]


def aware_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now


def type_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
