"""Writing a checked plan, then its audit records and events.

Ids are allocated in one block per table so children can refer to new
parents before insert; rows go to the driver with executemany in dependency
order, then taggings, template rows and cable ends. `record` follows the
audit rule: per object for small batches, one summary for large ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, delete, func, insert, select, text, update

from popcorn.audit import record_change
from popcorn.errors import InvalidInput
from popcorn.inventory import models as m
from popcorn.inventory import search
from popcorn.inventory.bulk.rows import BatchResult
from popcorn.inventory.bulk.types import (
    CHILDREN,
    FKS,
    ORDER,
    SELF_FK,
    TAGGED,
    TIMESTAMPED,
    TYPES,
    chunks,
    jsonable,
)
from popcorn.outbox import emit

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


def write(batch: Batch) -> dict[str, list[int]]:
    """Write the plan; on SQLite with a large page cache, as indexes grow with every row."""
    connection = batch.session.connection()
    if connection.dialect.name != "sqlite" or batch.total_rows < 10000:
        return _write(batch)
    previous = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql("PRAGMA cache_size=-65536")  # 64 MiB
    try:
        return _write(batch)
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(previous or -2000)}")


def _write(batch: Batch) -> dict[str, list[int]]:
    if batch.planned["device"] or batch.changes["device"]:
        search.ensure(batch.session.connection())
    real: dict[str, list[int]] = {}
    written = 0
    total = sum(len(p) for p in batch.planned.values()) or 1
    for otype in ORDER:
        planned = batch.planned[otype]
        if planned:
            ids = _allocate(batch, otype, len(planned))
            real[otype] = ids
    batch.real = real
    for otype in ORDER:
        _write_creates(batch, otype)
        written += len(batch.planned[otype])
        if batch.progress is not None and batch.planned[otype]:
            batch.progress(written, total, "written")
        _write_updates(batch, otype)
        if otype in ("device_model", "module_type"):
            _write_templates(batch, otype)
        if otype in TAGGED:
            _write_taggings(batch, otype)
    return {otype: ids for otype, ids in real.items()}


def _allocate(batch: Batch, otype: str, count: int) -> list[int]:
    """Ids for new rows, one block per table, so children can refer to them before insert."""
    table = TYPES[otype].table
    if batch.session.get_bind().dialect.name == "postgresql":
        seq = batch.session.scalar(text(f"SELECT pg_get_serial_sequence('{table.name}', 'id')"))
        return list(
            batch.session.scalars(
                text("SELECT nextval(:seq) FROM generate_series(1, :n)"),
                {"seq": seq, "n": count},
            )
        )
    start = int(batch.session.scalar(select(func.max(table.c.id))) or 0) + 1
    return list(range(start, start + count))


def _write_creates(batch: Batch, otype: str) -> None:
    """Insert planned rows with executemany straight to the driver, chunk by chunk.

    `session.execute(insert(table), rows)` spends most of its time in per-row
    parameter handling. Here each planned row becomes a list of column values
    in one pass: defaults for what it left out, real ids for temporary ones,
    and the column types' own bind processing (dates, JSON, UTC datetimes);
    each planned row is dropped once its chunk is sent.
    """
    planned = batch.planned[otype]
    if not planned:
        return
    table = TYPES[otype].table
    connection = batch.session.connection()
    dialect = connection.dialect
    compiled = insert(table).compile(dialect=dialect)
    names = list(compiled.positiontup or []) if compiled.positional else list(compiled.params)
    position = {name: index for index, name in enumerate(names)}
    base = batch.defaults(otype)
    defaults = [base[name] for name in names]
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((index, _last_value_cached(process)))
            if defaults[index] is not None:
                defaults[index] = process(defaults[index])
    fks = [(position[c], batch.real.get(t, [])) for c, t in FKS.get(otype, {}).items()]
    id_at = position["id"]
    self_fk = SELF_FK.get(otype)
    parent_at = position[self_fk] if self_fk else None
    real = batch.real[otype]
    small = len(planned) <= batch.per_object_limit
    count = len(planned)
    chunk: list[Any] = []
    later: list[list[Any]] = []
    for temp in list(planned):
        row = planned.pop(temp)
        if otype == "link":
            row["a_id"] = batch.translate(row["a_type"], row["a_id"])
            row["b_id"] = batch.translate(row["b_type"], row["b_id"])
        elif "link_id" in row:
            del row["link_id"]  # cable ends are connected once the new links exist
        values = list(map(row.get, names, defaults))
        values[id_at] = real[-temp - 1]
        waits = parent_at is not None and (values[parent_at] or 0) < 0
        for index, targets in fks:
            value = values[index]
            if value is not None and value < 0:
                values[index] = targets[-value - 1]
        for index, convert in processors:
            value = values[index]
            if value is not None and value is not defaults[index]:
                values[index] = convert(value)
        ident: int = real[-temp - 1]
        _note_created(batch, otype, row, ident)
        if small:
            full = {**base, **row, "id": ident}
            for column, target in FKS.get(otype, {}).items():
                full[column] = batch.translate(target, full[column])
            batch.created_rows.setdefault(otype, []).append(full)
        if waits:
            later.append(values)  # its parent is new too: insert parents first
            continue
        chunk.append(values)
        if len(chunk) >= 20000:
            _executemany(batch, compiled, names, chunk)
            chunk = []
    if chunk:
        _executemany(batch, compiled, names, chunk)
    if later and parent_at is not None:
        for level in _by_depth(later, id_at, parent_at):
            _executemany(batch, compiled, names, level)
    batch.created_count[otype] = count
    if otype == "link":
        _connect_ends(batch)


def _note_created(batch: Batch, otype: str, row: dict[str, Any], ident: int) -> None:
    """What audit, events and taggings need to know about a new row."""
    if otype == "link":
        batch.created_links.append((ident, row["a_type"], row["a_id"], row["b_type"], row["b_id"]))
    elif otype == "device":
        batch.devices_added[batch.translate("site", row["site_id"]) or 0] += 1
    elif otype == "component" and row.get("status") == "failed":
        device = batch.translate("device", row["device_id"])
        batch.created_failed.append(
            {**batch.defaults(otype), **row, "id": ident, "device_id": device}
        )
    if otype in TAGGED and row.get("tags"):
        batch.created_tags.setdefault(otype, []).append((ident, row["tags"]))


def _insert_plain(batch: Batch, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows that all carry the same columns (template rows, taggings) via the driver."""
    if not rows:
        return
    dialect = batch.session.connection().dialect
    compiled = insert(table).compile(dialect=dialect, column_keys=list(rows[0]))
    names = list(compiled.positiontup or []) if compiled.positional else list(compiled.params)
    processors = [
        (index, process)
        for index, name in enumerate(names)
        if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    params = []
    for row in rows:
        values = [row.get(name) for name in names]
        for index, convert in processors:
            if values[index] is not None:
                values[index] = convert(values[index])
        params.append(values)
    _executemany(batch, compiled, names, params)


def _executemany(batch: Batch, compiled: Any, names: list[str], params: list[Any]) -> None:
    connection = batch.session.connection()
    if not compiled.positional:
        params = [dict(zip(names, values, strict=True)) for values in params]
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(compiled.string, params)
    finally:
        cursor.close()


def _connect_ends(batch: Batch) -> None:
    for end_type in ("interface", "port"):
        table = TYPES[end_type].table
        params = []
        for link_id, a_type, a_id, b_type, b_id in batch.created_links:
            for t, i in ((a_type, a_id), (b_type, b_id)):
                if t == end_type:
                    params.append({"_id": i, "_link": link_id})
        for chunk in chunks(params, 20000):
            batch.session.execute(
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values(link_id=bindparam("_link"))
                .execution_options(synchronize_session=False),
                list(chunk),
            )


def _write_updates(batch: Batch, otype: str) -> None:
    changes = batch.changes[otype]
    if not changes:
        return
    table = TYPES[otype].table
    fks = FKS.get(otype, {})
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for ident, diff in changes.items():
        if not diff:
            continue
        params = {}
        for column, value in diff.items():
            target = fks.get(column)
            if column == "link_id":
                continue  # cable ends are connected once the new links exist
            if target is not None and value is not None and value < 0:
                value = batch.real[target][-value - 1]
            params[column] = value
        if otype in TIMESTAMPED:
            params["updated_at"] = batch.now
        if not params:
            continue
        params["_id"] = ident
        groups.setdefault(tuple(sorted(params)), []).append(params)
    for columns, params_list in groups.items():
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({c: bindparam(c) for c in columns if c != "_id"})
        )
        for chunk in chunks(params_list, 20000):
            batch.session.execute(
                stmt, list(chunk), execution_options={"synchronize_session": False}
            )


