"""The query language that selects tests and devices, parsed by hand so that every error
names the position where the query went wrong.

    component:playback and platform:tv and not tag:flaky and duration<600
    (platform:tv or platform:console) and hdr:dolby_vision and sdk>=5.1
    name:playback.*

`field:value` matches a field equal to the value (any element of a list field; `*` is a
wildcard, no regexes), `field<n`, `<=`, `>`, `>=`, `=` compare numbers or versions;
`and`, `or`, `not` and parentheses combine them (`not` binds tightest, then `and`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from popcorn.errors import InvalidInput

MAX_QUERY = 4000
MAX_DEPTH = 50
_WORD = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-*/+@")
_OPS = ("<=", ">=", "<", ">", "=", ":")

TEST_FIELDS = ("name", "suite", "component", "tag", "owner", "platform", "duration", "requires")
DEVICE_FIELDS = (
    "name",
    "platform",
    "model",
    "family",
    "os",
    "firmware",
    "resolution",
    "hdr",
    "drm",
    "sdk",
    "tag",
    "pool",
    "site",
    "rack",
    "health",
    "state",
)


class QueryError(InvalidInput):
    """A query that does not parse: the message and details carry the position (0-based)."""

    def __init__(self, message: str, *, query: str, position: int) -> None:
        pointer = f"{query}\n{' ' * position}^" if len(query) <= 200 else ""
        super().__init__(
            f"query: {message} at position {position}",
            details={"position": position, "query": query[:500], "pointer": pointer},
        )
        self.position = position


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str
    position: int


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Everything:
    pass


Node = Term | Not | BoolOp | Everything


@dataclass(frozen=True)
class _Token:
    kind: str  # word, string, op, lparen, rparen, end
    text: str
    position: int


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            out.append(_Token("lparen", ch, i))
            i += 1
        elif ch == ")":
            out.append(_Token("rparen", ch, i))
            i += 1
        elif ch in "<>=:":
            op = query[i : i + 2] if query[i : i + 2] in ("<=", ">=") else ch
            out.append(_Token("op", op, i))
            i += len(op)
        elif ch in "\"'":
            end = query.find(ch, i + 1)
            if end < 0:
                raise QueryError("unterminated quoted value", query=query, position=i)
            out.append(_Token("string", query[i + 1 : end], i))
            i = end + 1
        elif ch in _WORD:
            start = i
            while i < n and query[i] in _WORD:
                i += 1
            out.append(_Token("word", query[start:i], start))
        else:
            raise QueryError(f"unexpected character {ch!r}", query=query, position=i)
    out.append(_Token("end", "", n))
    return out


class _Parser:
    def __init__(self, query: str, fields: Sequence[str]) -> None:
        self.query = query
        self.fields = fields
        self.tokens = _tokens(query)
        self.at = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def error(self, message: str, token: _Token) -> QueryError:
        return QueryError(message, query=self.query, position=token.position)

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() == word

    def parse(self) -> Node:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"expected 'and', 'or' or the end, found {token.text!r}", token)
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self.keyword("or"):
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def parse_and(self) -> Node:
        parts = [self.parse_not()]
        while self.keyword("and"):
            self.take()
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def parse_not(self) -> Node:
        if self.keyword("not"):
            self.take()
            return Not(self.parse_not())
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.take()
        if token.kind == "lparen":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error("too deeply nested", token)
            node = self.parse_or()
            closing = self.take()
            if closing.kind != "rparen":
                raise self.error("expected ')'", closing)
            self.depth -= 1
            return node
        if token.kind == "end":
            raise self.error("expected a condition such as component:playback", token)
        if token.kind != "word" or token.text.lower() in ("and", "or", "not"):
            raise self.error(f"expected a field name, found {token.text!r}", token)
        field = token.text.lower()
        if field not in self.fields:
            raise self.error(
                f"unknown field {token.text!r} (fields: {', '.join(self.fields)})", token
            )
        op = self.take()
        if op.kind != "op":
            raise self.error(f"expected ':' or a comparison after {token.text!r}", op)
        value = self.take()
        if value.kind not in ("word", "string"):
            raise self.error(f"expected a value after {op.text!r}", value)
        if op.text not in (":", "=") and _number(value.text) is None:
            raise self.error(f"{op.text} needs a number or a version, found {value.text!r}", value)
        return Term(field, op.text, value.text, token.position)


def parse(query: str, fields: Sequence[str] = TEST_FIELDS) -> Node:
    """The syntax tree of a query; an empty query selects everything."""
    if len(query) > MAX_QUERY:
        raise QueryError(f"longer than {MAX_QUERY} characters", query=query, position=MAX_QUERY)
    if not query.strip():
        return Everything()
    return _Parser(query, fields).parse()


def _number(text: str) -> tuple[float, ...] | None:
    """A number or a dotted version as a comparable tuple (5.1 < 5.10 < 6)."""
    parts = text.strip().lstrip("vV").split(".")
    try:
        return tuple(float(p) for p in parts if p != "")
    except ValueError:
        return None


def _wild(pattern: str, value: str) -> bool:
    """`*` wildcards matched left to right in linear time (no regex engine)."""
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == value
    if not value.startswith(pieces[0]):
        return False
    at = len(pieces[0])
    for piece in pieces[1:-1]:
        found = value.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return value.endswith(pieces[-1]) and len(value) - len(pieces[-1]) >= at


def _compare(op: str, have: tuple[float, ...], want: tuple[float, ...]) -> bool:
    width = max(len(have), len(want))
    a = have + (0.0,) * (width - len(have))
    b = want + (0.0,) * (width - len(want))
    return {
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
        "=": a == b,
    }[op]


def _term(term: Term, record: Mapping[str, Any]) -> bool:
    raw = record.get(term.field)
    values = raw if isinstance(raw, list | tuple | set) else [raw]
    values = [v for v in values if v is not None and v != ""]
    if term.op == ":" or (term.op == "=" and _number(term.value) is None):
        want = term.value.lower()
        return any(_wild(want, str(v).lower()) for v in values)
    wanted = _number(term.value)
    assert wanted is not None
    for value in values:
        have = (float(value),) if isinstance(value, int | float) else _number(str(value))
        if have is not None and _compare(term.op, have, wanted):
            return True
    return False


def matches(node: Node, record: Mapping[str, Any]) -> bool:
    """Whether a record (field -> value or list of values) satisfies the query."""
    if isinstance(node, Everything):
        return True
    if isinstance(node, Term):
        return _term(node, record)
    if isinstance(node, Not):
        return not matches(node.inner, record)
    if node.op == "and":
        return all(matches(part, record) for part in node.parts)
    return any(matches(part, record) for part in node.parts)
