"""The batch: rows in, every row checked against stored data and the rest of the batch.

A `Batch` holds the state planners share: what is stored (loaded a table or a
thousand devices at a time), what is planned (new objects with temporary
negative ids), what changes, and every error with its row and field. The
planner of each object type (see `registry.PLANNERS`) turns rows into
creates, updates or nothing through `identify`, `creating` and `commit`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.db import utcnow
from popcorn.errors import InvalidInput
from popcorn.inventory import models as m
from popcorn.inventory.bulk.registry import PLANNERS
from popcorn.inventory.bulk.rows import Progress, Row, RowError
from popcorn.inventory.bulk.types import (
    ALIAS_FIELD,
    AMBIGUOUS,
    CHILDREN,
    ORDER,
    PER_OBJECT_LIMIT,
    SHARED,
    TYPES,
    adapter,
    chunks,
    required_fields,
    slugify,
    stored,
)
from popcorn.lookup import parse_id


class Batch:
    """One all-or-nothing set of changes; see the package docstring."""

    def __init__(
        self, session: Session, *, mode: str = "upsert", source: str = "api", reason: str = ""
    ) -> None:
        if mode not in ("upsert", "create", "update"):
            raise ValueError(f"unknown mode {mode!r}")
        self.session = session
        self.mode = mode
        self.source = source
        self.reason = reason
        self.now = utcnow()
        self.sections: dict[str, list[Row]] = {t: [] for t in ORDER}
        self.errors: list[RowError] = []
        self.index: dict[str, dict[Any, int]] = {t: {} for t in ORDER}
        self.alias: dict[str, dict[str, int]] = {t: {} for t in (*ALIAS_FIELD, "location")}
        self.before: dict[str, dict[int, Mapping[Any, Any]]] = {t: {} for t in ORDER}
        self.planned: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in ORDER}
        self.changes: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in ORDER}
        self.unchanged: Counter[str] = Counter()
        self.seen: dict[str, dict[Any, int | None]] = {t: {} for t in ORDER}
        self.claimed: dict[str, set[int]] = {t: set() for t in CHILDREN}
        self.upcoming: dict[str, list[int]] = {t: [] for t in CHILDREN}
        self.upcoming_at: dict[str, dict[int, int]] = {t: {} for t in CHILDREN}
        self.shared_values: dict[Any, Any] = {}
        self.failed: dict[str, set[Any]] = {t: set() for t in ORDER}
        self.touched: dict[str, list[int]] = {t: [] for t in ORDER}
        self.loaded: set[str] = set()
        self.loaded_devices: dict[str, set[int]] = {t: set() for t in CHILDREN}
        self.next_temp: Counter[str] = Counter()
        self.templates: dict[str, dict[int, list[dict[str, Any]]]] = {
            "device_model": {},
            "module_type": {},
        }
        self.custom_decls: dict[str, dict[str, m.CustomField]] | None = None
        self.deferred: list[tuple[Row, str, int, str, str, Any, str]] = []
        self.unique_seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.link_ends: dict[tuple[str, int], int] = {}
        self.progress: Progress | None = None
        self.per_object_limit = PER_OBJECT_LIMIT
        self.done_rows = 0
        self.total_rows = 0
        self.new_devices: list[tuple[int, int]] = []
        self.rack_moves: list[tuple[Row, int]] = []
        # Stored racks whose site or location changes (rack id -> its row), and the devices
        # that follow each one there (see `organisation.finish_rack`).
        self.moved_racks: dict[int, Row] = {}
        self.rack_followers: dict[int, list[int]] = {}
        self.used_bays: dict[int, int] = {}
        self.new_modules: list[int] = []
        self.real: dict[str, list[int]] = {}
        self.column_defaults: dict[str, dict[str, Any]] = {}
        self.model_parts: dict[
            int, dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]]]]
        ] = {}
        self.template_devices: list[tuple[int, int]] = []
        self.created_rows: dict[str, list[dict[str, Any]]] = {}
        self.created_count: Counter[str] = Counter()
        self.devices_added: Counter[int] = Counter()
        self.created_links: list[tuple[int, str, int, str, int]] = []
        self.created_failed: list[dict[str, Any]] = []
        self.created_tags: dict[str, list[tuple[int, list[str]]]] = {}

    # -- input -----------------------------------------------------------------

    def add(self, otype: str, rows: list[Row]) -> None:
        """Take rows to plan. The list itself is adopted and emptied as rows are planned,
        so a caller that drops its other references lets memory go row by row."""
        if self.sections[otype]:
            self.sections[otype].extend(rows)
            rows.clear()
        else:
            self.sections[otype] = rows

    def error(
        self, otype: str, row: Row, fieldname: str, message: str, code: str = "invalid"
    ) -> None:
        where = f"{row.where}[{row.item}]" if row.item >= 0 else row.where
        where = f"{row.source}: {where}" if row.source and where else row.source or where
        line = row.line
        if row.field_lines:
            line = row.field_lines.get(fieldname.split(".", 1)[0], line)
        self.errors.append(RowError(TYPES[otype].plural, line, fieldname, message, where, code))

    def validate(self, otype: str, row: Row) -> dict[str, Any] | None:
        if row.validated:
            return row.data
        if row.problem:
            self.error(otype, row, "row", row.problem)
            return None
        try:
            data: dict[str, Any] = adapter(otype).validate_python(row.data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "row"
                self.error(otype, row, loc, _pydantic_message(err))
            return None
        shared = SHARED.get(otype)
        if shared:
            cache = self.shared_values
            for key in shared.intersection(data):
                value = data[key]
                if value is not None:
                    data[key] = cache.setdefault(value, value)
        row.data = data
        row.validated = True
        return data

    # -- lookups ---------------------------------------------------------------

    def temp_id(self, otype: str) -> int:
        self.next_temp[otype] += 1
        return -self.next_temp[otype]

    def store(self, otype: str, row: Mapping[Any, Any]) -> None:
        """Remember a stored row (kept as the database's read-only mapping, no copy)."""
        self.before[otype][row["id"]] = row
        if otype == "component" and row["bay_id"] is not None:
            self.used_bays[row["bay_id"]] = row["id"]
        self.index[otype][self.key_of(otype, row)] = row["id"]
        if otype in ALIAS_FIELD:
            self._alias(otype, row[ALIAS_FIELD[otype]], row["id"])
        elif otype == "location":
            self._alias(otype, f"{row['site_id']}/{row['name']}", row["id"])

    def _alias(self, otype: str, value: str, ident: int) -> None:
        aliases = self.alias[otype]
        key = value.lower()
        aliases[key] = ident if aliases.get(key, ident) == ident else AMBIGUOUS

    @staticmethod
    def key_of(otype: str, row: Mapping[Any, Any]) -> Any:
        if otype == "custom_field":
            return (row["object_type"], row["name"])
        if otype in ("region", "site_group"):
            return row["slug"]
        if otype == "manufacturer":
            return row["slug"]
        if otype == "site":
            return row["code"]
        if otype == "rack":
            return (row["site_id"], row["name"])
        if otype == "location":
            return (row["site_id"], row["slug"])
        if otype == "device_model":
            return row["slug"]
        if otype == "module_type":
            return (row["manufacturer_id"], row["model"])
        if otype == "device":
            return row["name"]
        if otype in ("bay", "port"):
            return (row["device_id"], row["kind"], row["name"])
        if otype in ("component", "interface"):
            return (row["device_id"], row["name"])
        if otype == "link":
            return (row["a_type"], row["a_id"], row["b_type"], row["b_id"])
        raise KeyError(otype)

    def load_all(self, otype: str) -> None:
        if otype in self.loaded:
            return
        self.loaded.add(otype)
        table = TYPES[otype].table
        for row in self.session.execute(stored(table)).mappings():
            self.store(otype, row)

    def load_devices(self, names: Iterable[str]) -> None:
        if "device" in self.loaded:
            return
        wanted = [n for n in set(names) if n not in self.index["device"]]
        table = m.Device.__table__
        if len(wanted) > 20000:
            self.load_all("device")
            return
        for chunk in chunks(wanted, 1000):
            for row in self.session.execute(stored(table).where(table.c.name.in_(chunk))):
                self.store("device", row._mapping)

    def load_children(self, otype: str, device_ids: Iterable[int]) -> None:
        done = self.loaded_devices[otype]
        wanted = [i for i in set(device_ids) if i > 0 and i not in done]
        if not wanted:
            return
        done.update(wanted)
        table = TYPES[otype].table
        for chunk in chunks(wanted, 1000):
            stmt = stored(table).where(table.c.device_id.in_(chunk))
            for row in self.session.execute(stmt).mappings():
                self.store(otype, row)

    def load_by_id(self, otype: str, ident: int) -> Mapping[Any, Any] | None:
        if ident in self.before[otype]:
            return self.before[otype][ident]
        if parse_id(ident) is None:
            return None  # no stored row can have it (and 2**63 would overflow the database)
        table = TYPES[otype].table
        found = self.session.execute(stored(table).where(table.c.id == ident)).mappings().first()
        if found is None:
            return None
        self.store(otype, found)
        return found

    def state(self, otype: str, ident: int) -> Mapping[Any, Any]:
        """Current planned state of an object: its planned row, or its row plus changes."""
        if ident < 0:
            return {**self.defaults(otype), **self.planned[otype][ident]}
        changes = self.changes[otype].get(ident)
        before = self.before[otype][ident]
        return {**before, **changes} if changes else before

    def find(self, otype: str, value: str) -> int | None:
        """Id of a referenced object from its natural key as users write it."""
        if otype == "device":
            found = self.index["device"].get(value)
            if found is None and "device" not in self.loaded:
                self.load_devices([value])
                found = self.index["device"].get(value)
            return found
        if otype in ("region", "site_group", "manufacturer"):
            self.load_all(otype)
            found = self.index[otype].get(value)
            if found is None:
                found = self.alias[otype].get(value.lower()) or None
            if found is None:
                found = self.index[otype].get(slugify(value))
            return found
        if otype == "site":
            self.load_all(otype)
            return self.index[otype].get(value)
        if otype == "device_model":
            self.load_all(otype)
            found = self.index[otype].get(value)
            if found is None:
                found = self.alias[otype].get(value.lower()) or None
            return found
        if otype == "device":
            if value not in self.index["device"]:
                self.load_devices([value])
            return self.index["device"].get(value)
        if otype == "module_type":
            self.load_all("module_type")
            matches = [i for (_, model), i in self.index["module_type"].items() if model == value]
            if len(matches) == 1:
                return matches[0]
            maker, sep, model = value.partition("/")
            if sep:
                maker_id = self.find("manufacturer", maker)
                if maker_id is not None:
                    return self.index["module_type"].get((maker_id, model))
            return None
        raise KeyError(otype)

    def find_location(self, site_id: int, value: str) -> int | None:
        """A location of one site by slug or name: all locations are loaded once, then each
        lookup is a dict hit (a device import names the same few locations many times)."""
        self.load_all("location")
        found = self.index["location"].get((site_id, value))
        if found is None:
            found = self.alias["location"].get(f"{site_id}/{value}".lower()) or None
        return found

    def location_ref(
        self, otype: str, row: Row, data: dict[str, Any], site_id: int | None
    ) -> int | None:
        """The location a rack or device names, which must be in its own site."""
        value = data["location"]
        if value is None or site_id is None:
            return None
        found = self.find_location(site_id, value)
        if found is None:
            self.load_all("site")  # a row that gave only its id has not loaded them
            site = self.state("site", site_id)["code"]
            self.error(
                otype, row, "location", f"no location {value!r} in site {site!r}", code="unknown"
            )
        return found

    def ref(self, otype: str, row: Row, fieldname: str, target: str, value: str) -> int | None:
        found = self.find(target, value)
        if found is None and value not in self.failed[target]:
            self.error(
                otype, row, fieldname, f"unknown {TYPES[target].label} {value!r}", code="unknown"
            )
        return found

    def child(self, otype: str, key: tuple[Any, ...]) -> int | None:
        self.load_children(otype, [key[0]])
        return self.index[otype].get(key)

    # -- identify and record ---------------------------------------------------

    def identify(self, otype: str, row: Row, key: Any, shown: str) -> tuple[bool, int | None]:
        """(ok, id of the existing or planned object, or None to create)."""
        data = row.data
        ident = data.get("id")
        if ident is not None:
            found = self.load_by_id(otype, ident)
            if found is None:
                self.error(
                    otype, row, "id", f"no {TYPES[otype].label} with id {ident}", code="not_found"
                )
                return False, None
            other = self.index[otype].get(key) if key is not None else None
            if other is not None and other != ident:
                self.error(
                    otype,
                    row,
                    shown,
                    f"another {TYPES[otype].label} is already {self.show_key(key)}",
                    code="duplicate",
                )
                return False, None
            existing: int | None = ident
        else:
            existing = self.index[otype].get(key)
        if otype in CHILDREN:
            if existing is not None and existing in self.claimed[otype]:
                self.error(
                    otype,
                    row,
                    shown,
                    f"duplicate {TYPES[otype].label} {self.show_key(key)} in this batch",
                    code="duplicate",
                )
                return False, None
            return self._mode_allows(otype, row, existing, key, shown), existing
        seen_key = ident if ident is not None else key
        if seen_key in self.seen[otype]:
            first = self.seen[otype][seen_key]
            where = f" (first at line {first})" if first is not None else ""
            self.error(
                otype,
                row,
                shown,
                f"duplicate {TYPES[otype].label} {self.show_key(key)} in this batch{where}",
                code="duplicate",
            )
            return False, None
        if not row.template:
            self.seen[otype][seen_key] = row.line
        return self._mode_allows(otype, row, existing, key, shown), existing

    def _mode_allows(
        self, otype: str, row: Row, existing: int | None, key: Any, shown: str
    ) -> bool:
        """Create mode wants new objects, update mode existing ones."""
        if existing is not None and existing > 0 and self.mode == "create" and not row.template:
            self.error(
                otype,
                row,
                shown,
                f"{TYPES[otype].label} {self.show_key(key)} already exists",
                code="duplicate",
            )
            return False
        if existing is None and self.mode == "update":
            self.error(
                otype,
                row,
                shown,
                f"no {TYPES[otype].label} {self.show_key(key)}",
                code="not_found",
            )
            return False
        return True

    @staticmethod
    def show_key(key: Any) -> str:
        if isinstance(key, tuple):
            return repr(key[-1])
        return repr(key)

    def creating(self, otype: str, row: Row, existing: int | None) -> dict[str, Any] | None:
        """The row's input, or None if it creates and lacks a required field.

        Fields a new object leaves out are not filled here: column defaults (the
        same as the input schema's) complete the row when it is written, which
        keeps a million planned rows small.
        """
        data = row.data
        if existing is not None:
            return data
        missing = [f for f in required_fields(otype) if data.get(f) is None]
        for name in missing:
            self.error(otype, row, name, f"required for a new {TYPES[otype].label}")
        return None if missing else data

    def commit(
        self, otype: str, row: Row, existing: int | None, cols: dict[str, Any], key: Any
    ) -> int:
        """Record a planned create, a merge into a planned create, an update or nothing."""
        ident = self._commit(otype, row, existing, cols, key)
        if otype in CHILDREN and not row.template:
            self.claimed[otype].add(ident)
        return ident

    def _commit(
        self, otype: str, row: Row, existing: int | None, cols: dict[str, Any], key: Any
    ) -> int:
        if existing is None:
            ident = self.temp_id(otype)
            cols["id"] = ident
            self.planned[otype][ident] = cols
            self.index[otype][key] = ident
            if otype in ALIAS_FIELD and cols.get(ALIAS_FIELD[otype]):
                self._alias(otype, cols[ALIAS_FIELD[otype]], ident)
            elif otype == "location":
                self._alias(otype, f"{cols['site_id']}/{cols['name']}", ident)
            return ident
        if existing < 0:
            planned = self.planned[otype][existing]
            planned.update(cols)
            if key is not None and key != self.key_of(otype, self.state(otype, existing)):
                self.index[otype][key] = existing
            return existing
        before = self.before[otype][existing]
        pending = self.changes[otype].get(existing, {})
        diff = {k: v for k, v in cols.items() if before.get(k) != v}
        if diff or pending:
            self.changes[otype][existing] = {**pending, **diff}
            new_key = self.key_of(otype, {**before, **pending, **diff})
            if new_key != self.key_of(otype, before):
                self.index[otype][new_key] = existing
        if not diff and not row.template:
            self.unchanged[otype] += 1
        self.touched[otype].append(existing)
        return existing

    def defer(
        self, row: Row, otype: str, ident: int, column: str, target: str, key: Any, fieldname: str
    ) -> None:
        self.deferred.append((row, otype, ident, column, target, key, fieldname))

    def set_column(self, otype: str, ident: int, column: str, value: Any) -> None:
        if ident < 0:
            self.planned[otype][ident][column] = value
            return
        before = self.before[otype][ident]
        pending = self.changes[otype].setdefault(ident, {})
        if before.get(column) != value:
            pending[column] = value
        else:
            pending.pop(column, None)
        if not pending:
            del self.changes[otype][ident]

    # -- shared field handling -------------------------------------------------

    def tags(self, data: dict[str, Any], cols: dict[str, Any]) -> None:
        if "tags" in data:
            cols["tags"] = sorted(set(data["tags"] or []))

    def custom_fields(
        self, otype: str, row: Row, data: dict[str, Any], cols: dict[str, Any], existing: int | None
    ) -> None:
        if self.custom_decls is None:
            self.custom_decls = {}
            for decl in self.session.scalars(select(m.CustomField)):
                self.custom_decls.setdefault(decl.object_type, {})[decl.name] = decl
            for planned in self.planned["custom_field"].values():
                decl = m.CustomField(**{k: v for k, v in planned.items() if k != "id"})
                self.custom_decls.setdefault(planned["object_type"], {})[planned["name"]] = decl
        decls = self.custom_decls.get(otype, {})
        given = data.get("custom_fields")
        if given is None and existing is not None:
            return
        if not given and not decls:
            if existing is None:
                cols["custom_fields"] = None
            return
        current = dict(self.state(otype, existing).get("custom_fields") or {}) if existing else {}
        for name, value in (given or {}).items():
            found = decls.get(name)
            where = f"custom_fields.{name}"
            if found is None:
                self.error(
                    otype,
                    row,
                    where,
                    f"no custom field {name!r} for {TYPES[otype].plural}",
                    code="unknown",
                )
                continue
            if value is None or value == "":
                current.pop(name, None)
                continue
            try:
                current[name] = _custom_value(found, value)
            except ValueError as exc:
                self.error(otype, row, where, str(exc))
        for name, decl in decls.items():
            if decl.required and name not in current:
                self.error(otype, row, f"custom_fields.{name}", "required")
        cols["custom_fields"] = current or None

    def unique(
        self, otype: str, row: Row, column: str, value: Any, owner_id: int | None, owner: str
    ) -> None:
        """A unique column (device serial, asset tag) is unique across the table and batch."""
        if value is None:
            return
        seen = self.unique_seen.setdefault((otype, column), {})
        entry = seen.get(value)
        if entry is not None:
            same = (
                entry[0] == owner_id
                if owner_id is not None
                else (entry[0] is None and entry[1] == owner)
            )
            if not same:
                where = f" (line {entry[2]})" if entry[2] is not None else ""
                self.error(
                    otype,
                    row,
                    column,
                    f"{value!r} is already the {column} of "
                    f"{TYPES[otype].label} {entry[1]!r}{where}",
                    code="duplicate",
                )
                return
        seen[value] = (owner_id, owner, row.line)

    def prefetch_unique(self, otype: str, column: str, values: Iterable[Any]) -> None:
        table = TYPES[otype].table
        seen = self.unique_seen.setdefault((otype, column), {})
        wanted = [v for v in set(values) if v is not None]
        for chunk in chunks(wanted, 1000):
            stmt = select(table.c.id, table.c.name, table.c[column]).where(
                table.c[column].in_(chunk)
            )
            for ident, name, value in self.session.execute(stmt):
                seen[value] = (ident, name, None)

    # -- planning, type by type ------------------------------------------------

    def plan(self) -> None:
        """Run each type's planner over its rows, in dependency order."""
        self.total_rows = sum(len(rows) for rows in self.sections.values())
        for otype in ORDER:
            rows = self.sections[otype]
            planner = PLANNERS[otype]
            if planner.start is not None:
                planner.start(self)
            if not rows:
                continue
            if planner.prepare is not None:
                planner.prepare(self, rows)
            index = 0
            while index < len(rows):  # template rows may be appended while planning
                row = rows[index]
                rows[index] = None  # type: ignore[call-overload]  # free input as we go
                index += 1
                if self.validate(otype, row) is None:
                    continue
                planner.plan(self, row)
                self.done_rows += 1
                if self.progress is not None and self.done_rows % 20000 == 0:
                    self.progress(self.done_rows, max(self.total_rows, self.done_rows), "checked")
            self.sections[otype] = []
            self._resolve_deferred()
            if planner.finish is not None:
                planner.finish(self)

    def _resolve_deferred(self) -> None:
        for row, otype, ident, column, target, key, fieldname in self.deferred:
            if target in CHILDREN:
                found = self.child(target, key)
            elif target == "location":  # a parent location, in the same site
                found = self.find_location(*key)
            else:
                found = self.find(target, key)
            if found is None:
                self.error(
                    otype,
                    row,
                    fieldname,
                    f"unknown {TYPES[target].label} {self.show_key(key)}",
                    code="unknown",
                )
                continue
            if target == otype and found == ident:
                self.error(otype, row, fieldname, "cannot refer to itself")
                continue
            self.set_column(otype, ident, column, found)
        self.deferred = []

    def check_loops(self, otype: str, column: str) -> None:
        children = [i for i, row in self.planned[otype].items() if row.get(column) is not None]
        children += [i for i, diff in self.changes[otype].items() if diff.get(column) is not None]
        for ident in children:
            seen = {ident}
            current = self.state(otype, ident).get(column)
            while current is not None:
                if current in seen:
                    self.errors.append(
                        RowError(TYPES[otype].plural, None, column, "parents form a loop")
                    )
                    return
                seen.add(current)
                if current < 0:
                    current = self.planned[otype][current].get(column)
                else:
                    current = (
                        self.state(otype, current).get(column)
                        if (current in self.before[otype])
                        else None
                    )

    # -- result ----------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for otype in ORDER:
            created = len(self.planned[otype])
            updated = len(self.changes[otype])
            if otype in ("interface", "port"):
                updated = sum(1 for c in self.changes[otype].values() if set(c) != {"link_id"})
            unchanged = max(self.unchanged[otype], 0)
            if created or updated or unchanged:
                out[TYPES[otype].plural] = {
                    "create": created,
                    "update": updated,
                    "unchanged": unchanged,
                }
        return out

    def raise_errors(self) -> None:
        if not self.errors:
            return
        rows = {(e.section, e.line, e.where) for e in self.errors}
        errors = sorted(self.errors, key=lambda e: (e.line is None, e.line or 0))
        raise InvalidInput(
            f"{len(self.errors)} error(s) in {len(rows)} row(s); nothing was written",
            details={"errors": [e.as_dict() for e in errors[:10000]], "count": len(self.errors)},
        )

    def translate(self, otype: str, value: int | None) -> int | None:
        if value is None or value > 0:
            return value
        return self.real[otype][-value - 1]

    def defaults(self, otype: str) -> dict[str, Any]:
        """Column defaults of a table, for planned rows that left fields out."""
        found = self.column_defaults.get(otype)
        if found is None:
            found = self.column_defaults[otype] = self._full_row(otype)
        return found

    def _full_row(self, otype: str) -> dict[str, Any]:
        base: dict[str, Any] = {}
        for column in TYPES[otype].table.columns:
            default = column.default
            value: Any = None
            if default is not None and getattr(default, "is_scalar", False):
                value = default.arg  # type: ignore[attr-defined]
            elif column.name in ("created_at", "updated_at"):
                value = self.now
            elif column.name == "tags":
                value = []
            base[column.name] = value
        return base


def _pydantic_message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    return str(err["msg"]).removeprefix("Value error, ")


def _custom_value(decl: m.CustomField, value: Any) -> Any:
    kind = decl.type
    if kind == "text":
        return str(value)
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not an integer") from None
    if kind == "decimal":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        lowered = str(value).lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise ValueError(f"{value!r} is not true or false")
    if kind == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if kind == "url":
        if not re.match(r"^https?://\S+$", str(value)):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return str(value)
    if kind == "select":
        if str(value) not in (decl.choices or []):
            raise ValueError(f"{value!r} is not one of {', '.join(decl.choices or [])}")
        return str(value)
    return value