def _write_templates(batch: Batch, otype: str) -> None:
    table: Table = m.ComponentTemplate.__table__  # type: ignore[assignment]
    column = f"{otype}_id"
    replaced = [i for i in batch.templates[otype] if i > 0]
    for chunk in chunks(replaced, 1000):
        batch.session.execute(delete(table).where(table.c[column].in_(chunk)))
    rows = []
    other = "module_type_id" if otype == "device_model" else "device_model_id"
    for ident, templates in batch.templates[otype].items():
        owner = batch.translate(otype, ident)
        for tpl in templates:
            rows.append({**tpl, column: owner, other: None})
    for chunk in chunks(rows, 20000):
        _insert_plain(batch, table, list(chunk))


def _write_taggings(batch: Batch, otype: str) -> None:
    table: Table = m.Tagging.__table__  # type: ignore[assignment]
    rows = [
        {"object_type": otype, "object_id": ident, "tag": tag}
        for ident, tags in batch.created_tags.get(otype, [])
        for tag in tags
    ]
    changed = [
        (ident, diff["tags"]) for ident, diff in batch.changes[otype].items() if "tags" in diff
    ]
    for chunk in chunks([i for i, _ in changed], 1000):
        batch.session.execute(
            delete(table).where(table.c.object_type == otype, table.c.object_id.in_(chunk))
        )
    rows += [{"object_type": otype, "object_id": i, "tag": t} for i, tags in changed for t in tags]
    for chunk in chunks(rows, 20000):
        _insert_plain(batch, table, list(chunk))


