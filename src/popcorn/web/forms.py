"""HTML form fields from a JSON Schema (runbook inputs, approval payloads) and back.

Runbooks describe their inputs and approval payloads as pydantic models; the console shows
one field per property and turns what was typed back into JSON for the service, which
validates it (so every rule lives in one place: the model).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from popcorn.errors import InvalidInput

SIMPLE = ("string", "integer", "number", "boolean", "array", "object")


def _kind(spec: Mapping[str, Any]) -> tuple[str, bool]:
    """The property's JSON type and whether null is allowed (pydantic writes `anyOf`)."""
    options = spec.get("anyOf") or spec.get("oneOf")
    if options:
        types = [o.get("type") for o in options if isinstance(o, Mapping)]
        nullable = "null" in types
        real = [t for t in types if t and t != "null"]
        return (real[0] if len(real) == 1 and real[0] in SIMPLE else "json"), nullable
    kind = spec.get("type")
    if isinstance(kind, list):
        real = [t for t in kind if t != "null"]
        return (real[0] if len(real) == 1 and real[0] in SIMPLE else "json"), "null" in kind
    if "enum" in spec and kind is None:
        return "string", False
    return (kind if kind in SIMPLE else "json"), False


def schema_fields(schema: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One form field per property: name, label, kind, required, default, choices, help."""
    if not schema:
        return []
    required = set(schema.get("required") or [])
    fields = []
    for name, spec in (schema.get("properties") or {}).items():
        kind, nullable = _kind(spec)
        choices = spec.get("enum")
        if choices is None and spec.get("$ref"):
            ref = str(spec["$ref"]).rsplit("/", 1)[-1]
            choices = (schema.get("$defs") or {}).get(ref, {}).get("enum")
            kind = "string" if choices else "json"
        default = spec.get("default")
        hints = [spec.get("description") or ""]
        for key, text in (("minimum", "≥"), ("maximum", "≤"), ("pattern", "pattern")):
            if key in spec:
                hints.append(f"{text} {spec[key]}")
        fields.append(
            {
                "name": name,
                "label": spec.get("title") or name.replace("_", " "),
                "kind": kind,
                "required": name in required,
                "nullable": nullable,
                "default": json.dumps(default)
                if kind in ("array", "object", "json") and default is not None
                else default,
                "choices": choices,
                "help": " · ".join(h for h in hints if h),
            }
        )
    return fields


def parse_schema_form(
    schema: Mapping[str, Any] | None, form: Mapping[str, str], prefix: str
) -> dict[str, Any]:
    """The typed values of the fields named `prefix + property`; empty fields are left out
    (so the model's defaults apply and missing required ones are reported by the service)."""
    out: dict[str, Any] = {}
    for field in schema_fields(schema):
        raw = str(form.get(prefix + field["name"], "")).strip()
        if raw == "":
            continue
        name, kind = field["name"], field["kind"]
        try:
            if kind == "integer":
                out[name] = int(raw)
            elif kind == "number":
                out[name] = float(raw)
            elif kind == "boolean":
                out[name] = raw.lower() in ("true", "1", "yes", "on")
            elif kind == "array" and not raw.startswith("["):
                out[name] = [part.strip() for part in raw.split(",") if part.strip()]
            elif kind in ("array", "object", "json"):
                out[name] = json.loads(raw)
            else:
                out[name] = raw
        except ValueError:
            raise InvalidInput(
                f"{name}: {raw!r} is not a valid {kind}", details={"fields": {name: kind}}
            ) from None
    return out
