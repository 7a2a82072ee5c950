"""Ordering, keyset cursors and ShotGrid's `additional_filter_presets` for `find`.

`order` takes the entity's own fields and linked paths (`entity.Shot.code`,
`sg_sequence.Sequence.code`); a linked path is an outer join to the linked entity (a
link names one entity, so no row is repeated), which the database reads once per query
rather than a lookup per candidate row. NULLs sort last in both directions, the same on
SQLite and PostgreSQL, and the entity id breaks ties.

A cursor is a keyset: the order values and id of the last row of the page, bound to the
query's order and filters (a cursor from another query is refused). The next page is
"rows after this one in this order", so it stays right when rows are added or removed
in front of it, and costs the same on page 1,000 as on page 1.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from popcorn.errors import InvalidInput
from popcorn.studio import models as m
from popcorn.studio import query
from popcorn.studio.registry import Entity, Field, entity

LATEST_BY = ("ENTITIES_CREATED_AT", "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT")
PRESET_ENTITIES = ("Version", "PublishedFile")


def _bad(message: str, field: str, where: str) -> InvalidInput:
    return InvalidInput(message, details={"field": field, "where": where})


@dataclass
class Term:
    path: str
    expr: Any
    leaf: Field
    descending: bool
    joins: list[tuple[Any, ColumnElement[bool]]]  # (linked entity's alias, on), outer


def _expression(
    ent: Entity, source: Any, path: str, full: str, where: str, hops: int = 0
) -> tuple[Any, Field, list[tuple[Any, ColumnElement[bool]]]]:
    """The column to order by, read from `source` (the entity's model or an alias of it),
    and the outer joins that reach it."""
    parts = path.split(".")
    if len(parts) == 1:
        fld = ent.field(path)
        if fld.attr is None or fld.kind in {"multi_entity", "names", "entity"}:
            raise _bad(f"cannot order by {full!r}", full, where)
        return getattr(source, fld.attr), fld, []
    fld = ent.field(parts[0])
    if (len(parts) < 3 or hops >= query.MAX_HOPS or fld.kind != "entity"
            or parts[1] not in fld.targets):  # fmt: skip
        raise _bad(f"{full}: not a linked field to order by", full, where)
    target = entity(parts[1])
    linked = aliased(target.model)
    assert fld.attr is not None
    on: ColumnElement[bool] = linked.id == getattr(source, fld.attr)
    if fld.type_attr is not None:
        on = and_(on, getattr(source, fld.type_attr) == parts[1])
    inner, leaf, joins = _expression(target, linked, ".".join(parts[2:]), full, where, hops + 1)
    return inner, leaf, [(linked, on), *joins]


def joined(stmt: Select[Any], chosen: list[Term]) -> Select[Any]:
    """`stmt` with the outer joins its order terms read from."""
    for term in chosen:
        for linked, on in term.joins:
            stmt = stmt.outerjoin(linked, on)
    return stmt


def terms(ent: Entity, order: Any) -> list[Term]:
    """`[{"field_name": "entity.Shot.code", "direction": "desc"}]` checked and compiled."""
    if order is None:
        return []
    if not isinstance(order, list):
        raise _bad("order must be a list", "order", "order")
    out = []
    for i, item in enumerate(order):
        if not isinstance(item, dict) or not isinstance(item.get("field_name"), str):
            raise _bad("each order item is {field_name, direction}", "order", f"order[{i}]")
        path = item["field_name"]
        direction = item.get("direction", "asc")
        if direction not in {"asc", "desc"}:
            raise _bad("direction is 'asc' or 'desc'", path, f"order[{i}]")
        expr, leaf, joins = _expression(ent, ent.model, path, path, f"order[{i}]")
        out.append(Term(path, expr, leaf, direction == "desc", joins))
    return out


def order_by(ent: Entity, chosen: list[Term]) -> list[Any]:
    """ORDER BY clauses: per term, non-NULL first, then the value; the id last."""
    clauses: list[Any] = []
    for term in chosen:
        clauses.append(term.expr.is_(None).asc())
        clauses.append(term.expr.desc() if term.descending else term.expr.asc())
    clauses.append(ent.model.id.asc())
    return clauses


def after(ent: Entity, chosen: list[Term], values: list[Any], last_id: int) -> ColumnElement[bool]:
    """Rows strictly after (values..., last_id) in the order of `order_by`."""
    condition: ColumnElement[bool] = ent.model.id > last_id
    for term, value in reversed(list(zip(chosen, values, strict=True))):
        expr = term.expr
        if value is None:  # NULLs are last: only more NULLs, then by the next terms
            condition = and_(expr.is_(None), condition)
            continue
        beyond = expr < value if term.descending else expr > value
        condition = or_(expr.is_(None), beyond, and_(expr == value, condition))
    return condition


def _fingerprint(ent: Entity, parts: dict[str, Any]) -> str:
    blob = json.dumps([ent.name, parts], sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def encode(ent: Entity, parts: dict[str, Any], row_values: list[Any], last_id: int) -> str:
    data = {"q": _fingerprint(ent, parts), "k": [query.jsonable(v) for v in row_values],
            "after": last_id}  # fmt: skip
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode(ent: Entity, parts: dict[str, Any], chosen: list[Term], raw: str
           ) -> tuple[list[Any], int] | dict[str, int]:  # fmt: skip
    """A keyset cursor's (values, id), or a legacy `{"offset": n}` / `{"after": id}` one."""
    try:
        data = json.loads(base64.urlsafe_b64decode((raw + "=" * (-len(raw) % 4)).encode()))
        if not isinstance(data, dict):
            raise ValueError(raw)
        last = data.get("after")
        if "q" not in data:  # an id keyset or offset cursor
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
                       for v in data.values()):  # fmt: skip
                raise ValueError(raw)
            return {str(k): int(v) for k, v in data.items()}
        if data["q"] != _fingerprint(ent, parts):
            raise InvalidInput(
                "this cursor belongs to another query (its order or filters differ)",
                details={"field": "cursor"},
            )
        values = data.get("k")
        if (not isinstance(last, int) or isinstance(last, bool) or not 0 < last < 2**63
                or not isinstance(values, list) or len(values) != len(chosen)):  # fmt: skip
            raise ValueError(raw)
        typed = [
            query.scalar(t.leaf, v, "cursor", "cursor") if v is not None else None
            for t, v in zip(chosen, values, strict=True)
        ]
        return typed, last
    except (ValueError, TypeError) as exc:
        raise InvalidInput("invalid cursor", details={"field": "cursor"}) from exc


