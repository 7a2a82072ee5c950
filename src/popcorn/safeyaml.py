"""The one YAML loader for anything a user or a file hands the platform.

PyYAML's safe loader builds no objects, but it still expands aliases: a few
hundred bytes of nested anchors (a "billion laughs") become billions of
nodes once walked. Every YAML input goes through `load` or `load_all`, which
compose the document first and refuse it, naming the line, when its expanded
size, its depth, its alias count or its byte size pass the limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from popcorn.errors import InvalidInput

MAX_BYTES = 64 * 1024 * 1024
MAX_NODES = 2_000_000
MAX_ALIASES = 100_000
MAX_DEPTH = 64

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YAMLLimitError(InvalidInput):
    """A YAML document over one of the loader's limits, or not YAML at all."""


def _where(node: yaml.Node | None, source: str) -> str:
    if node is None or node.start_mark is None:
        return source
    return f"{source}:{node.start_mark.line + 1}"


def _check(root: yaml.Node, source: str, max_nodes: int, max_aliases: int) -> None:
    """Walk the tree as it would be expanded, stopping at the first limit passed."""
    seen_ids: set[int] = set()
    aliases = 0
    nodes = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise YAMLLimitError(
                f"{_where(node, source)}: YAML expands to more than {max_nodes:,} nodes "
                "(nested aliases?)",
                details={"line": node.start_mark.line + 1 if node.start_mark else None},
            )
        if depth > MAX_DEPTH:
            raise YAMLLimitError(
                f"{_where(node, source)}: YAML nested more than {MAX_DEPTH} levels deep",
                details={"line": node.start_mark.line + 1 if node.start_mark else None},
            )
        if isinstance(node, yaml.ScalarNode):
            continue
        if id(node) in seen_ids:
            aliases += 1
            if aliases > max_aliases:
                raise YAMLLimitError(
                    f"{_where(node, source)}: YAML uses more than {max_aliases:,} aliases",
                    details={"line": node.start_mark.line + 1 if node.start_mark else None},
                )
        seen_ids.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))


def _checked_nodes(
    text: str | bytes, source: str, max_nodes: int, max_aliases: int, max_bytes: int
) -> Iterator[tuple[Any, yaml.Node]]:
    """(loader, root node) for each document, each checked before it is handed out."""
    if len(text) > max_bytes:
        raise YAMLLimitError(
            f"{source}: YAML larger than {max_bytes:,} bytes", details={"bytes": len(text)}
        )
    loader = _Loader(text)
    try:
        with _refusing(source):
            while loader.check_node():
                root = loader.get_node()
                if root is None:
                    continue
                _check(root, source, max_nodes, max_aliases)
                yield loader, root
    finally:
        loader.dispose()


@contextmanager
def _refusing(source: str) -> Iterator[None]:
    """PyYAML's errors (syntax, unknown tags such as `!!python/object`) as a 422 naming the line."""
    try:
        yield
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f"{source}:{line}" if line else source
        problem = exc.problem or exc.context or "not valid YAML"
        raise YAMLLimitError(f"{where}: {problem}", details={"line": line}) from None
    except yaml.YAMLError as exc:
        raise YAMLLimitError(f"{source}: not valid YAML ({exc})") from None


def load_all(
    text: str | bytes,
    *,
    source: str = "<yaml>",
    max_nodes: int = MAX_NODES,
    max_aliases: int = MAX_ALIASES,
    max_bytes: int = MAX_BYTES,
) -> list[Any]:
    """Every document of a YAML stream, as plain data, within the limits."""
    documents = []
    for loader, root in _checked_nodes(text, source, max_nodes, max_aliases, max_bytes):
        with _refusing(source):
            documents.append(loader.construct_document(root))
    return documents


def compose_all(
    text: str | bytes,
    *,
    source: str = "<yaml>",
    max_nodes: int = MAX_NODES,
    max_aliases: int = MAX_ALIASES,
    max_bytes: int = MAX_BYTES,
) -> list[yaml.Node]:
    """Every document of a YAML stream as composed nodes, within the same limits.

    For readers that report errors by line (the event rules): the nodes keep
    their marks, and nothing is constructed, so tags never turn into objects.
    """
    return [root for _, root in _checked_nodes(text, source, max_nodes, max_aliases, max_bytes)]


def load(text: str | bytes, *, source: str = "<yaml>", **limits: int) -> Any:
    """A single YAML document (None when empty), within the limits."""
    documents = load_all(text, source=source, **limits)
    if len(documents) > 1:
        raise YAMLLimitError(f"{source}: expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None
