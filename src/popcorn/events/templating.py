"""Action parameters rendered from the event that triggered them.

Rule authors write Jinja in action parameters, throttle and dedupe keys::

    params:
      url: "https://hooks.example.net/{{ labels.team }}"
      device: "{{ labels.instance | default('unknown') }}"
      retries: "{{ data.attempts + 1 }}"

Templates are compiled once, when the rule is loaded, and rendered in a
sandbox: no access to Python internals (``{{ ''.__class__ }}`` fails), no
mutation of the event, and a reference to a missing field is an error rather
than an empty string. A string that is exactly one ``{{ expression }}`` keeps
the expression's JSON type (a number stays a number, an object an object);
anything else renders to a string. Errors raise `TemplateError` naming the
parameter path (``actions[0].params.url``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2 import Template as JinjaTemplate
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from popcorn.events.formats import Event, format_time

# Bounds on what one template may build, so a rule cannot exhaust a worker's memory.
MAX_SEQUENCE_REPEAT: Final = 1_000_000
MAX_EXPONENT: Final = 10_000
_MAX_DEPTH: Final = 64
_MARKERS: Final = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"\{\{(.*)\}\}", re.DOTALL)

Location = tuple[str | int, ...]
Renderer = Callable[[Mapping[str, Any]], Any]


class TemplateError(ValueError):
    """A template failed to compile or render; `path` names the parameter."""

    def __init__(self, path: str, reason: str, location: Location = ()) -> None:
        self.path = path
        self.reason = reason
        self.location = location
        super().__init__(f"{path}: {reason}")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, also refusing huge repetitions and powers."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_SEQUENCE_REPEAT
                ):
                    raise SecurityError("result of '*' would be too large")
        elif (
            operator == "**"
            and isinstance(left, int | float)
            and isinstance(right, int | float)
            and abs(right) > MAX_EXPONENT
            and abs(left) > 1
        ):
            raise SecurityError("exponent too large")
        return super().call_binop(context, operator, left, right)


ENVIRONMENT: Final = _Sandbox(undefined=StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=4096)
def _jinja_template(source: str) -> JinjaTemplate:
    """Compiled once per distinct text: many rules share the same templates."""
    return ENVIRONMENT.from_string(source)


@functools.lru_cache(maxsize=4096)
def _jinja_expression(source: str) -> TemplateExpression:
    return ENVIRONMENT.compile_expression(source, undefined_to_none=False)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, TemplateSyntaxError):
        return f"template syntax error: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed: {exc}"
    name = type(exc).__name__
    return f"{name}: {exc}" if name != "UndefinedError" else f"undefined: {exc}"


def _plain(value: Any, path: str, location: Location, depth: int = 0) -> Any:
    """Expression results as JSON-ready values (the caller stores and sends them)."""
    if isinstance(value, Undefined):
        try:
            value._fail_with_undefined_error()
        except Exception as exc:
            raise TemplateError(path, _reason(exc), location) from None
    if depth > _MAX_DEPTH:
        raise TemplateError(path, "value nested too deeply", location)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value) if value.utcoffset() is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, path, location, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, path, location, depth + 1) for v in value]
    return str(value)


class Template:
    """One string template that always renders to a string (used for keys)."""

    __slots__ = ("_template", "path", "source")

    def __init__(self, source: str, path: str = "template") -> None:
        self.source = source
        self.path = path
        try:
            self._template = _jinja_template(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(path, _reason(exc)) from None

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            return self._template.render(context)
        except Exception as exc:
            raise TemplateError(self.path, _reason(exc)) from None


def _compile_string(source: str, path: str, location: Location) -> Renderer:
    if not any(marker in source for marker in _MARKERS):
        return lambda _context: source
    single = _SINGLE_EXPRESSION.fullmatch(source)
    inner = single.group(1) if single else ""
    try:
        if single and not any(m in inner for m in ("{{", "}}", "{%", "{#")):
            expression = _jinja_expression(inner.removeprefix("-").removesuffix("-"))

            def render_expression(context: Mapping[str, Any]) -> Any:
                try:
                    result = expression(**context)
                except Exception as exc:
                    raise TemplateError(path, _reason(exc), location) from None
                return _plain(result, path, location)

            return render_expression
        template = _jinja_template(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(path, _reason(exc), location) from None

    def render_text(context: Mapping[str, Any]) -> str:
        try:
            return template.render(context)
        except Exception as exc:
            raise TemplateError(path, _reason(exc), location) from None

    return render_text


def _compile(value: Any, path: str, location: Location) -> Renderer:
    if isinstance(value, str):
        return _compile_string(value, path, location)
    if isinstance(value, Mapping):
        parts = [
            (str(k), _compile(v, _join(path, str(k)), (*location, str(k))))
            for k, v in value.items()
        ]
        return lambda context: {k: part(context) for k, part in parts}
    if isinstance(value, list | tuple):
        items = [_compile(v, _join(path, i), (*location, i)) for i, v in enumerate(value)]
        return lambda context: [item(context) for item in items]
    if value is None or isinstance(value, bool | int | float):
        return lambda _context: value
    raise TemplateError(path, f"unsupported parameter type {type(value).__name__}", location)


class CompiledParams:
    """Nested action parameters with every template compiled, ready to render."""

    __slots__ = ("_render", "path", "source")

    def __init__(self, params: Any, path: str = "params") -> None:
        self.source = params
        self.path = path
        self._render = _compile(params, path, ())

    def render(self, context: Mapping[str, Any]) -> Any:
        """A fresh structure with every template rendered; raises `TemplateError`."""
        return self._render(context)


def compile_params(params: Any, path: str = "params") -> CompiledParams:
    """Compile nested dict/list parameters once; raises `TemplateError` on bad syntax."""
    return CompiledParams(params, path)


def event_context(event: Event) -> dict[str, Any]:
    """Names templates see: the event's fields at top level and as ``event``."""
    fields = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": format_time(event.time),
        "data": event.data,
        "labels": event.labels,
    }
    return {**fields, "event": fields}
