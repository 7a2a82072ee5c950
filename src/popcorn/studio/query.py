"""shotgun_api3-style filters compiled to SQL, and rows rendered as `{"type", "id", ...}`.

A filter is `[path, relation, value...]` or a group `{"filter_operator": "any",
"filters": [...]}`. A path is a field of the entity or a linked path through one or
two entity fields (`entity.Shot.sg_sequence.Sequence.code`); each hop becomes an
`IN (SELECT id ...)` (or an `EXISTS` over `studio_links` for multi-entity fields),
so the database answers with its indexes and nothing loops over rows in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from popcorn.errors import InvalidInput
from popcorn.studio import models as m
from popcorn.studio.registry import ENTITIES, LINK_SOURCES, OPERATORS, Entity, Field, entity

MAX_HOPS = 2
LIST_RELATIONS = {"in", "not_in", "between", "not_between"}


def _bad(message: str, path: str, where: str, **extra: Any) -> InvalidInput:
    return InvalidInput(message, details={"field": path, "where": where, **extra})


def column(ent: Entity, fld: Field) -> Any:
    assert fld.attr is not None
    return getattr(ent.model, fld.attr)


def ref_of(value: Any, path: str, where: str, targets: Sequence[str]) -> tuple[str, int]:
    """Check a `{"type": "Shot", "id": 3}` reference against a field's target types."""
    if not isinstance(value, dict) or "type" not in value or "id" not in value:
        raise _bad(f"{path}: expected an entity reference {{'type', 'id'}}", path, where)
    kind, ident = value["type"], value["id"]
    if kind not in targets:
        raise _bad(
            f"{path}: {kind!r} is not a valid type (valid: {', '.join(targets)})",
            path,
            where,
            valid_types=list(targets),
        )
    if isinstance(ident, bool) or not isinstance(ident, int) or not 0 < ident < 2**63:
        raise _bad(f"{path}: the id must be a positive integer", path, where)
    return str(kind), int(ident)


def scalar(fld: Field, value: Any, path: str, where: str) -> Any:
    """A filter or field value converted to the column's Python type, or a 422 naming the field."""
    if value is None:
        return None
    kind = fld.kind
    ok = True
    try:
        if kind == "number":
            ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
        elif kind == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind == "checkbox":
            ok = isinstance(value, bool)
        elif kind in {"text", "list", "status_list"}:
            ok = isinstance(value, str)
        elif kind == "date":
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        elif kind == "date_time":
            if isinstance(value, datetime):
                return value
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        ok = False
    if not ok:
        raise _bad(f"{path}: {value!r} is not a valid {kind} value", path, where)
    return value


def compile_filters(
    ent: Entity, filters: Any, operator: Any = "all", where: str = "filters"
) -> ColumnElement[bool]:
    """The SQL condition of a shotgun_api3 filter list."""
    if not isinstance(filters, list | tuple):
        raise _bad("filters must be a list", "filters", where)
    op = (operator or "all").lower() if isinstance(operator, str | type(None)) else None
    if op not in {"all", "any", "and", "or"}:
        raise _bad("filter_operator must be 'all' or 'any'", "filter_operator", where)
    clauses = [_compile_item(ent, item, f"{where}[{i}]") for i, item in enumerate(filters)]
    if not clauses:
        return true()
    return and_(*clauses) if op in {"all", "and"} else or_(*clauses)


def _compile_item(ent: Entity, item: Any, where: str) -> ColumnElement[bool]:
    if isinstance(item, dict) and "filters" in item:
        return compile_filters(
            ent, item["filters"], item.get("filter_operator", "all"), f"{where}.filters"
        )
    if isinstance(item, dict) and "path" in item:
        path, relation, values = item["path"], item.get("relation"), item.get("values", [])
        values = list(values) if isinstance(values, list | tuple) else [values]
    elif isinstance(item, list | tuple) and len(item) >= 2:
        path, relation, values = item[0], item[1], list(item[2:])
    else:
        raise _bad("a filter is [field, relation, value] or a group", "filters", where)
    if not isinstance(path, str) or not isinstance(relation, str):
        raise _bad("a filter's field and relation must be strings", str(path), where)
    if len(values) == 1 and isinstance(values[0], list | tuple) and relation in LIST_RELATIONS:
        values = list(values[0])
    return condition(ent, path, relation, values, where, path)


