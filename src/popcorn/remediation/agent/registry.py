"""The registry of actions an agent will run; anything not registered here cannot run.

Python actions are functions registered with the `action` decorator, each with a
pydantic model for its arguments (unknown fields refused). Script actions are
added from manifests by `scripts.py` into the same registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from popcorn import __version__
from popcorn.remediation.agent.errors import InvalidArguments, UnknownAction

if TYPE_CHECKING:
    from popcorn.remediation.agent.config import AgentConfig
    from popcorn.remediation.agent.runs import ActionContext

ACTION_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")

ActionFunc = Callable[["ActionContext", Any], Any]
F = TypeVar("F", bound=Callable[..., Any])


class ActionArgs(BaseModel):
    """Base for argument models: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class NoArgs(ActionArgs):
    """For actions that take no arguments."""


@dataclass(frozen=True)
class Action:
    name: str
    func: ActionFunc
    args_model: type[BaseModel]
    description: str
    timeout: float | None = None
    kind: str = "python"
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self, default_timeout: float) -> dict[str, Any]:
        """The public listing of this action: what it does and what arguments it takes."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "timeout": self.timeout if self.timeout is not None else default_timeout,
            "version": self.version,
            "args_schema": self.args_model.model_json_schema(),
            **self.extra,
        }

    def validate_args(self, raw: Any, *, config: AgentConfig) -> BaseModel:
        """Check `raw` against the action's model; `InvalidArguments` lists each bad field."""
        try:
            return self.args_model.model_validate(raw, context={"config": config})
        except ValidationError as exc:
            raise InvalidArguments(
                f"invalid arguments for action {self.name!r}",
                details={"errors": [_field_error(err) for err in exc.errors()]},
            ) from exc


def _field_error(err: Any) -> dict[str, str]:
    message = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
    message = message.removeprefix("Value error, ")
    return {
        "field": ".".join(str(part) for part in err["loc"]) or "(body)",
        "message": message,
        "type": err["type"],
    }


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def add(self, action: Action) -> None:
        if not ACTION_NAME.match(action.name):
            raise ValueError(f"action name {action.name!r} must match {ACTION_NAME.pattern}")
        if action.name in self._actions:
            raise ValueError(f"action {action.name!r} is already registered")
        if action.args_model.model_config.get("extra") != "forbid":
            raise ValueError(
                f"action {action.name!r}: argument model {action.args_model.__name__} "
                "must refuse unknown fields (extra='forbid'; subclass ActionArgs)"
            )
        self._actions[action.name] = action

    def action(
        self,
        name: str | None = None,
        *,
        args: type[BaseModel] = NoArgs,
        description: str | None = None,
        timeout: float | None = None,
        kind: str = "python",
    ) -> Callable[[F], F]:
        """Register `func(ctx, args)` as an action; its docstring's first line describes it."""

        def register(func: F) -> F:
            doc = (func.__doc__ or "").strip().splitlines()
            self.add(
                Action(
                    name=name or func.__name__,
                    func=func,
                    args_model=args,
                    description=description or (doc[0] if doc else ""),
                    timeout=timeout,
                    kind=kind,
                )
            )
            return func

        return register

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(
                f"no action named {name!r} is registered on this agent",
                details={"action": name},
            ) from None

    def copy(self) -> ActionRegistry:
        other = ActionRegistry()
        other._actions = dict(self._actions)
        return other

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(sorted(self._actions.values(), key=lambda a: a.name))

    def __len__(self) -> int:
        return len(self._actions)


default_registry = ActionRegistry()


def action(
    name: str | None = None,
    *,
    args: type[BaseModel] = NoArgs,
    description: str | None = None,
    timeout: float | None = None,
) -> Callable[[F], F]:
    """Register a Python action in the default registry (modules listed in `action_modules`)."""
    return default_registry.action(name, args=args, description=description, timeout=timeout)
