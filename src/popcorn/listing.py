"""Pagination and NetBox-style filters shared by every list in the API and CLI.

`?limit=` (default 50, max 1000) with `?offset=` or an opaque `?cursor=`;
filters are `field=value` (repeat for OR), and lookups `field__in`, `__n`,
`__ic`, `__isw`, `__gt`, `__gte`, `__lt`, `__lte`, `__isnull`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from popcorn.errors import InvalidInput
from popcorn.lookup import MAX_ID, int_value

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_FILTER_VALUES = 500
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
RESERVED = {"limit", "offset", "cursor", "fields", "brief", "q", "ordering", "format"}
LOOKUPS = {"in", "n", "ic", "isw", "gt", "gte", "lt", "lte", "isnull", "ie"}

T = TypeVar("T")


@dataclass
class ListParams:
    limit: int = DEFAULT_LIMIT
    offset: int | None = None
    after: Any = None
    filters: dict[str, list[str]] = field(default_factory=dict)
    q: str | None = None


@dataclass
class PageResult:
    items: list[Any]
    count: int | None
    next: str | None

    @classmethod
    def whole(cls, items: Sequence[Any]) -> PageResult:
        """A list that is never paged (tokens, schedules): every row, one page."""
        return cls(items=list(items), count=len(items), next=None)

    def serialize(self, schema: Any = None) -> dict[str, Any]:
        """The one list answer of the API and CLI: `{"items", "count", "next"}`.

        Each row goes through `schema` (a read schema) when given; rows that are
        already plain data (shaped by `?fields=`, or built by the service) go as they are.
        """
        items = (
            list(self.items)
            if schema is None
            else [schema.model_validate(i).model_dump(mode="json") for i in self.items]
        )
        return {"items": items, "count": self.count, "next": self.next}


def _multi(args: Mapping[str, Any]) -> dict[str, list[str]]:
    getlist = getattr(args, "getlist", None)
    out: dict[str, list[str]] = {}
    for key in args:
        if getlist is not None:
            out[key] = [str(v) for v in getlist(key)]
        else:
            value = args[key]
            out[key] = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    return out


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": value}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The key a cursor continues after: a 64-bit integer or a text, nothing else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidInput("invalid cursor", details={"cursor": cursor}) from exc
    valid_int = isinstance(after, int) and not isinstance(after, bool) and abs(after) <= MAX_ID
    if not (valid_int or (isinstance(after, str) and "\x00" not in after)):
        raise InvalidInput("invalid cursor", details={"cursor": cursor})
    return after


def parse_list_params(args: Mapping[str, Any]) -> ListParams:
    """Validate paging arguments; everything not reserved is kept as a filter."""
    multi = _multi(args)

    def one_int(name: str, low: int, high: int | None) -> int | None:
        if name not in multi:
            return None
        raw = multi[name][-1]
        value = int_value(raw, name)
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise InvalidInput(f"{name} must be {bound}", details={name: value})
        return value

    limit = one_int("limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    offset = one_int("offset", 0, None)
    after = decode_cursor(multi["cursor"][-1]) if multi.get("cursor") else None
    if offset is not None and after is not None:
        raise InvalidInput("use either offset or cursor, not both")
    filters = {k: v for k, v in multi.items() if k not in RESERVED}
    q = multi["q"][-1] if multi.get("q") else None
    return ListParams(limit=limit, offset=offset, after=after, filters=filters, q=q)


def _convert(column: Any, raw: str, name: str) -> Any:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return raw
    try:
        if python_type is bool:
            return _boolean(raw, name)
        if not raw.isascii():  # int(), float() and fromisoformat() take any Unicode digit
            raise ValueError(raw)
        if python_type is datetime:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if python_type is date:
            return date.fromisoformat(raw)
        if python_type is int:
            return int_value(raw, name)
        if python_type is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
    except ValueError as exc:
        raise InvalidInput(
            f"filter {name}: {raw!r} is not a valid {python_type.__name__}",
            details={name: raw},
        ) from exc
    return raw


def _boolean(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in TRUE_WORDS | FALSE_WORDS:
        raise InvalidInput(f"filter {name}: {raw!r} is not true or false", details={name: raw})
    return lowered in TRUE_WORDS


def filter_clauses(
    filters: Mapping[str, Sequence[str]], allowed: Mapping[str, Any]
) -> list[ColumnElement[bool]]:
    """Turn query filters into SQL conditions; unknown fields are a 422, not silently ignored."""
    clauses: list[ColumnElement[bool]] = []
    for key, values in filters.items():
        name, _, lookup = key.partition("__")
        if name not in allowed or (lookup and lookup not in LOOKUPS):
            raise InvalidInput(
                f"unknown filter {key!r}",
                details={"filter": key, "allowed": sorted(allowed), "lookups": sorted(LOOKUPS)},
            )
        column = allowed[name]
        items = [
            part
            for value in values
            for part in (value.split(",") if lookup in {"in", "n"} else [value])
        ]
        if len(items) > MAX_FILTER_VALUES:
            raise InvalidInput(
                f"filter {key}: at most {MAX_FILTER_VALUES} values",
                details={"filter": key, "values": len(items)},
            )
        if any("\x00" in item for item in items):
            raise InvalidInput(
                f"filter {key}: NUL characters are not allowed", details={"filter": key}
            )
        if lookup == "isnull":
            want = _boolean(items[-1], key)
            clauses.append(column.is_(None) if want else column.is_not(None))
            continue
        if lookup in {"ic", "isw", "ie"}:
            patterns = {
                "ic": lambda v: f"%{_escape(v)}%",
                "isw": lambda v: f"{_escape(v)}%",
                "ie": lambda v: _escape(v),
            }[lookup]
            clauses.append(
                or_(*[func.lower(column).like(patterns(v.lower()), escape="\\") for v in items])
            )
            continue
        converted = [_convert(column, v, key) for v in items]
        if lookup in {"", "in"}:
            clauses.append(column == converted[0] if len(converted) == 1 else column.in_(converted))
        elif lookup == "n":
            clauses.append(not_(column.in_(converted)))
        else:
            op = {"gt": "__gt__", "gte": "__ge__", "lt": "__lt__", "lte": "__le__"}[lookup]
            clauses.append(and_(*[getattr(column, op)(v) for v in converted]))
    return clauses


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def paginate(
    session: Session,
    stmt: Select[Any],
    params: ListParams,
    *,
    key: InstrumentedAttribute[Any],
    scalars: bool = True,
) -> PageResult:
    """One page of `stmt` ordered by `key` (unique, ascending): offset or keyset cursor."""
    page_stmt = stmt.order_by(key)
    if params.after is not None:
        page_stmt = page_stmt.where(key > params.after)
    if params.offset:
        page_stmt = page_stmt.offset(params.offset)
    page_stmt = page_stmt.limit(params.limit + 1)
    rows: list[Any] = list(session.scalars(page_stmt) if scalars else session.execute(page_stmt))
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    count: int | None = None
    if params.after is None:
        if not more and (rows or not params.offset):  # the rest fits on this page
            count = (params.offset or 0) + len(rows)
        else:
            count_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
            count = int(session.scalar(count_stmt) or 0)
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(getattr(last, key.key))
    return PageResult(items=rows, count=count, next=next_cursor)