def presets(ent: Entity, raw: Any) -> list[ColumnElement[bool]]:
    """ShotGrid's `additional_filter_presets`: `[{"preset_name": "LATEST", "latest_by":
    "ENTITIES_CREATED_AT"}]` keeps, per linked entity, its latest Version (or
    PublishedFile); `BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT` prefers the latest
    pipeline step (the highest step list order of the task), then the latest created.
    The latest is taken among all live rows; it is ANDed with the filters."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("additional_filter_presets must be a list", "additional_filter_presets",
                   "additional_filter_presets")  # fmt: skip
    out = []
    for i, item in enumerate(raw):
        where = f"additional_filter_presets[{i}]"
        if not isinstance(item, dict) or item.get("preset_name") != "LATEST":
            raise _bad("the only preset is {'preset_name': 'LATEST', 'latest_by': ...}",
                       "preset_name", where)  # fmt: skip
        latest_by = item.get("latest_by")
        if latest_by not in LATEST_BY:
            raise InvalidInput(
                f"latest_by is one of {', '.join(LATEST_BY)}",
                details={"field": "latest_by", "where": where, "valid": list(LATEST_BY)},
            )
        if ent.name not in PRESET_ENTITIES:
            raise InvalidInput(
                f"the LATEST preset applies to {' and '.join(PRESET_ENTITIES)}, not {ent.name}",
                details={"field": "preset_name", "where": where},
            )
        out.append(_latest(ent, latest_by))
    return out


def _latest(ent: Entity, latest_by: str) -> ColumnElement[bool]:
    model = ent.model
    ranking: list[Any] = []
    if latest_by == LATEST_BY[1]:
        step_order = (
            select(m.StudioStep.list_order)
            .join(m.StudioTask, m.StudioTask.step_id == m.StudioStep.id)
            .where(m.StudioTask.id == model.task_id)
            .correlate(model)
            .scalar_subquery()
        )
        ranking += [step_order.is_(None).asc(), step_order.desc()]
    ranking += [model.created_at.desc(), model.id.desc()]
    numbered = (
        select(
            model.id.label("id"),
            func.row_number()
            .over(partition_by=(model.entity_type, model.entity_id), order_by=ranking)
            .label("n"),
        )
        .where(model.retired_at.is_(None), model.entity_id.is_not(None))
        .subquery()
    )
    return model.id.in_(select(numbered.c.id).where(numbered.c.n == 1))