def condition(
    ent: Entity, path: str, relation: str, values: list[Any], where: str, full: str, hops: int = 0
) -> ColumnElement[bool]:
    parts = path.split(".")
    if len(parts) == 1:
        if path not in ent.fields:
            raise _bad(f"{full}: {ent.name} has no field {path!r}", full, where)
        return _direct(ent, ent.fields[path], relation, values, where, full)
    if len(parts) < 3 or hops >= MAX_HOPS:
        raise _bad(
            f"{full}: a linked path is field.Type.field, at most {MAX_HOPS} hops",
            full,
            where,
        )
    fld = ent.fields.get(parts[0])
    target_name = parts[1]
    if fld is None:
        raise _bad(f"{full}: {ent.name} has no field {parts[0]!r}", full, where)
    if fld.kind not in {"entity", "multi_entity"} or target_name not in fld.targets:
        raise _bad(
            f"{full}: {parts[0]!r} does not link to {target_name!r}",
            full,
            where,
            valid_types=list(fld.targets),
        )
    target = entity(target_name)
    inner = condition(target, ".".join(parts[2:]), relation, values, where, full, hops + 1)
    ids = select(target.model.id).where(inner)
    if fld.kind == "entity":
        clause = column(ent, fld).in_(ids)
        if fld.type_attr:
            clause = and_(getattr(ent.model, fld.type_attr) == target_name, clause)
        return clause
    return _link_exists(ent, fld, target_name, ids)


def _link_exists(ent: Entity, fld: Field, target_name: str, ids: Any) -> ColumnElement[bool]:
    link = m.StudioLink
    if fld.reverse:
        return exists().where(
            link.kind == fld.link,
            link.target_type == ent.name,
            link.target_id == ent.model.id,
            link.source_id.in_(ids),
        )
    return exists().where(
        link.kind == fld.link,
        link.source_id == ent.model.id,
        link.target_type == target_name,
        link.target_id.in_(ids),
    )


def _direct(
    ent: Entity, fld: Field, relation: str, values: list[Any], where: str, path: str
) -> ColumnElement[bool]:
    allowed = OPERATORS.get(fld.kind, set())
    if relation not in allowed:
        raise _bad(
            f"{path}: {relation!r} does not apply to a {fld.kind} field",
            path,
            where,
            relation=relation,
            valid_relations=sorted(allowed),
        )
    singles = {"is", "is_not", "contains", "not_contains", "starts_with", "ends_with"}
    if relation in singles and len(values) != 1:
        raise _bad(f"{path}: {relation!r} takes one value", path, where)
    if relation in {"between", "not_between"} and len(values) != 2:
        raise _bad(f"{path}: {relation!r} takes two values", path, where)
    if fld.kind == "entity":
        return _entity_condition(ent, fld, relation, values, where, path)
    if fld.kind == "multi_entity":
        return _multi_condition(ent, fld, relation, values, where, path)
    col = column(ent, fld)
    converted = [scalar(fld, v, path, where) for v in values]
    if relation in {"is", "is_not"}:
        value = converted[0]
        clause = col.is_(None) if value is None else col == value
        return not_(clause) if relation == "is_not" else clause
    if relation in {"in", "not_in"}:
        clause = col.in_([v for v in converted if v is not None]) if converted else false()
        return not_(clause) if relation == "not_in" else clause
    if relation in {"less_than", "greater_than"}:
        if converted[0] is None:
            raise _bad(f"{path}: {relation!r} needs a value", path, where)
        return col < converted[0] if relation == "less_than" else col > converted[0]
    if relation in {"between", "not_between"}:
        clause = col.between(converted[0], converted[1])
        return not_(clause) if relation == "not_between" else clause
    text = _escape(str(converted[0] or ""))
    pattern = {
        "contains": f"%{text}%",
        "not_contains": f"%{text}%",
        "starts_with": f"{text}%",
        "ends_with": f"%{text}",
    }[relation]
    # Inlined (safely quoted) at execution: a prepared statement's generic plan cannot see how
    # selective a pattern is, and picks a scan of the status index instead of the code index.
    clause = col.ilike(bindparam(None, pattern, String(), literal_execute=True), escape="\\")
    return not_(clause) if relation == "not_contains" else clause


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _entity_condition(
    ent: Entity, fld: Field, relation: str, values: list[Any], where: str, path: str
) -> ColumnElement[bool]:
    col = column(ent, fld)
    type_col = getattr(ent.model, fld.type_attr) if fld.type_attr else None
    if relation in {"type_is", "type_is_not"}:
        name = values[0] if values else None
        if name is not None and name not in fld.targets:
            raise _bad(f"{path}: {name!r} is not a valid type", path, where)
        if type_col is not None:
            clause = type_col.is_(None) if name is None else type_col == name
        else:
            clause = col.is_(None) if name is None else col.is_not(None)
        return not_(clause) if relation == "type_is_not" else clause

    def one(value: Any) -> ColumnElement[bool]:
        if value is None:
            return col.is_(None)
        kind, ident = ref_of(value, path, where, fld.targets)
        if type_col is not None:
            return and_(type_col == kind, col == ident)
        return col == ident

    clause = or_(*[one(v) for v in values]) if values else false()
    return not_(clause) if relation in {"is_not", "not_in"} else clause


