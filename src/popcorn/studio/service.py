"""Studio behaviour: find, create, update, delete, revive, batch and summarize any entity type.

Every change is audited (`studio_<type>`) and announced as a domain event
(`studio.<type>.created|updated|deleted|revived`, plus `studio.<type>.status_changed`
with the old and new status, so rules can notify a supervisor or start a transcode).
A batch runs in the caller's one transaction: any failure rolls back all of it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from popcorn import audit, outbox
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import InvalidInput, NotFound
from popcorn.lookup import get_by_ref
from popcorn.studio import models as m
from popcorn.studio import ordering, query, workflows
from popcorn.studio.registry import ENTITIES, LINK_SOURCES, Entity, Field, entity

MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 500
MAX_BATCH = 20000
REQUEST_TYPES = {"create", "update", "delete", "revive"}


def event_name(ent: Entity) -> str:
    """`PublishedFile` -> `published_file`, as used in event types."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", ent.name).lower()


def limits() -> dict[str, Any]:
    from popcorn.studio import ratelimit, storage

    rate, burst = ratelimit.settings()
    return {
        "max_page_size": MAX_PAGE_SIZE,
        "default_page_size": DEFAULT_PAGE_SIZE,
        "max_batch": MAX_BATCH,
        "max_upload_bytes": storage.upload_limit(),
        "rate_per_s": rate,
        "rate_burst": burst,
    }


# ---------------------------------------------------------------- reading


