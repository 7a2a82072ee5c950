"""Finding flows: files, never imported here.

A flow is a Metaflow file run as a subprocess. Popcorn finds them in three places: the
flows it ships (`popcorn/ml/flows/`), every installed domain's `flows/` folder, and the
directory named by the `ml_flows_dir` setting. A file is read with `ast` to learn its
FlowSpec class, steps and parameters, so listing flows runs none of their code.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from popcorn.config import get_settings
from popcorn.errors import NotFound

SHIPPED = Path(__file__).parent / "flows"


@dataclass(frozen=True)
class FlowParameter:
    name: str
    default: Any = None
    help: str = ""


@dataclass(frozen=True)
class FlowFile:
    name: str
    path: Path
    source: str
    class_name: str
    description: str
    steps: list[str] = field(default_factory=list)
    parameters: list[FlowParameter] = field(default_factory=list)


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(node)[:80]


def _is_step(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "step") or (
        isinstance(target, ast.Attribute) and target.attr == "step"
    )


def _parameter(node: ast.stmt) -> FlowParameter | None:
    if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
        return None
    func = node.value.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    if called != "Parameter" or not node.value.args:
        return None
    keywords = {k.arg: k.value for k in node.value.keywords if k.arg}
    return FlowParameter(
        name=str(_literal(node.value.args[0])),
        default=_literal(keywords.get("default")),
        help=str(_literal(keywords.get("help")) or ""),
    )


def read_flow_file(path: Path, source: str) -> FlowFile | None:
    """The flow a file defines, or None when it defines no FlowSpec subclass."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [getattr(b, "id", getattr(b, "attr", "")) for b in node.bases]
        if "FlowSpec" not in bases:
            continue
        steps = [
            item.name
            for item in node.body
            if isinstance(item, ast.FunctionDef) and any(_is_step(d) for d in item.decorator_list)
        ]
        parameters = [p for p in map(_parameter, node.body) if p is not None]
        doc = (ast.get_docstring(node) or "").strip().splitlines()
        return FlowFile(
            name=path.stem.replace("_", "-"),
            path=path.resolve(),
            source=source,
            class_name=node.name,
            description=doc[0] if doc else "",
            steps=steps,
            parameters=parameters,
        )
    return None


def _folders() -> list[tuple[str, Path]]:
    from popcorn import domains

    found: list[tuple[str, Path]] = [("popcorn", SHIPPED)]
    for name in domains.DOMAINS:
        if name == "ml":
            continue
        try:
            spec = importlib.util.find_spec(f"popcorn.{name}")
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            found.append((name, Path(location) / "flows"))
    extra = get_settings().ml_flows_dir
    if extra:
        found.append(("directory", Path(extra).expanduser()))
    return found


def discover() -> list[FlowFile]:
    """Every flow, by name; the first place a name is found wins (shipped, domains, dir)."""
    flows: dict[str, FlowFile] = {}
    for source, folder in _folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            found = read_flow_file(path, source)
            if found is not None and found.name not in flows:
                flows[found.name] = found
    return sorted(flows.values(), key=lambda f: f.name)


def get_flow(name: str) -> FlowFile:
    for found in discover():
        if found.name == name:
            return found
    raise NotFound(f"no flow named {name!r}", details={"flow": name})