def _multi_condition(
    ent: Entity, fld: Field, relation: str, values: list[Any], where: str, path: str
) -> ColumnElement[bool]:
    link = m.StudioLink

    def one(value: Any) -> ColumnElement[bool]:
        if value is None:
            if fld.reverse:
                return not_(
                    exists().where(
                        link.kind == fld.link,
                        link.target_type == ent.name,
                        link.target_id == ent.model.id,
                    )
                )
            return not_(exists().where(link.kind == fld.link, link.source_id == ent.model.id))
        kind, ident = ref_of(value, path, where, fld.targets)
        if fld.reverse:
            return exists().where(
                link.kind == fld.link,
                link.target_type == ent.name,
                link.target_id == ent.model.id,
                link.source_id == ident,
            )
        return exists().where(
            link.kind == fld.link,
            link.source_id == ent.model.id,
            link.target_type == kind,
            link.target_id == ident,
        )

    clause = or_(*[one(v) for v in values]) if values else false()
    return not_(clause) if relation in {"is_not", "not_in"} else clause


# ---------------------------------------------------------------- reading rows


def base_query(
    ent: Entity,
    filters: Any,
    filter_operator: Any = "all",
    *,
    retired_only: bool = False,
    include_archived_projects: bool = True,
) -> Select[Any]:
    model = ent.model
    stmt = select(model).where(
        model.retired_at.is_not(None) if retired_only else model.retired_at.is_(None),
        compile_filters(ent, filters, filter_operator),
    )
    if not include_archived_projects and "project" in ent.fields:
        archived = select(m.StudioProject.id).where(m.StudioProject.archived.is_(True))
        stmt = stmt.where(model.project_id.not_in(archived))
    return stmt


def check_fields(ent: Entity, fields: Any) -> list[str]:
    """The requested fields, each checked (linked paths included) before any query runs."""
    if fields is None:
        return [ent.display]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise _bad("fields must be a list of field names", "fields", "fields")
    for name in fields:
        _check_path(ent, name, name, 0)
    return [f for f in fields if f not in {"type", "id"}]


def _check_path(ent: Entity, path: str, full: str, hops: int) -> None:
    parts = path.split(".")
    if len(parts) == 1:
        if path not in {"type", "id"}:
            ent.field(path)
        return
    fld = ent.field(parts[0])
    if len(parts) < 3 or hops >= MAX_HOPS or fld.kind != "entity" or parts[1] not in fld.targets:
        raise _bad(f"{full}: not a readable linked field", full, "fields")
    _check_path(entity(parts[1]), ".".join(parts[2:]), full, hops + 1)


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return list(value)
    return value