def _encode_cursor(data: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def find(
    *,
    session: Session,
    entity_type: str,
    filters: Any,
    fields: Any = None,
    order: Any = None,
    filter_operator: Any = None,
    limit: int | None = None,
    page: int | None = None,
    cursor: str | None = None,
    retired_only: bool = False,
    include_archived_projects: bool = True,
    additional_filter_presets: Any = None,
) -> dict[str, Any]:
    """One page of matching entities and the cursor of the next (None on the last page).

    The cursor is a keyset: on id without `order`, else on the order values (linked
    paths included) and id of the page's last row, so it stays right under any order
    and costs the same however deep. `page` (with `limit`) is an offset.
    """
    ent = entity(entity_type)
    wanted = query.check_fields(ent, fields)
    size = limit or DEFAULT_PAGE_SIZE
    if not 0 < size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_PAGE_SIZE}",
            details={"field": "limit", "max_page_size": MAX_PAGE_SIZE},
        )
    stmt = query.base_query(
        ent,
        filters,
        filter_operator,
        retired_only=retired_only,
        include_archived_projects=include_archived_projects,
    )
    chosen = ordering.terms(ent, order)
    stmt = ordering.joined(stmt, chosen).where(*ordering.presets(ent, additional_filter_presets))
    parts = {
        "filters": filters,
        "order": order,
        "filter_operator": filter_operator,
        "presets": additional_filter_presets,
        "retired_only": retired_only,
        "archived": include_archived_projects,
    }
    offset = 0
    if cursor:
        state = ordering.decode(ent, parts, chosen, cursor)
        if isinstance(state, tuple):
            stmt = stmt.where(ordering.after(ent, chosen, *state))
        elif "after" in state and not chosen:
            stmt = stmt.where(ent.model.id > state["after"])
        else:
            offset = state.get("offset", 0)
    elif page:
        if page < 1:
            raise InvalidInput("page counts from 1", details={"field": "page"})
        offset = (page - 1) * size
    clauses = ordering.order_by(ent, chosen)
    rows = list(session.scalars(stmt.order_by(*clauses).offset(offset or None).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    following = None
    if more and (page or offset):
        following = _encode_cursor({"offset": offset + size})
    elif more and not chosen:
        following = _encode_cursor({"after": rows[-1].id})
    elif more:
        last = rows[-1].id
        of_last = select(*(t.expr for t in chosen)).select_from(ent.model)
        of_last = ordering.joined(of_last, chosen).where(ent.model.id == last)
        values = session.execute(of_last).one()
        following = ordering.encode(ent, parts, list(values), last)
    return {"items": query.render(session, ent, rows, wanted), "next": following}


def find_one(*, session: Session, entity_type: str, filters: Any, **kwargs: Any) -> dict | None:
    items = find(session=session, entity_type=entity_type, filters=filters, limit=1, **kwargs)
    return items["items"][0] if items["items"] else None


def get_row(session: Session, ent: Entity, ident: Any, *, retired: bool | None = False) -> Any:
    """A live (or, with retired=None, any) entity by id; 404 naming it otherwise."""
    if isinstance(ident, bool) or not isinstance(ident, int) or not 0 < ident < 2**63:
        raise InvalidInput("the id must be a positive integer", details={"field": "entity_id"})
    row = session.get(ent.model, ident)
    if row is None or (retired is False and row.retired_at is not None):
        raise NotFound(
            f"{ent.name} {ident} not found", details={"entity_type": ent.name, "id": ident}
        )
    return row


# ---------------------------------------------------------------- writing


def snapshot(ent: Entity, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fld in ent.fields.values():
        if fld.attr is None or fld.name in {"created_at", "updated_at"}:
            continue
        value = getattr(row, query.column(ent, fld).key)
        if fld.type_attr and value is not None:
            value = {"type": getattr(row, fld.type_attr), "id": value}
        out[fld.name] = query.jsonable(value)
    return out


class _Writer:
    """Applies a data dict to a row: checks each field, reference and status on the way."""

    def __init__(self, session: Session, where: str = "data", cache: dict[str, Any] | None = None):
        self.session = session
        self.where = where
        cache = cache if cache is not None else {}
        self.workflows: dict[str, Any] = cache.setdefault("workflows", {})
        self.alive: set[tuple[str, int]] = cache.setdefault("alive", set())
        self.users: dict[str, int] = cache.setdefault("users", {})
        self.pending_links: list[tuple[Field, Any, list[tuple[str, int]], str]] = []

    def bad(self, message: str, name: str, **extra: Any) -> InvalidInput:
        return InvalidInput(message, details={"field": name, "where": self.where, **extra})

    def reference(self, fld: Field, value: Any) -> tuple[str, int]:
        if isinstance(value, str) and "HumanUser" in fld.targets:
            return "HumanUser", self.user(fld, value)
        kind, ident = query.ref_of(value, fld.name, self.where, fld.targets)
        if (kind, ident) in self.alive:
            return kind, ident
        target = ENTITIES[kind]
        alive = self.session.scalar(
            select(target.model.id).where(
                target.model.id == ident, target.model.retired_at.is_(None)
            )
        )
        if alive is None:
            raise self.bad(
                f"{fld.name}: {kind} {ident} does not exist", fld.name, type=kind, id=ident
            )
        self.alive.add((kind, ident))
        return kind, ident

    def user(self, fld: Field, login: str) -> int:
        """A HumanUser by login (scripts may name people as shotgun_api3 users do)."""
        found = self.users.get(login)
        if found is None:
            found = self.session.scalar(
                select(m.StudioUser.id).where(
                    m.StudioUser.login == login, m.StudioUser.retired_at.is_(None)
                )
            )
            if found is None:
                raise self.bad(
                    f"{fld.name}: no HumanUser with login {login!r}", fld.name, login=login
                )
            self.users[login] = found
        return found

    def apply(self, ent: Entity, row: Any, data: Any, modes: dict[str, str]) -> None:
        if not isinstance(data, dict):
            raise self.bad("data must be an object of field values", "data")
        for name, value in data.items():
            fld = ent.field(name)
            if not fld.editable:
                raise self.bad(f"{name} is read-only", name)
            if fld.kind == "multi_entity":
                if not isinstance(value, list):
                    raise self.bad(f"{name}: expected a list of entity references", name)
                refs = [self.reference(fld, v) for v in value]
                mode = modes.get(name, "set")
                if mode not in {"set", "add", "remove"}:
                    raise self.bad(f"{name}: update mode is set, add or remove", name)
                self.pending_links.append((fld, row, refs, mode))
            elif fld.kind == "entity":
                ref = None if value is None else self.reference(fld, value)
                setattr(row, query.column(ent, fld).key, ref[1] if ref else None)
                if fld.type_attr:
                    setattr(row, fld.type_attr, ref[0] if ref else None)
            elif fld.kind == "names":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise self.bad(f"{name}: expected a list of names", name)
                setattr(row, query.column(ent, fld).key, list(value))
            elif fld.kind == "status_list":
                old = getattr(row, query.column(ent, fld).key, None) if row.id else None
                new = workflows.check(self.session, ent, name, old, value, self.workflows)
                setattr(row, query.column(ent, fld).key, new)
            else:
                converted = query.scalar(fld, value, name, self.where)
                if fld.kind == "list" and converted is not None and converted not in fld.values:
                    raise self.bad(
                        f"{name}: {value!r} is not one of the valid values",
                        name,
                        valid_values=list(fld.values),
                    )
                if converted is None and fld.name in ent.required:
                    raise self.bad(f"{name} is required", name)
                setattr(row, query.column(ent, fld).key, converted)
        _derive(ent, row, self)

    def write_links(self) -> None:
        """Store multi-entity changes; `set` on a list keeps the order given (playlists)."""
        for fld, row, refs, mode in self.pending_links:
            wanted = list(dict.fromkeys(refs))
            existing = _linked(self.session, fld, row)
            if mode == "set" and not fld.reverse:
                if existing != wanted:
                    self.session.execute(sql_delete(m.StudioLink).where(*_link_match(fld, row)))
                    _add_links(self.session, fld, row, wanted)
                continue
            if mode == "set":
                drop, add = (
                    [r for r in existing if r not in wanted],
                    [r for r in wanted if r not in existing],
                )
            elif mode == "add":
                drop, add = [], [r for r in wanted if r not in existing]
            else:
                drop, add = [r for r in existing if r in wanted], []
            for other in drop:
                self.session.execute(sql_delete(m.StudioLink).where(*_link_match(fld, row, other)))
            _add_links(self.session, fld, row, add)
        self.pending_links.clear()


def _linked(session: Session, fld: Field, row: Any) -> list[tuple[str, int]]:
    """The entities a multi-entity field holds now, in order."""
    link = m.StudioLink
    kind = fld.link or ""
    if fld.reverse:  # e.g. Asset.shots: the links are stored from each shot
        stmt = (
            select(link.source_id)
            .where(link.kind == kind, link.target_type == _name_of(row), link.target_id == row.id)
            .order_by(link.id)
        )
        return [(LINK_SOURCES[kind], s) for s in session.scalars(stmt)]
    pairs = (
        select(link.target_type, link.target_id)
        .where(link.kind == kind, link.source_id == row.id)
        .order_by(link.position, link.id)
    )
    return [(t, i) for t, i in session.execute(pairs)]


def _add_links(session: Session, fld: Field, row: Any, refs: list[tuple[str, int]]) -> None:
    """Append links at the end of each source's list."""
    if not refs:
        return
    link = m.StudioLink
    kind = fld.link or ""
    sources = [ident for _, ident in refs] if fld.reverse else [row.id]
    ends = dict(
        session.execute(
            select(link.source_id, func.max(link.position))
            .where(link.kind == kind, link.source_id.in_(sources))
            .group_by(link.source_id)
        ).all()
    )
    rows = []
    for n, (kind_name, ident) in enumerate(refs):
        if fld.reverse:
            source, target_type, target, pos = ident, _name_of(row), row.id, ends.get(ident, -1) + 1
        else:
            source, target_type, target, pos = (
                row.id,
                kind_name,
                ident,
                ends.get(row.id, -1) + 1 + n,
            )
        rows.append(
            {
                "kind": kind,
                "source_id": source,
                "target_type": target_type,
                "target_id": target,
                "position": pos,
            }
        )
    session.execute(insert(link), rows)


def _name_of(row: Any) -> str:
    return next(e.name for e in ENTITIES.values() if isinstance(row, e.model))


def _link_match(fld: Field, row: Any, other: tuple[str, int] | None = None) -> list[Any]:
    """The link rows of `row`'s field (only the one to `other` when given)."""
    link = m.StudioLink
    if fld.reverse:
        match = [link.kind == fld.link, link.target_type == _name_of(row), link.target_id == row.id]
        return match if other is None else [*match, link.source_id == other[1]]
    match = [link.kind == fld.link, link.source_id == row.id]
    if other is None:
        return match
    return [*match, link.target_type == other[0], link.target_id == other[1]]


def _derive(ent: Entity, row: Any, writer: _Writer) -> None:
    """Computed fields and the frame-range rules users rely on."""
    if ent.name == "Shot":
        head, cin, cout, tail = row.head_in, row.cut_in, row.cut_out, row.tail_out
        if cin is not None and cout is not None:
            if cout < cin:
                raise writer.bad("sg_cut_out: the cut out is before the cut in", "sg_cut_out")
            row.cut_duration = cout - cin + 1
        if head is not None and cin is not None and head > cin:
            raise writer.bad("sg_head_in: the head in is after the cut in", "sg_head_in")
        if tail is not None and cout is not None and tail < cout:
            raise writer.bad("sg_tail_out: the tail out is before the cut out", "sg_tail_out")
    elif ent.name == "Version":
        first, last = row.first_frame, row.last_frame
        if first is not None and last is not None:
            if last < first:
                raise writer.bad(
                    "sg_last_frame: the last frame is before the first", "sg_last_frame"
                )
            row.frame_range = f"{first}-{last}"
        else:
            row.frame_range = None


def create(
    *,
    session: Session,
    entity_type: str,
    data: Any,
    return_fields: Any = None,
    where: str = "data",
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create one entity; the answer holds the fields sent plus `return_fields`."""
    ent = entity(entity_type)
    if ent.name == "Attachment":
        raise InvalidInput(
            "attachments are created by uploading a file", details={"field": "entity_type"}
        )
    if not isinstance(data, dict):
        raise InvalidInput("data must be an object of field values", details={"field": "data"})
    extra = query.check_fields(ent, return_fields) if return_fields else []
    missing = [name for name in ent.required if data.get(name) in (None, "")]
    if missing:
        raise InvalidInput(
            f"{missing[0]} is required", details={"field": missing[0], "where": where}
        )
    row = ent.model()
    row.created_by = current_actor().name
    writer = _Writer(session, where, cache)
    status = workflows.status_field(ent)
    if status and status not in data:
        if ent.name not in writer.workflows:
            writer.workflows[ent.name] = workflows.get(session, ent.name)
        data = {**data, status: writer.workflows[ent.name]["default"]}
    writer.apply(ent, row, data, {})
    session.add(row)
    session.flush()
    writer.write_links()
    after = snapshot(ent, row)
    audit.record_change(session, "create", ent.object_type, row.id, after=after)
    ref = {"type": ent.name, "id": row.id}
    outbox.emit(
        session,
        f"studio.{event_name(ent)}.created",
        ent.object_type,
        row.id,
        {"entity": ref, "data": after},
    )
    return query.render(session, ent, [row], list(dict.fromkeys([*data, *extra])))[0]


def update(
    *,
    session: Session,
    entity_type: str,
    entity_id: Any,
    data: Any,
    multi_entity_update_modes: dict[str, str] | None = None,
    where: str = "data",
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Change the fields named in `data`; multi-entity fields may add or remove instead of set."""
    ent = entity(entity_type)
    row = get_row(session, ent, entity_id)
    modes = multi_entity_update_modes or {}
    if not isinstance(modes, dict):
        raise InvalidInput(
            "multi_entity_update_modes must be an object",
            details={"field": "multi_entity_update_modes"},
        )
    before = snapshot(ent, row)
    writer = _Writer(session, where, cache)
    writer.apply(ent, row, data, modes)
    session.flush()
    writer.write_links()
    after = snapshot(ent, row)
    audit.record_change(session, "update", ent.object_type, row.id, before=before, after=after)
    ref = {"type": ent.name, "id": row.id}
    changes = audit.diff(before, after)
    links = [k for k in data if ent.fields[k].kind == "multi_entity"]
    outbox.emit(
        session,
        f"studio.{event_name(ent)}.updated",
        ent.object_type,
        row.id,
        {"entity": ref, "changes": changes, "links": links},
    )
    status = workflows.status_field(ent)
    if status and status in changes:
        old, new = changes[status]
        outbox.emit(
            session,
            f"studio.{event_name(ent)}.status_changed",
            ent.object_type,
            row.id,
            {"entity": ref, "field": status, "from": old, "to": new},
        )
    return query.render(session, ent, [row], list(data))[0]


def delete(*, session: Session, entity_type: str, entity_id: Any) -> bool:
    """Retire an entity (soft delete: `revive` brings it back). False if already retired."""
    ent = entity(entity_type)
    row = get_row(session, ent, entity_id, retired=None)
    if row.retired_at is not None:
        return False
    row.retired_at = utcnow()
    audit.record_change(session, "delete", ent.object_type, row.id, before=snapshot(ent, row))
    outbox.emit(
        session,
        f"studio.{event_name(ent)}.deleted",
        ent.object_type,
        row.id,
        {"entity": {"type": ent.name, "id": row.id}},
    )
    return True


def revive(*, session: Session, entity_type: str, entity_id: Any) -> bool:
    """Bring a retired entity back. False if it was not retired."""
    ent = entity(entity_type)
    row = get_row(session, ent, entity_id, retired=None)
    if row.retired_at is None:
        return False
    row.retired_at = None
    audit.record_change(session, "revive", ent.object_type, row.id, after=snapshot(ent, row))
    outbox.emit(
        session,
        f"studio.{event_name(ent)}.revived",
        ent.object_type,
        row.id,
        {"entity": {"type": ent.name, "id": row.id}},
    )
    return True


def batch(*, session: Session, requests: Any) -> list[Any]:
    """Run create/update/delete/revive requests in order, all in the caller's transaction.

    An error names the failing request (`details.request`); the caller's
    transaction then rolls back everything the batch did.
    """
    if not isinstance(requests, list):
        raise InvalidInput("requests must be a list", details={"field": "requests"})
    if len(requests) > MAX_BATCH:
        raise InvalidInput(
            f"a batch holds at most {MAX_BATCH} requests",
            details={"field": "requests", "max_batch": MAX_BATCH},
        )
    results: list[Any] = []
    cache: dict[str, Any] = {}  # workflows and references already checked in this batch
    for i, req in enumerate(requests):
        where = f"requests[{i}]"
        if not isinstance(req, dict) or req.get("request_type") not in REQUEST_TYPES:
            raise InvalidInput(
                f"{where}: request_type must be one of {', '.join(sorted(REQUEST_TYPES))}",
                details={"field": "request_type", "request": i},
            )
        try:
            kind = req["request_type"]
            if kind == "create":
                results.append(
                    create(
                        session=session,
                        entity_type=req.get("entity_type", ""),
                        data=req.get("data"),
                        return_fields=req.get("return_fields"),
                        where=where,
                        cache=cache,
                    )
                )
            elif kind == "update":
                results.append(
                    update(
                        session=session,
                        entity_type=req.get("entity_type", ""),
                        entity_id=req.get("entity_id"),
                        data=req.get("data") or {},
                        multi_entity_update_modes=req.get("multi_entity_update_modes"),
                        where=where,
                        cache=cache,
                    )
                )
            elif kind == "delete":
                cache.pop("alive", None)  # a retired entity may no longer be referenced
                results.append(
                    delete(
                        session=session,
                        entity_type=req.get("entity_type", ""),
                        entity_id=req.get("entity_id"),
                    )
                )
            else:
                results.append(
                    revive(
                        session=session,
                        entity_type=req.get("entity_type", ""),
                        entity_id=req.get("entity_id"),
                    )
                )
        except (InvalidInput, NotFound) as exc:
            exc.details = {**exc.details, "request": i}
            exc.message = f"{where}: {exc.message}"
            raise
    return results


# ---------------------------------------------------------------- summaries

AGGREGATES: dict[str, Callable[[Any], Any]] = {
    "record_count": lambda col: func.count(),
    "count": lambda col: func.count(col),
    "sum": func.sum,
    "maximum": func.max,
    "minimum": func.min,
    "average": func.avg,
    "earliest": func.min,
    "latest": func.max,
}


def summarize(
    *,
    session: Session,
    entity_type: str,
    filters: Any,
    summary_fields: Any,
    filter_operator: Any = None,
    grouping: Any = None,
    include_archived_projects: bool = True,
) -> dict[str, Any]:
    """Totals, and totals per group (nested like shotgun_api3's answer), in SQL."""
    ent = entity(entity_type)
    base = query.base_query(
        ent, filters, filter_operator, include_archived_projects=include_archived_projects
    ).subquery()
    if not isinstance(summary_fields, list) or not summary_fields:
        raise InvalidInput(
            "summary_fields must be a non-empty list", details={"field": "summary_fields"}
        )
    aggs = []
    for i, spec in enumerate(summary_fields):
        if not isinstance(spec, dict) or spec.get("type") not in AGGREGATES:
            raise InvalidInput(
                f"summary_fields[{i}]: type must be one of {', '.join(AGGREGATES)}",
                details={"field": "summary_fields"},
            )
        fld = ent.field(spec.get("field", "id"))
        if fld.attr is None:
            raise InvalidInput(f"cannot summarize {fld.name!r}", details={"field": fld.name})
        numeric = fld.kind in {"number", "float"}
        if spec["type"] in {"sum", "average"} and not numeric:
            raise InvalidInput(
                f"{fld.name}: {spec['type']} needs a number field", details={"field": fld.name}
            )
        col = base.c[query.column(ent, fld).key]
        aggs.append((fld.name, AGGREGATES[spec["type"]](col)))
    groups: list[tuple[str, Any, Field]] = []
    for i, spec in enumerate(grouping or []):
        if not isinstance(spec, dict):
            raise InvalidInput(f"grouping[{i}] must be an object", details={"field": "grouping"})
        fld = ent.field(spec.get("field", ""))
        if fld.attr is None or fld.kind in {"multi_entity", "names"}:
            raise InvalidInput(f"cannot group by {fld.name!r}", details={"field": fld.name})
        groups.append((fld.name, base.c[query.column(ent, fld).key], fld))
    labels = [agg.label(f"s{i}") for i, (_, agg) in enumerate(aggs)]

    def sums(row: Any, offset: int) -> dict[str, Any]:
        return {name: _number(row[offset + i]) for i, (name, _) in enumerate(aggs)}

    totals = session.execute(select(*labels).select_from(base)).one()
    answer: dict[str, Any] = {"summaries": sums(totals, 0), "groups": []}
    if not groups:
        return answer
    cols = [col for _, col, _ in groups]
    grouped = select(*cols, *labels).select_from(base).group_by(*cols).order_by(*cols)
    rows: list[Any] = list(session.execute(grouped).all())
    level_rows: list[list[Any]] = [rows]
    for depth in range(1, len(groups)):
        sub = cols[:depth]
        level = select(*sub, *labels).select_from(base).group_by(*sub).order_by(*sub)
        level_rows.insert(depth - 1, list(session.execute(level).all()))
    names = _group_names(session, groups, rows)
    answer["groups"] = _nest(level_rows, groups, names, sums, 0, ())
    return answer


def _number(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return query.jsonable(value)


def _group_names(
    session: Session, groups: list[tuple[str, Any, Field]], rows: list[Any]
) -> dict[tuple[int, Any], str]:
    names: dict[tuple[int, Any], str] = {}
    for depth, (_, _, fld) in enumerate(groups):
        if fld.kind == "entity" and not fld.type_attr:
            target = ENTITIES[fld.targets[0]]
            ids = {row[depth] for row in rows if row[depth] is not None}
            col = getattr(target.model, target.fields[target.display].attr or "id")
            for ident, name in session.execute(
                select(target.model.id, col).where(target.model.id.in_(ids))
            ):
                names[(depth, ident)] = str(name)
    return names


def _nest(
    levels: list[list[Any]],
    groups: list[Any],
    names: dict[tuple[int, Any], str],
    sums: Any,
    depth: int,
    prefix: tuple[Any, ...],
) -> list[dict[str, Any]]:
    out = []
    for row in levels[depth]:
        key = tuple(row[: depth + 1])
        if key[:depth] != prefix:
            continue
        value = query.jsonable(key[depth])
        item: dict[str, Any] = {
            "group_name": names.get((depth, key[depth]), "" if value is None else str(value)),
            "group_value": value,
            "summaries": sums(row, depth + 1),
        }
        if depth + 1 < len(groups):
            item["groups"] = _nest(levels, groups, names, sums, depth + 1, key)
        out.append(item)
    return out


# ---------------------------------------------------------------- console and CLI views


def project_ref(*, session: Session, ref: int | str) -> dict[str, Any]:
    """A project by name or id, as an entity reference."""
    row = get_by_ref(session, m.StudioProject, ref, label="project", name_attr="name")
    return {"type": "Project", "id": row.id, "name": row.name}


def status_board(*, session: Session, project_id: int) -> dict[str, Any]:
    """A project's tasks counted by pipeline step and status, in one grouped query."""
    task = m.StudioTask
    stmt = (
        select(task.step_id, task.status, func.count())
        .where(task.project_id == project_id, task.retired_at.is_(None))
        .group_by(task.step_id, task.status)
    )
    counts: dict[int | None, dict[str, int]] = {}
    for step_id, status, n in session.execute(stmt):
        counts.setdefault(step_id, {})[status] = int(n)
    steps = {
        s.id: s
        for s in session.scalars(select(m.StudioStep).where(m.StudioStep.id.in_(list(counts))))
    }
    statuses = workflows.get(session, "Task")["statuses"]
    extra = sorted({s for row in counts.values() for s in row} - set(statuses))

    def order(sid: int | None) -> tuple[int, str]:
        return (steps[sid].list_order, steps[sid].code) if sid in steps else (1 << 30, "")

    rows = [
        {
            "step": steps[sid].code if sid in steps else "(no step)",
            "counts": counts[sid],
            "total": sum(counts[sid].values()),
        }
        for sid in sorted(counts, key=order)
    ]
    return {"statuses": [*statuses, *extra], "rows": rows}