def record(batch: Batch, result: BatchResult, *, summary: bool) -> None:
    """Audit and events: per object for small batches, one summary for large ones.

    A batch that changes at most PER_OBJECT_LIMIT objects writes one audit
    record and one `inventory.<type>.<verb>` event per object. A larger one
    writes a single audit record (action "import", object type "import",
    with counts and source) and one `inventory.import.completed` event with
    the counts and the number of devices added per site: a 100,000-device
    load stays one transaction of seconds, not 1.3 million change rows.
    Events other domains act on (a device's status, its site, a failed
    component) are emitted for every updated object whatever the size.
    """
    total = sum(batch.created_count.values()) + sum(len(c) for c in batch.changes.values())
    small = total <= batch.per_object_limit
    if small:
        for otype, rows in batch.created_rows.items():
            for row in rows:
                record_change(batch.session, "create", otype, row["id"], after=jsonable(row))
                emit(
                    batch.session,
                    f"inventory.{otype}.created",
                    otype,
                    row["id"],
                    _payload(batch, otype, row),
                )
                if otype == "device":
                    emit(
                        batch.session,
                        "inventory.device.added_to_site",
                        "device",
                        row["id"],
                        {"device": row["name"], "site": _code(batch, row["site_id"])},
                    )
        for row in batch.created_failed:
            _component_failed(batch, row)
    for otype in ORDER:
        for ident, diff in batch.changes[otype].items():
            if not diff:
                continue
            before = batch.before[otype][ident]
            after = {**before, **_translated(batch, otype, diff)}
            if small and not (otype in ("interface", "port") and set(diff) == {"link_id"}):
                followers = _followers(batch, otype, ident)
                record_change(
                    batch.session,
                    "update",
                    otype,
                    ident,
                    before=jsonable(before),
                    after={**jsonable(after), **followers},
                )
                emit(
                    batch.session,
                    f"inventory.{otype}.updated",
                    otype,
                    ident,
                    {**_payload(batch, otype, after), "changed": sorted(diff), **followers},
                )
            _specific_events(batch, otype, before, after)
    if summary or not small:
        payload: dict[str, Any] = {
            "source": batch.source,
            "counts": result.counts,
            "totals": result.totals,
            "devices_added_by_site": {_code(batch, k): v for k, v in batch.devices_added.items()},
        }
        if batch.rack_followers:
            payload["devices_moved_with_racks"] = sum(map(len, batch.rack_followers.values()))
        record_change(batch.session, "import", "import", batch.source[:80], after=payload)
        emit(batch.session, "inventory.import.completed", "import", batch.source[:80], payload)