def render(session: Session, ent: Entity, rows: Sequence[Any], fields: list[str]) -> list[dict]:
    """Rows as shotgun_api3 dicts; links resolved with one query per field, not per row."""
    out: list[dict[str, Any]] = [{"type": ent.name, "id": row.id} for row in rows]
    if not rows:
        return out
    names = _Names(session)
    for name in fields:
        parts = name.split(".")
        if len(parts) > 1:
            values = _linked_values(session, ent, rows, parts)
            for item, row in zip(out, rows, strict=True):
                item[name] = values.get(row.id)
            continue
        fld = ent.field(name)
        if fld.kind == "entity":
            refs = [_ref(ent, fld, row) for row in rows]
            for item, ref in zip(out, refs, strict=True):
                item[name] = ref
                if ref is not None:
                    names.want(ref)
        elif fld.kind == "multi_entity":
            lists = _links(session, ent, fld, [row.id for row in rows])
            for item, row in zip(out, rows, strict=True):
                item[name] = lists.get(row.id, [])
                for ref in item[name]:
                    names.want(ref)
        else:
            for item, row in zip(out, rows, strict=True):
                item[name] = jsonable(getattr(row, column(ent, fld).key))
    names.fill()
    return out


def _ref(ent: Entity, fld: Field, row: Any) -> dict[str, Any] | None:
    ident = getattr(row, column(ent, fld).key)
    if ident is None:
        return None
    kind = getattr(row, fld.type_attr) if fld.type_attr else fld.targets[0]
    return {"type": kind, "id": ident}


class _Names:
    """Adds `name` to entity references, one query per entity type."""

    def __init__(self, session: Session):
        self.session = session
        self.refs: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def want(self, ref: dict[str, Any]) -> None:
        self.refs[ref["type"]].append(ref)

    def fill(self) -> None:
        for kind, refs in self.refs.items():
            target = ENTITIES[kind]
            col = getattr(target.model, target.fields[target.display].attr or "id")
            ids = sorted({r["id"] for r in refs})
            found: dict[int, Any] = dict(
                self.session.execute(
                    select(target.model.id, col).where(target.model.id.in_(ids))
                ).all()
            )
            for ref in refs:
                ref["name"] = found.get(ref["id"])


def _links(
    session: Session, ent: Entity, fld: Field, ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    link = m.StudioLink
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if fld.reverse:
        reverse = (
            select(link.target_id, link.source_id)
            .where(link.kind == fld.link, link.target_type == ent.name, link.target_id.in_(ids))
            .order_by(link.target_id, link.id)
        )
        source_type = LINK_SOURCES[fld.link or ""]
        for owner, source in session.execute(reverse):
            out[owner].append({"type": source_type, "id": source})
        return out
    stmt = (
        select(link.source_id, link.target_type, link.target_id)
        .where(link.kind == fld.link, link.source_id.in_(ids))
        .order_by(link.source_id, link.position, link.id)
    )
    for owner, kind, target in session.execute(stmt):
        out[owner].append({"type": kind, "id": target})
    return out


def _linked_values(
    session: Session, ent: Entity, rows: Sequence[Any], parts: list[str]
) -> dict[int, Any]:
    """`entity.Shot.code` for each row: the linked rows fetched once, then their field."""
    fld = ent.field(parts[0])
    target = entity(parts[1])
    wanted: dict[int, int] = {}
    for row in rows:
        ref = _ref(ent, fld, row)
        if ref is not None and ref["type"] == target.name:
            wanted[row.id] = ref["id"]
    if not wanted:
        return {}
    linked = list(
        session.scalars(select(target.model).where(target.model.id.in_(set(wanted.values()))))
    )
    rest = ".".join(parts[2:])
    values = {item["id"]: item[rest] for item in render(session, target, linked, [rest])}
    return {row_id: values.get(target_id) for row_id, target_id in wanted.items()}


def count(session: Session, stmt: Select[Any]) -> int:
    return int(
        session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    )