def _followers(batch: Batch, otype: str, ident: int) -> dict[str, Any]:
    """A moved rack's record names the devices that moved with it (their own records follow)."""
    devices = batch.rack_followers.get(ident) if otype == "rack" else None
    if not devices:
        return {}
    return {"moved_devices": sorted(batch.state("device", d)["name"] for d in devices)}


def _translated(batch: Batch, otype: str, diff: dict[str, Any]) -> dict[str, Any]:
    fks = {**FKS.get(otype, {}), "link_id": "link"}
    return {k: batch.translate(fks[k], v) if k in fks else v for k, v in diff.items()}


def _code(batch: Batch, site_id: int) -> str:
    found = batch.before["site"].get(site_id)
    if found is None:
        stored = batch.session.scalar(select(m.Site.code).where(m.Site.id == site_id))
        code = stored if stored is not None else str(site_id)
        batch.before["site"][site_id] = {"code": code}
        return str(code)
    return str(found["code"])


def _payload(batch: Batch, otype: str, row: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for key in ("name", "code", "slug", "model", "kind", "status"):
        if key in row:
            payload[key] = row[key]
    if otype in CHILDREN:
        payload["device_id"] = row["device_id"]
    if otype == "device":
        payload["site"] = _code(batch, row["site_id"])
    return payload


def _specific_events(
    batch: Batch, otype: str, before: Mapping[Any, Any], after: Mapping[Any, Any]
) -> None:
    if otype == "device":
        if before["status"] != after["status"]:
            emit(
                batch.session,
                "inventory.device.status_changed",
                "device",
                after["id"],
                {
                    "device": after["name"],
                    "site": _code(batch, after["site_id"]),
                    "from": before["status"],
                    "to": after["status"],
                    "reason": batch.reason,
                },
            )
        if before["site_id"] != after["site_id"]:
            emit(
                batch.session,
                "inventory.device.removed_from_site",
                "device",
                after["id"],
                {"device": after["name"], "site": _code(batch, before["site_id"])},
            )
            emit(
                batch.session,
                "inventory.device.added_to_site",
                "device",
                after["id"],
                {"device": after["name"], "site": _code(batch, after["site_id"])},
            )
    if otype == "component" and after["status"] == "failed" and before["status"] != "failed":
        _component_failed(batch, after)


def _component_failed(batch: Batch, row: Mapping[Any, Any]) -> None:
    device = batch.session.execute(
        select(m.Device.name, m.Device.site_id).where(m.Device.id == row["device_id"])
    ).first()
    emit(
        batch.session,
        "inventory.component.failed",
        "component",
        row["id"],
        {
            "device": device[0] if device else None,
            "device_id": row["device_id"],
            "site": _code(batch, device[1]) if device else None,
            "component": row["name"],
            "kind": row["kind"],
            "serial": row["serial"],
            "reason": batch.reason,
        },
    )


def _last_value_cached(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A bind processor that reuses its last result for the same object (the batch's `now`)."""
    last_in: Any = object()
    last_out: Any = None

    def run(value: Any) -> Any:
        nonlocal last_in, last_out
        if value is not last_in:
            last_in, last_out = value, process(value)
        return last_out

    return run


def _by_depth(rows: list[list[Any]], id_at: int, parent_at: int) -> Iterator[list[list[Any]]]:
    """Rows whose parent is in the same list come after it."""
    ids = {r[id_at] for r in rows}
    done: set[int] = set()
    pending = rows
    while pending:
        ready = [r for r in pending if r[parent_at] not in ids or r[parent_at] in done]
        if not ready:
            raise InvalidInput("parents form a loop")
        yield ready
        done.update(r[id_at] for r in ready)
        pending = [r for r in pending if r[id_at] not in done]
