"""All-or-nothing batches of inventory changes: check every row first, then write in bulk.

Every way in goes through `apply()`: a file import, an API bulk call, a single
create or update from the API or the CLI. So one set of rules holds
everywhere, and a batch of 100,000 devices costs a few queries per table
instead of a few per device:

1. Each row is validated against its type's input schema (pydantic, as a
   TypedDict so no model instances are built) and its natural keys are
   resolved with one query per table; objects planned earlier in the same
   batch resolve too (with temporary negative ids).
2. Each row becomes a create, an update (only the fields that differ) or
   nothing. Every problem is recorded with the row's line and field; if there
   is any, nothing is written and all of them are reported.
3. Otherwise ids are allocated in one block per table and rows are written
   with executemany in dependency order, then taggings, template rows and
   cable ends. Audit records and domain events follow the rule in `_record`.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from sqlalchemy import Table, bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from popcorn.audit import record_change
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory import devicetypes, search
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.outbox import emit

# Per-object audit records and events are written when a batch changes at most
# this many objects; larger batches get one summary record and event instead.
PER_OBJECT_LIMIT = 1000
CHUNK = 5000


@dataclass(frozen=True)
class ObjectType:
    name: str
    plural: str
    model: Any
    schema: type[BaseModel]
    label: str

    @property
    def table(self) -> Table:
        table: Table = self.model.__table__
        return table


TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType("custom_field", "custom_fields", m.CustomField, s.CustomFieldIn, "custom field"),
        ObjectType("region", "regions", m.Region, s.RegionIn, "region"),
        ObjectType(
            "manufacturer", "manufacturers", m.Manufacturer, s.ManufacturerIn, "manufacturer"
        ),
        ObjectType("site", "sites", m.Site, s.SiteIn, "site"),
        ObjectType("rack", "racks", m.Rack, s.RackIn, "rack"),
        ObjectType("device_model", "device_models", m.DeviceModel, s.DeviceModelIn, "device model"),
        ObjectType("module_type", "module_types", m.ModuleType, s.ModuleTypeIn, "module type"),
        ObjectType("device", "devices", m.Device, s.DeviceIn, "device"),
        ObjectType("bay", "bays", m.Bay, s.BayIn, "bay"),
        ObjectType("component", "components", m.Component, s.ComponentIn, "component"),
        ObjectType("interface", "interfaces", m.Interface, s.InterfaceIn, "interface"),
        ObjectType("port", "ports", m.Port, s.PortIn, "port"),
        ObjectType("link", "links", m.Link, s.LinkIn, "link"),
    )
}
ORDER = list(TYPES)
BY_PLURAL = {t.plural: t.name for t in TYPES.values()}
SECTION_ALIASES = {
    "device_types": "device_model",
    "device-types": "device_model",
    "module-types": "module_type",
    "cables": "link",
    "custom-fields": "custom_field",
    "device-models": "device_model",
}
TAGGED = ("site", "rack", "device_model", "device")
CUSTOM = ("site", "rack", "device_model", "device", "component")
TIMESTAMPED = {
    "region",
    "manufacturer",
    "site",
    "rack",
    "device_model",
    "module_type",
    "device",
    "component",
    "link",
}
CHILDREN = ("bay", "component", "interface", "port")
# Foreign keys that may point at objects created in the same batch.
FKS: dict[str, dict[str, str]] = {
    "region": {"parent_id": "region"},
    "site": {"region_id": "region"},
    "rack": {"site_id": "site"},
    "device_model": {"manufacturer_id": "manufacturer"},
    "module_type": {"manufacturer_id": "manufacturer"},
    "device": {"device_model_id": "device_model", "site_id": "site", "rack_id": "rack"},
    "bay": {"device_id": "device", "installed_device_id": "device"},
    "component": {
        "device_id": "device",
        "parent_id": "component",
        "bay_id": "bay",
        "module_type_id": "module_type",
        "manufacturer_id": "manufacturer",
    },
    "interface": {"device_id": "device", "module_id": "component"},
    "port": {"device_id": "device", "module_id": "component", "peer_id": "port"},
    "link": {"a_device_id": "device", "b_device_id": "device"},
}
SELF_FK = {"region": "parent_id", "component": "parent_id", "port": "peer_id"}
# Fields whose values repeat across rows (part numbers, firmware, dates, kinds): one copy
# each per batch instead of one per row, which matters with a million components.
SHARED: dict[str, frozenset[str]] = {
    "device": frozenset(("role", "model", "site", "rack", "platform", "os_version", "status")),
    "component": frozenset(
        (
            "kind",
            "name",
            "part_number",
            "firmware",
            "status",
            "install_date",
            "eol_date",
            "label",
            "description",
            "manufacturer",
            "parent",
            "bay",
            "module_type",
        )
    ),
    "interface": frozenset(("name", "type", "label", "description", "module")),
    "port": frozenset(("kind", "name", "type", "label", "description")),
    "bay": frozenset(("kind", "name", "label", "position")),
}
# Besides their key, some objects are found by a second name ("Cisco", "Europe", a model name).
ALIAS_FIELD = {"region": "name", "manufacturer": "name", "device_model": "model"}
AMBIGUOUS = 0
SIMPLE: dict[str, tuple[str, ...]] = {
    "custom_field": ("object_type", "name", "label", "type", "required", "choices", "description"),
    "region": ("slug", "name", "description"),
    "manufacturer": ("name", "slug", "description"),
    "site": (
        "code",
        "name",
        "kind",
        "status",
        "country",
        "city",
        "latitude",
        "longitude",
        "asn",
        "description",
    ),
    "rack": ("name", "u_height", "status", "description"),
    "device_model": (
        "model",
        "slug",
        "part_number",
        "u_height",
        "is_full_depth",
        "airflow",
        "weight",
        "weight_unit",
        "subdevice_role",
        "description",
        "comments",
    ),
    "module_type": (
        "model",
        "part_number",
        "airflow",
        "weight",
        "weight_unit",
        "description",
        "comments",
    ),
    "device": (
        "name",
        "role",
        "position",
        "face",
        "serial",
        "asset_tag",
        "platform",
        "os_version",
        "primary_ip4",
        "primary_ip6",
        "status",
        "throughput_gbps",
        "storage_tb",
        "description",
        "comments",
    ),
    "bay": ("kind", "name", "label", "position", "description"),
    "component": (
        "kind",
        "name",
        "label",
        "part_number",
        "serial",
        "firmware",
        "status",
        "install_date",
        "eol_date",
        "description",
    ),
    "interface": (
        "name",
        "label",
        "type",
        "speed",
        "mgmt_only",
        "enabled",
        "mac_address",
        "mtu",
        "description",
    ),
    "port": (
        "kind",
        "name",
        "label",
        "type",
        "description",
        "maximum_draw",
        "allocated_draw",
        "feed_leg",
        "positions",
    ),
    "link": ("type", "status", "label", "color", "length", "length_unit", "description"),
}


def resolve_type(name: str) -> str:
    """An object type from its name, plural or alias ("devices", "device-types"…)."""
    key = name.strip().lower().replace(" ", "_")
    if key in TYPES:
        return key
    if key in BY_PLURAL:
        return BY_PLURAL[key]
    if name in SECTION_ALIASES:
        return SECTION_ALIASES[name]
    if key.replace("-", "_") in BY_PLURAL:
        return BY_PLURAL[key.replace("-", "_")]
    raise InvalidInput(
        f"unknown object type {name!r}",
        details={"type": name, "allowed": [t.plural for t in TYPES.values()]},
    )


_adapters: dict[str, TypeAdapter[Any]] = {}


def adapter(otype: str) -> TypeAdapter[Any]:
    """A TypedDict validator with the input schema's fields, all optional, no defaults filled."""
    found = _adapters.get(otype)
    if found is None:
        schema = TYPES[otype].schema
        fields = {n: f.rebuild_annotation() for n, f in schema.model_fields.items()}
        row_type = TypedDict(f"{schema.__name__}Row", fields, total=False)  # type: ignore[misc]
        row_type.__pydantic_config__ = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[attr-defined]
        found = _adapters[otype] = TypeAdapter(row_type)
    return found


_required: dict[str, list[str]] = {}


def required_fields(otype: str) -> list[str]:
    found = _required.get(otype)
    if found is None:
        schema = TYPES[otype].schema
        found = _required[otype] = [n for n, f in schema.model_fields.items() if f.is_required()]
    return found


_defaults: dict[str, dict[str, Any]] = {}


def input_defaults(otype: str) -> dict[str, Any]:
    """Defaults of a type's optional inputs; shared, so callers must not mutate the values."""
    found = _defaults.get(otype)
    if found is None:
        found = _defaults[otype] = {
            n: f.get_default(call_default_factory=True)
            for n, f in TYPES[otype].schema.model_fields.items()
            if not f.is_required() and n != "id"
        }
    return found


def slugify(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "x"


def jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime | date):
            value = value.isoformat()
        out[key] = value
    return out


# --- rows and errors ---------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One input object: its fields and where it came from (for error messages)."""

    data: dict[str, Any]
    line: int | None = None
    where: str = ""
    validated: bool = False
    template: bool = False
    problem: str = ""
    source: str = ""
    item: int = -1  # position in a nested list; `where` names the list
    field_lines: dict[str, int] | None = None  # YAML: the line of each field


@dataclass
class RowError:
    section: str
    line: int | None
    field: str
    message: str
    where: str = ""
    code: str = "invalid"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "section": self.section,
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }
        if self.where:
            out["where"] = self.where
        out["code"] = self.code
        return out

    def __str__(self) -> str:
        place = f"line {self.line}" if self.line is not None else (self.where or self.section)
        return f"{place}: {self.section}: {self.field}: {self.message}"


def _pydantic_message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    return str(err["msg"]).removeprefix("Value error, ")


@dataclass
class BatchResult:
    dry_run: bool
    counts: dict[str, dict[str, int]]
    ids: dict[str, list[int]]
    seconds: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for counts in self.counts.values():
            total.update(counts)
        return {k: total.get(k, 0) for k in ("create", "update", "unchanged", "delete")}

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "counts": self.counts,
            "totals": self.totals,
            "seconds": round(self.seconds, 3),
        }


Progress = Callable[[int, int, str], None]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- the planner ---------------------------------------------------------------


class Batch:
    """One all-or-nothing set of changes; see the module docstring."""

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
        self.alias: dict[str, dict[str, int]] = {t: {} for t in ALIAS_FIELD}
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
        self.done_rows = 0
        self.total_rows = 0
        self.new_devices: list[tuple[int, int]] = []
        self.rack_moves: list[tuple[Row, int]] = []
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

    # -- input ------------------------------------------------------------------

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

    # -- lookups ------------------------------------------------------------------

    def temp_id(self, otype: str) -> int:
        self.next_temp[otype] += 1
        return -self.next_temp[otype]

    def _store(self, otype: str, row: Mapping[Any, Any]) -> None:
        """Remember a stored row (kept as the database's read-only mapping, no copy)."""
        self.before[otype][row["id"]] = row
        if otype == "component" and row["bay_id"] is not None:
            self.used_bays[row["bay_id"]] = row["id"]
        self.index[otype][self.key_of(otype, row)] = row["id"]
        if otype in ALIAS_FIELD:
            self._alias(otype, row[ALIAS_FIELD[otype]], row["id"])

    def _alias(self, otype: str, value: str, ident: int) -> None:
        aliases = self.alias[otype]
        key = value.lower()
        aliases[key] = ident if aliases.get(key, ident) == ident else AMBIGUOUS

    @staticmethod
    def key_of(otype: str, row: Mapping[Any, Any]) -> Any:
        if otype == "custom_field":
            return (row["object_type"], row["name"])
        if otype == "region":
            return row["slug"]
        if otype == "manufacturer":
            return row["slug"]
        if otype == "site":
            return row["code"]
        if otype == "rack":
            return (row["site_id"], row["name"])
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

    def _load_all(self, otype: str) -> None:
        if otype in self.loaded:
            return
        self.loaded.add(otype)
        table = TYPES[otype].table
        for row in self.session.execute(_stored(table)).mappings():
            self._store(otype, row)

    def _load_devices(self, names: Iterable[str]) -> None:
        if "device" in self.loaded:
            return
        wanted = [n for n in set(names) if n not in self.index["device"]]
        table = m.Device.__table__
        if len(wanted) > 20000:
            self._load_all("device")
            return
        for chunk in _chunks(wanted, 1000):
            for row in self.session.execute(_stored(table).where(table.c.name.in_(chunk))):
                self._store("device", row._mapping)

    def _load_children(self, otype: str, device_ids: Iterable[int]) -> None:
        done = self.loaded_devices[otype]
        wanted = [i for i in set(device_ids) if i > 0 and i not in done]
        if not wanted:
            return
        done.update(wanted)
        table = TYPES[otype].table
        for chunk in _chunks(wanted, 1000):
            stmt = _stored(table).where(table.c.device_id.in_(chunk))
            for row in self.session.execute(stmt).mappings():
                self._store(otype, row)

    def _load_by_id(self, otype: str, ident: int) -> Mapping[Any, Any] | None:
        if ident in self.before[otype]:
            return self.before[otype][ident]
        table = TYPES[otype].table
        found = self.session.execute(_stored(table).where(table.c.id == ident)).mappings().first()
        if found is None:
            return None
        self._store(otype, found)
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
                self._load_devices([value])
                found = self.index["device"].get(value)
            return found
        if otype in ("region", "manufacturer"):
            self._load_all(otype)
            found = self.index[otype].get(value)
            if found is None:
                found = self.alias[otype].get(value.lower()) or None
            if found is None:
                found = self.index[otype].get(slugify(value))
            return found
        if otype == "site":
            self._load_all(otype)
            return self.index[otype].get(value)
        if otype == "device_model":
            self._load_all(otype)
            found = self.index[otype].get(value)
            if found is None:
                found = self.alias[otype].get(value.lower()) or None
            return found
        if otype == "device":
            if value not in self.index["device"]:
                self._load_devices([value])
            return self.index["device"].get(value)
        if otype == "module_type":
            self._load_all("module_type")
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

    def ref(self, otype: str, row: Row, fieldname: str, target: str, value: str) -> int | None:
        found = self.find(target, value)
        if found is None and value not in self.failed[target]:
            self.error(
                otype, row, fieldname, f"unknown {TYPES[target].label} {value!r}", code="unknown"
            )
        return found

    def child(self, otype: str, key: tuple[Any, ...]) -> int | None:
        self._load_children(otype, [key[0]])
        return self.index[otype].get(key)

    # -- identify and record ------------------------------------------------------

    def identify(self, otype: str, row: Row, key: Any, shown: str) -> tuple[bool, int | None]:
        """(ok, id of the existing or planned object, or None to create)."""
        data = row.data
        ident = data.get("id")
        if ident is not None:
            found = self._load_by_id(otype, ident)
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
                    f"another {TYPES[otype].label} is already {self._show_key(key)}",
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
                    f"duplicate {TYPES[otype].label} {self._show_key(key)} in this batch",
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
                f"duplicate {TYPES[otype].label} {self._show_key(key)} in this batch{where}",
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
                f"{TYPES[otype].label} {self._show_key(key)} already exists",
                code="duplicate",
            )
            return False
        if existing is None and self.mode == "update":
            self.error(
                otype,
                row,
                shown,
                f"no {TYPES[otype].label} {self._show_key(key)}",
                code="not_found",
            )
            return False
        return True

    @staticmethod
    def _show_key(key: Any) -> str:
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

    # -- shared field handling ---------------------------------------------------

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

    def _prefetch_unique(self, otype: str, column: str, values: Iterable[Any]) -> None:
        table = TYPES[otype].table
        seen = self.unique_seen.setdefault((otype, column), {})
        wanted = [v for v in set(values) if v is not None]
        for chunk in _chunks(wanted, 1000):
            stmt = select(table.c.id, table.c.name, table.c[column]).where(
                table.c[column].in_(chunk)
            )
            for ident, name, value in self.session.execute(stmt):
                seen[value] = (ident, name, None)

    # -- planning per type ---------------------------------------------------------

    def plan(self) -> None:
        self.total_rows = sum(len(rows) for rows in self.sections.values())
        for otype in ORDER:
            rows = self.sections[otype]
            if otype in CHILDREN:
                self._plan_templates(otype)
            if not rows:
                continue
            planner = getattr(self, f"_plan_{otype}")
            prepare = getattr(self, f"_prepare_{otype}", None)
            if prepare is not None:
                prepare(rows)
            index = 0
            while index < len(rows):  # template rows may be appended while planning
                row = rows[index]
                rows[index] = None  # type: ignore[call-overload]  # free input as we go
                index += 1
                if self.validate(otype, row) is None:
                    continue
                planner(row)
                self.done_rows += 1
                if self.progress is not None and self.done_rows % 20000 == 0:
                    self.progress(self.done_rows, max(self.total_rows, self.done_rows), "checked")
            self.sections[otype] = []
            self._resolve_deferred()
            finish = getattr(self, f"_finish_{otype}", None)
            if finish is not None:
                finish()

    def _resolve_deferred(self) -> None:
        for row, otype, ident, column, target, key, fieldname in self.deferred:
            found = self.child(target, key) if target in CHILDREN else self.find(target, key)
            if found is None:
                self.error(
                    otype,
                    row,
                    fieldname,
                    f"unknown {TYPES[target].label} {self._show_key(key)}",
                    code="unknown",
                )
                continue
            if target == otype and found == ident:
                self.error(otype, row, fieldname, "cannot refer to itself")
                continue
            self.set_column(otype, ident, column, found)
        self.deferred = []

    def _check_loops(self, otype: str, column: str) -> None:
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

    def _plan_custom_field(self, row: Row) -> None:
        self._load_all("custom_field")
        d = row.data
        key = (d.get("object_type"), d.get("name"))
        ok, existing = self.identify("custom_field", row, key, "name")
        data = self.creating("custom_field", row, existing) if ok else None
        if data is None:
            return
        cols = {k: data[k] for k in SIMPLE["custom_field"] if k in data}
        state = {**(self.state("custom_field", existing) if existing else {}), **cols}
        if state.get("type") == "select" and not state.get("choices"):
            self.error("custom_field", row, "choices", "a select field needs choices")
            return
        self.commit("custom_field", row, existing, cols, key)

    def _plan_region(self, row: Row) -> None:
        self._load_all("region")
        d = row.data
        ok, existing = self.identify("region", row, d.get("slug"), "slug")
        data = self.creating("region", row, existing) if ok else None
        if data is None:
            self.failed["region"].add(d.get("slug"))
            return
        cols = {k: data[k] for k in SIMPLE["region"] if k in data}
        ident = self.commit("region", row, existing, cols, cols.get("slug", d.get("slug")))
        if "parent" in data:
            if data["parent"] is None:
                self.set_column("region", ident, "parent_id", None)
            else:
                self.defer(row, "region", ident, "parent_id", "region", data["parent"], "parent")
        elif existing is None:
            self.planned["region"][ident]["parent_id"] = None

    def _finish_region(self) -> None:
        self._check_loops("region", "parent_id")

    def _plan_manufacturer(self, row: Row) -> None:
        self._load_all("manufacturer")
        d = row.data
        slug = d.get("slug")
        if slug is None and d.get("name"):
            by_name = self.alias["manufacturer"].get(d["name"].lower())
            slug = self.state("manufacturer", by_name)["slug"] if by_name else slugify(d["name"])
        ok, existing = self.identify("manufacturer", row, slug, "slug")
        data = self.creating("manufacturer", row, existing) if ok else None
        if data is None:
            return
        cols = {k: data[k] for k in SIMPLE["manufacturer"] if k in data}
        if slug is not None:
            cols["slug"] = slug
        self.commit("manufacturer", row, existing, cols, slug)

    def _plan_site(self, row: Row) -> None:
        self._load_all("site")
        d = row.data
        ok, existing = self.identify("site", row, d.get("code"), "code")
        data = self.creating("site", row, existing) if ok else None
        if data is None:
            self.failed["site"].add(d.get("code"))
            return
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["site"] if k in data}
        if "region" in data:
            region = data["region"]
            cols["region_id"] = (
                None if region is None else self.ref("site", row, "region", "region", region)
            )
        self.tags(data, cols)
        self.custom_fields("site", row, data, cols, existing)
        if len(self.errors) > errors:
            self.failed["site"].add(d.get("code"))
            return
        self.commit("site", row, existing, cols, cols.get("code", d.get("code")))

    def _plan_rack(self, row: Row) -> None:
        self._load_all("rack")
        d = row.data
        site_id = self.ref("rack", row, "site", "site", d["site"]) if d.get("site") else None
        if site_id is None and not d.get("site"):
            found = self._load_by_id("rack", d["id"]) if d.get("id") is not None else None
            if found is None:
                self.error(
                    "rack",
                    row,
                    "site" if d.get("id") is None else "id",
                    "required" if d.get("id") is None else f"no rack with id {d['id']}",
                )
                return
            site_id = found["site_id"]
        if site_id is None:
            return
        key = (site_id, d.get("name"))
        ok, existing = self.identify("rack", row, key, "name")
        data = self.creating("rack", row, existing) if ok else None
        if data is None:
            return
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["rack"] if k in data}
        cols["site_id"] = site_id
        self.tags(data, cols)
        self.custom_fields("rack", row, data, cols, existing)
        if len(self.errors) == errors:
            self.commit("rack", row, existing, cols, key)

    def _manufacturer_for(self, otype: str, row: Row, name: str) -> int:
        """Manufacturers named by device models and module types are created when missing."""
        found = self.find("manufacturer", name)
        if found is None:
            found = self.commit(
                "manufacturer",
                row,
                None,
                {"name": name, "slug": slugify(name), "description": ""},
                slugify(name),
            )
        return found

    def _templates(self, otype: str, row: Row, data: dict[str, Any]) -> list[dict[str, Any]] | None:
        try:
            return devicetypes.parse_templates(
                data["templates"] or {}, module=otype == "module_type"
            )
        except devicetypes.TemplateErrors as exc:
            for err in exc.errors:
                self.error(otype, row, f"templates.{err.field}", err.message)
            return None

    def _existing_templates(self, otype: str, ident: int) -> list[dict[str, Any]]:
        column = m.ComponentTemplate.__table__.c[f"{otype}_id"]
        table: Table = m.ComponentTemplate.__table__  # type: ignore[assignment]
        rows = self.session.execute(
            select(
                table.c.kind,
                table.c.name,
                table.c.label,
                table.c.type,
                table.c.mgmt_only,
                table.c.description,
                table.c.extra,
            )
            .where(column == ident)
            .order_by(table.c.id)
        ).mappings()
        return [dict(r) for r in rows]

    def _plan_device_model(self, row: Row) -> None:
        self._load_all("device_model")
        d = row.data
        ok, existing = self.identify("device_model", row, d.get("slug"), "slug")
        data = self.creating("device_model", row, existing) if ok else None
        if data is None:
            self.failed["device_model"].add(d.get("slug"))
            return
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["device_model"] if k in data}
        self._weight(row, "device_model", data, existing)
        if data.get("manufacturer"):
            cols["manufacturer_id"] = self._manufacturer_for(
                "device_model", row, data["manufacturer"]
            )
        self.tags(data, cols)
        self.custom_fields("device_model", row, data, cols, existing)
        templates = (
            self._templates("device_model", row, data)
            if data.get("templates") is not None
            else None
        )
        if len(self.errors) > errors:
            self.failed["device_model"].add(d.get("slug"))
            return
        ident = self.commit("device_model", row, existing, cols, cols.get("slug", d.get("slug")))
        self._set_templates("device_model", row, ident, existing, templates)

    def _set_templates(
        self,
        otype: str,
        row: Row,
        ident: int,
        existing: int | None,
        templates: list[dict[str, Any]] | None,
    ) -> None:
        if templates is None:
            if existing is None:
                self.templates[otype][ident] = []
            return
        if existing is not None and existing > 0:
            if self._existing_templates(otype, existing) == templates:
                return
            if ident not in self.changes[otype]:
                self.changes[otype][ident] = {"updated_at": self.now}
                self.unchanged[otype] -= 1
        self.templates[otype][ident] = templates

    def _weight(self, row: Row, otype: str, data: dict[str, Any], existing: int | None) -> None:
        state = self.state(otype, existing) if existing else {}
        weight = data.get("weight", state.get("weight"))
        unit = data.get("weight_unit", state.get("weight_unit"))
        if weight is not None and unit is None:
            self.error(otype, row, "weight_unit", "required when weight is given (kg, g, lb, oz)")

    def _plan_module_type(self, row: Row) -> None:
        self._load_all("module_type")
        d = row.data
        if d.get("manufacturer"):
            maker: int | None = self._manufacturer_for("module_type", row, d["manufacturer"])
        elif d.get("id") is not None and self._load_by_id("module_type", d["id"]):
            maker = self.before["module_type"][d["id"]]["manufacturer_id"]
        else:
            self.error("module_type", row, "manufacturer", "required")
            return
        key = (
            maker,
            d.get("model")
            or (self.before["module_type"][d["id"]]["model"] if d.get("id") else None),
        )
        ok, existing = self.identify("module_type", row, key, "model")
        data = self.creating("module_type", row, existing) if ok else None
        if data is None:
            return
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["module_type"] if k in data}
        if maker is not None:
            cols["manufacturer_id"] = maker
        self._weight(row, "module_type", data, existing)
        templates = (
            self._templates("module_type", row, data) if data.get("templates") is not None else None
        )
        if len(self.errors) > errors:
            return
        ident = self.commit("module_type", row, existing, cols, key)
        self._set_templates("module_type", row, ident, existing, templates)

    # devices -------------------------------------------------------------------

    def _prepare_device(self, rows: list[Row]) -> None:
        self._load_all("site")
        self._load_all("device_model")
        self._load_devices(r.data["name"] for r in rows if isinstance(r.data.get("name"), str))
        serials = [r.data.get("serial") for r in rows if isinstance(r.data.get("serial"), str)]
        tags = [r.data.get("asset_tag") for r in rows if isinstance(r.data.get("asset_tag"), str)]
        self._prefetch_unique("device", "serial", serials)
        self._prefetch_unique("device", "asset_tag", tags)
        if any(r.data.get("rack") for r in rows):
            self._load_all("rack")

    def _plan_device(self, row: Row) -> None:
        d = row.data
        name = d.get("name")
        ok, existing = self.identify("device", row, name, "name")
        data = self.creating("device", row, existing) if ok else None
        if data is None:
            self.failed["device"].add(name)
            return
        errors = len(self.errors)
        before = self.state("device", existing) if existing is not None else None
        cols = {k: data[k] for k in SIMPLE["device"] if k in data}
        if "model" in data:
            cols["device_model_id"] = self.ref(
                "device", row, "model", "device_model", data["model"]
            )
        if "site" in data:
            cols["site_id"] = self.ref("device", row, "site", "site", data["site"])
        site_id = cols.get("site_id", before["site_id"] if before else None)
        if "rack" in data:
            rack = data["rack"]
            if rack is None:
                cols["rack_id"] = None
            elif site_id is not None:
                self._load_all("rack")
                rack_id = self.index["rack"].get((site_id, rack))
                if rack_id is None:
                    self.error(
                        "device",
                        row,
                        "rack",
                        f"no rack {rack!r} in site "
                        f"{data.get('site') or self._site_code(site_id)!r}",
                        code="unknown",
                    )
                cols["rack_id"] = rack_id
        elif before is not None and before["rack_id"] is not None and site_id != before["site_id"]:
            self.error(
                "device",
                row,
                "rack",
                "the device moves to another site: give its rack there, or an empty rack",
            )
        rack_id = cols.get("rack_id", before["rack_id"] if before else None)
        position = cols.get("position", before["position"] if before else None)
        if position is not None and rack_id is None:
            self.error("device", row, "position", "a position needs a rack")
        placed = (
            rack_id is not None
            and position is not None
            and any(c in cols for c in ("rack_id", "position", "device_model_id", "face"))
        )
        shown = str(cols.get("name", name))
        if "serial" in cols:
            self.unique("device", row, "serial", cols["serial"], existing, shown)
        if "asset_tag" in cols:
            self.unique("device", row, "asset_tag", cols["asset_tag"], existing, shown)
        if before is not None and "status" in cols and cols["status"] != before["status"]:
            allowed = s.TRANSITIONS[before["status"]]
            if cols["status"] not in allowed:
                shown = ", ".join(sorted(allowed)) or "none: it is final"
                self.error(
                    "device",
                    row,
                    "status",
                    f"cannot go from {before['status']} to {cols['status']} (allowed: {shown})",
                    code="transition",
                )
        self.tags(data, cols)
        self.custom_fields("device", row, data, cols, existing)
        if len(self.errors) > errors:
            self.failed["device"].add(name)
            return
        ident = self.commit("device", row, existing, cols, cols.get("name", name))
        if existing is None:
            self.new_devices.append((ident, cols["device_model_id"]))
        if placed:
            self.rack_moves.append((row, ident))

    def _site_code(self, site_id: int) -> str:
        return str(self.state("site", site_id)["code"])

    def _finish_device(self) -> None:
        self._check_rack_space()
        self._instantiate_devices()

    def _check_rack_space(self) -> None:
        if not self.rack_moves:
            return
        self._load_all("rack")
        self._load_all("device_model")
        racks = {self.state("device", ident)["rack_id"] for _, ident in self.rack_moves}
        occupants: dict[int, dict[int, Mapping[Any, Any]]] = {r: {} for r in racks}
        existing_racks = [r for r in racks if r > 0]
        table = m.Device.__table__
        for chunk in _chunks(existing_racks, 1000):
            stmt = _stored(table).where(table.c.rack_id.in_(chunk), table.c.position.is_not(None))
            for found in self.session.execute(stmt).mappings():
                if found["id"] not in self.before["device"]:
                    self._store("device", found)
                state = self.state("device", found["id"])
                if state["rack_id"] in occupants:
                    occupants[state["rack_id"]][found["id"]] = state
        moved = {ident for _, ident in self.rack_moves}
        for ident in moved:
            state = self.state("device", ident)
            occupants[state["rack_id"]][ident] = state
        for row, ident in self.rack_moves:
            state = self.state("device", ident)
            rack = self.state("rack", state["rack_id"])
            model = self.state("device_model", state["device_model_id"])
            top = state["position"] + max(model["u_height"], 1) - 1
            if top > rack["u_height"]:
                self.error(
                    "device",
                    row,
                    "position",
                    f"U{state['position']:g} with a height of "
                    f"{model['u_height']:g}U does not fit in rack {rack['name']!r} "
                    f"({rack['u_height']}U)",
                )
                continue
            for other_id, other in occupants[state["rack_id"]].items():
                if other_id == ident or other.get("position") is None:
                    continue
                other_model = self.state("device_model", other["device_model_id"])
                if not _overlap(state, model, other, other_model):
                    continue
                self.error(
                    "device",
                    row,
                    "position",
                    f"U{state['position']:g} is taken by {other['name']!r}",
                    code="conflict",
                )
                break

    def _instantiate_devices(self) -> None:
        """New devices get their model's templates as parts, planned before the file's own rows.

        The column rows are built once per model and copied per device; a file
        row for the same part (say `eth0` with its MAC address) then updates
        the planned part instead of adding one.
        """
        if not self.new_devices:
            return
        model_ids = {model for _, model in self.new_devices if model is not None}
        self._load_templates("device_model", model_ids)
        for model_id in model_ids:
            if model_id not in self.model_parts:
                self.model_parts[model_id] = self._template_columns(
                    devicetypes.instantiate(self.templates["device_model"].get(model_id, []))
                )
        self.template_devices.extend(self.new_devices)
        self.new_devices = []

    def _template_columns(
        self, made: dict[str, list[dict[str, Any]]]
    ) -> dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]]]]:
        """Per part type: column rows (without device) and (row, peer row) index pairs."""
        out: dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]]]] = {}
        for otype, items in made.items():
            rows: list[dict[str, Any]] = []
            peers: list[tuple[int, int]] = []
            names = {(i.get("kind"), i["name"]): n for n, i in enumerate(items)}
            for item in items:
                cols = {k: v for k, v in item.items() if k in SIMPLE[otype] and v not in ("", None)}
                if otype == "interface":
                    cols = {k: v for k, v in cols.items() if (k, v) not in _INTERFACE_DEFAULTS}
                if otype == "component" and item.get("manufacturer"):
                    cols["manufacturer_id"] = self.find("manufacturer", item["manufacturer"])
                if otype == "port":
                    if item.get("rear_port_position") is not None:
                        cols["peer_position"] = item["rear_port_position"]
                    for field, kind in (("rear_port", "rear-port"), ("power_port", "power-port")):
                        if item.get(field) is not None:
                            peers.append((len(rows), names[(kind, item[field])]))
                rows.append(cols)
            out[otype] = (rows, peers)
        return out

    def _plan_templates(self, otype: str) -> None:
        planned, index = self.planned[otype], self.index[otype]
        with_kind = otype in ("bay", "port")
        for device_id, model_id in self.template_devices:
            rows, peers = self.model_parts[model_id].get(otype, ((), ()))
            if not rows:
                continue
            ids = []
            for cols in rows:
                self.next_temp[otype] += 1
                ident = -self.next_temp[otype]
                row = {**cols, "device_id": device_id, "id": ident}
                planned[ident] = row
                key = (
                    (device_id, row["kind"], row["name"]) if with_kind else (device_id, row["name"])
                )
                index[key] = ident
                ids.append(ident)
            for child, peer in peers:
                planned[ids[child]]["peer_id"] = ids[peer]

    def _load_templates(self, otype: str, ids: Iterable[int]) -> None:
        wanted = [i for i in ids if i > 0 and i not in self.templates[otype]]
        if not wanted:
            return
        table: Table = m.ComponentTemplate.__table__  # type: ignore[assignment]
        column = table.c[f"{otype}_id"]
        for ident in wanted:
            self.templates[otype][ident] = []
        stmt = select(
            column.label("owner"),
            table.c.kind,
            table.c.name,
            table.c.label,
            table.c.type,
            table.c.mgmt_only,
            table.c.description,
            table.c.extra,
        )
        for chunk in _chunks(wanted, 1000):
            for found in self.session.execute(
                stmt.where(column.in_(chunk)).order_by(table.c.id)
            ).mappings():
                row = dict(found)
                self.templates[otype][row.pop("owner")].append(row)

    # parts of devices -------------------------------------------------------------

    def _device_for(self, otype: str, row: Row) -> int | None:
        name = row.data.get("device")
        if name is None:
            if row.data.get("id") is None:
                self.error(otype, row, "device", "required")
            return None
        return self.ref(otype, row, "device", "device", name)

    def _prepare_children(self, otype: str, rows: list[Row]) -> None:
        """Note which stored devices the rows touch, in order; their parts load as needed.

        Parts are loaded 1,000 devices at a time as planning reaches them, so a
        re-import never holds every parsed row and every stored row at once.
        """
        names = dict.fromkeys(name for r in rows if isinstance(name := r.data.get("device"), str))
        self._load_devices(names)
        order = [i for n in names if (i := self.index["device"].get(n)) is not None and i > 0]
        self.upcoming[otype] = order
        self.upcoming_at[otype] = {ident: at for at, ident in enumerate(order)}

    def _child_identify(
        self,
        otype: str,
        row: Row,
        key_tail: tuple[Any, ...],
    ) -> tuple[int | None, int | None, bool]:
        """(device id, existing id, ok) for a part of a device."""
        ident = row.data.get("id")
        device_id = self._device_for(otype, row)
        if device_id is None and ident is None:
            return None, None, False
        if device_id is None:
            found = self._load_by_id(otype, int(ident or 0))
            if found is None:
                self.error(otype, row, "id", f"no {TYPES[otype].label} with id {ident}")
                return None, None, False
            device_id = found["device_id"]
        if device_id > 0 and device_id not in self.loaded_devices[otype]:
            at = self.upcoming_at[otype].get(device_id)
            ahead = self.upcoming[otype][at : at + 1000] if at is not None else []
            self._load_children(otype, [device_id, *ahead])
        key = (device_id, *key_tail)
        ok, existing = self.identify(otype, row, key, "name")
        return device_id, existing, ok

    def _prepare_bay(self, rows: list[Row]) -> None:
        self._prepare_children("bay", rows)

    def _plan_bay(self, row: Row) -> None:
        d = row.data
        device_id, existing, ok = self._child_identify(
            "bay", row, (d.get("kind", "module-bay"), d.get("name"))
        )
        data = self.creating("bay", row, existing) if ok else None
        if data is None or device_id is None:
            return
        cols = {k: data[k] for k in SIMPLE["bay"] if k in data}
        cols["device_id"] = device_id
        if "installed_device" in data:
            child = data["installed_device"]
            cols["installed_device_id"] = (
                None if child is None else self.ref("bay", row, "installed_device", "device", child)
            )
            if child is not None and cols["installed_device_id"] is None:
                return
        kind = cols.get("kind") or (
            self.state("bay", existing)["kind"] if existing else "module-bay"
        )
        self.commit("bay", row, existing, cols, (device_id, kind, cols.get("name", d.get("name"))))

    def _prepare_component(self, rows: list[Row]) -> None:
        self._prepare_children("component", rows)
        devices = [
            self.index["device"][r.data["device"]]
            for r in rows
            if r.data.get("bay") and r.data.get("device") in self.index["device"]
        ]
        self._load_children("bay", devices)

    def _plan_component(self, row: Row) -> None:
        d = row.data
        device_id, existing, ok = self._child_identify("component", row, (d.get("name"),))
        data = self.creating("component", row, existing) if ok else None
        if data is None or device_id is None:
            if device_id is not None:
                self.failed["component"].add((device_id, d.get("name")))
            return
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["component"] if k in data}
        cols["device_id"] = device_id
        if "manufacturer" in data:
            maker = data["manufacturer"]
            cols["manufacturer_id"] = None if maker is None else self.find("manufacturer", maker)
            if maker is not None and cols["manufacturer_id"] is None and not row.template:
                self.error("component", row, "manufacturer", f"unknown manufacturer {maker!r}")
        if "module_type" in data:
            kind = data["module_type"]
            cols["module_type_id"] = (
                None
                if kind is None
                else self.ref("component", row, "module_type", "module_type", kind)
            )
        state = cols if existing is None else {**self.state("component", existing), **cols}
        if "bay" in data:
            bay = data["bay"]
            if bay is None:
                cols["bay_id"] = None
            else:
                self._load_children("bay", [device_id])
                bay_id = self.index["bay"].get((device_id, "module-bay", bay))
                if bay_id is None:
                    self.error(
                        "component",
                        row,
                        "bay",
                        f"device {self._device_name(device_id)!r} has no module bay {bay!r}",
                        code="unknown",
                    )
                else:
                    holder = self.used_bays.get(bay_id)
                    if holder is not None and holder != existing:
                        self.error(
                            "component",
                            row,
                            "bay",
                            f"module bay {bay!r} already holds another module",
                            code="conflict",
                        )
                    self.used_bays[bay_id] = existing or 0
                    cols["bay_id"] = bay_id
            if state is not cols:
                state["bay_id"] = cols.get("bay_id")
        if state.get("kind") == "module":
            if state.get("bay_id") is None and not data.get("bay"):
                self.error("component", row, "bay", "a module goes in a module bay")
        elif state.get("bay_id") is not None or state.get("module_type_id") is not None:
            self.error("component", row, "kind", "only modules have a bay or a module type")
        self.custom_fields("component", row, data, cols, existing)
        if len(self.errors) > errors:
            self.failed["component"].add((device_id, d.get("name")))
            return
        key = (device_id, cols.get("name", d.get("name")))
        ident = self.commit("component", row, existing, cols, key)
        if "parent" in data:
            if data["parent"] is None:
                self.set_column("component", ident, "parent_id", None)
            else:
                self.defer(
                    row,
                    "component",
                    ident,
                    "parent_id",
                    "component",
                    (device_id, data["parent"]),
                    "parent",
                )
        elif existing is None:
            self.planned["component"][ident]["parent_id"] = None
        if existing is None and state.get("kind") == "module" and state.get("module_type_id"):
            self.new_modules.append(ident)

    def _device_name(self, device_id: int) -> str:
        return str(self.state("device", device_id)["name"])

    def _finish_component(self) -> None:
        self._check_loops("component", "parent_id")
        self._load_templates(
            "module_type",
            {self.planned["component"][i]["module_type_id"] for i in self.new_modules},
        )
        for ident in self.new_modules:
            module = self.planned["component"][ident]
            bay = self.state("bay", module["bay_id"])
            created = devicetypes.instantiate(
                self.templates["module_type"].get(module["module_type_id"], []),
                module_position=bay.get("position") or bay["name"],
            )
            device = self._device_name(module["device_id"])
            for otype in ("interface", "port"):
                self.sections[otype] = [
                    Row(
                        {**item, "device": device, "module": module["name"]},
                        None,
                        f"template of module {module['name']!r}",
                        validated=True,
                        template=True,
                    )
                    for item in created[otype]
                ] + self.sections[otype]
        self.new_modules = []

    def _module(self, otype: str, row: Row, device_id: int, name: str | None) -> int | None:
        if name is None:
            return None
        self._load_children("component", [device_id])
        found = self.index["component"].get((device_id, name))
        if found is None:
            if (device_id, name) not in self.failed["component"]:
                self.error(
                    otype,
                    row,
                    "module",
                    f"device {self._device_name(device_id)!r} has no module {name!r}",
                    code="unknown",
                )
            return None
        if self.state("component", found)["kind"] != "module":
            self.error(otype, row, "module", f"{name!r} is not a module")
        return found

    def _prepare_interface(self, rows: list[Row]) -> None:
        self._prepare_children("interface", rows)

    def _plan_interface(self, row: Row) -> None:
        d = row.data
        device_id, existing, ok = self._child_identify("interface", row, (d.get("name"),))
        data = self.creating("interface", row, existing) if ok else None
        if data is None or device_id is None:
            return
        if row.template and existing is not None and existing > 0:
            data = {k: v for k, v in data.items() if k in ("device", "module")}  # adopt it
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["interface"] if k in data}
        cols["device_id"] = device_id
        if existing is None and cols.get("speed") is None:
            cols["speed"] = devicetypes.speed_from_type(cols.get("type"))
        if "module" in data:
            cols["module_id"] = self._module("interface", row, device_id, data["module"])
        if len(self.errors) == errors:
            self.commit(
                "interface", row, existing, cols, (device_id, cols.get("name", d.get("name")))
            )

    def _prepare_port(self, rows: list[Row]) -> None:
        self._prepare_children("port", rows)

    def _plan_port(self, row: Row) -> None:
        d = row.data
        device_id, existing, ok = self._child_identify("port", row, (d.get("kind"), d.get("name")))
        data = self.creating("port", row, existing) if ok else None
        if data is None or device_id is None:
            return
        if row.template and existing is not None and existing > 0:
            data = {k: v for k, v in data.items() if k in ("device", "module")}  # adopt it
        errors = len(self.errors)
        cols = {k: data[k] for k in SIMPLE["port"] if k in data}
        cols["device_id"] = device_id
        kind = cols.get("kind") or self.state("port", existing or 0)["kind"]
        if "module" in data:
            cols["module_id"] = self._module("port", row, device_id, data["module"])
        if "rear_port_position" in data:
            cols["peer_position"] = data["rear_port_position"]
        if len(self.errors) > errors:
            return
        key = (device_id, kind, cols.get("name", d.get("name")))
        ident = self.commit("port", row, existing, cols, key)
        for fieldname, peer_kind, wanted_kind in (
            ("rear_port", "rear-port", "front-port"),
            ("power_port", "power-port", "power-outlet"),
        ):
            if data.get(fieldname) is None:
                continue
            if kind != wanted_kind:
                self.error("port", row, fieldname, f"only a {wanted_kind} has a {fieldname}")
                continue
            self.defer(
                row,
                "port",
                ident,
                "peer_id",
                "port",
                (device_id, peer_kind, data[fieldname]),
                fieldname,
            )
        if kind == "front-port" and existing is None and data.get("rear_port") is None:
            self.error("port", row, "rear_port", "required for a front port")

    def _finish_port(self) -> None:
        fronts = [i for i, row in self.planned["port"].items() if row.get("kind") == "front-port"]
        for ident in [*fronts, *self.changes["port"]]:
            state = self.state("port", ident)
            if state["kind"] != "front-port" or state.get("peer_id") is None:
                continue
            rear = self.state("port", state["peer_id"])
            if (state.get("peer_position") or 1) > (rear.get("positions") or 1):
                self.errors.append(
                    RowError(
                        "ports",
                        None,
                        "rear_port_position",
                        f"rear port {rear['name']!r} has only "
                        f"{rear.get('positions') or 1} positions",
                    )
                )
            if state.get("peer_position") is None:
                self.set_column("port", ident, "peer_position", 1)

    # links ----------------------------------------------------------------------

    def _prepare_link(self, rows: list[Row]) -> None:
        names = {r.data.get(k) for r in rows for k in ("a_device", "b_device")}
        self._load_devices(n for n in names if isinstance(n, str))
        ids = [self.index["device"][n] for n in names if n in self.index["device"]]
        self._load_children("interface", ids)
        self._load_children("port", ids)

    def _end(self, row: Row, side: str) -> tuple[str, int, int] | None:
        d = row.data
        device_id = (
            self.ref("link", row, f"{side}_device", "device", d[f"{side}_device"])
            if (d.get(f"{side}_device"))
            else None
        )
        if device_id is None:
            if not d.get(f"{side}_device"):
                self.error("link", row, f"{side}_device", "required")
            return None
        kind, name = d.get(f"{side}_kind", "interface"), d.get(f"{side}_name")
        if name is None:
            self.error("link", row, f"{side}_name", "required")
            return None
        if kind == "interface":
            found = self.child("interface", (device_id, name))
            end_type = "interface"
        else:
            found = self.child("port", (device_id, kind, name))
            end_type = "port"
        if found is None:
            self.error(
                "link",
                row,
                f"{side}_name",
                f"device {d[f'{side}_device']!r} has no {kind} {name!r}",
                code="unknown",
            )
            return None
        return end_type, found, device_id

    def _plan_link(self, row: Row) -> None:
        a, b = self._end(row, "a"), self._end(row, "b")
        if a is None or b is None:
            return
        if a[:2] == b[:2]:
            self.error("link", row, "b_name", "a link needs two different ends")
            return
        data = row.data

        def stored_link(end: tuple[str, int, int]) -> int | None:
            return self.before[end[0]][end[1]].get("link_id") if end[1] > 0 else None

        current = {stored_link(a), stored_link(b)}
        existing: int | None = None
        if data.get("id") is not None:
            found = self._load_by_id("link", data["id"])
            if found is None:
                self.error("link", row, "id", f"no link with id {data['id']}", code="not_found")
                return
            if {(found["a_type"], found["a_id"]), (found["b_type"], found["b_id"])} != {
                a[:2],
                b[:2],
            }:
                self.error(
                    "link",
                    row,
                    "a_name",
                    "a link's ends cannot change: delete it and create another",
                )
                return
            existing = data["id"]
        elif len(current) == 1 and None not in current:
            existing = current.pop()
        for side, end in (("a", a), ("b", b)):
            used = self.link_ends.get(end[:2])
            if used is not None:
                self.error(
                    "link",
                    row,
                    f"{side}_name",
                    f"{data[f'{side}_name']!r} is already used by line {used} of this batch",
                    code="conflict",
                )
                return
            linked = stored_link(end)
            if linked is not None and linked != existing:
                self.error(
                    "link",
                    row,
                    f"{side}_name",
                    f"{data[f'{side}_name']!r} is already connected (link {linked})",
                    code="conflict",
                )
                return
        if existing is not None:
            self._load_by_id("link", existing)
            if self.mode == "create":
                self.error("link", row, "a_name", "these ends are already linked", code="duplicate")
                return
        elif self.mode == "update":
            self.error("link", row, "a_name", "no link between these ends", code="not_found")
            return
        if existing is None:
            data = {**input_defaults("link"), **data}
        cols = {k: data[k] for k in SIMPLE["link"] if k in data}
        if existing is None:
            cols.update(
                a_type=a[0], a_id=a[1], a_device_id=a[2], b_type=b[0], b_id=b[1], b_device_id=b[2]
            )
            key: Any = (a[0], a[1], b[0], b[1])
        else:
            key = self.key_of("link", self.before["link"][existing])
        ident = self.commit("link", row, existing, cols, key)
        for end in (a, b):
            self.link_ends[end[:2]] = row.line or 0
            if existing is None:
                self.set_column(end[0], end[1], "link_id", ident)

    # -- result -------------------------------------------------------------------

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

    # -- writing ------------------------------------------------------------------

    def write(self) -> dict[str, list[int]]:
        """Write the plan; on SQLite with a large page cache, as indexes grow with every row."""
        connection = self.session.connection()
        if connection.dialect.name != "sqlite" or self.total_rows < 10000:
            return self._write()
        previous = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        connection.exec_driver_sql("PRAGMA cache_size=-65536")  # 64 MiB
        try:
            return self._write()
        finally:
            connection.exec_driver_sql(f"PRAGMA cache_size={int(previous or -2000)}")

    def _write(self) -> dict[str, list[int]]:
        if self.planned["device"] or self.changes["device"]:
            search.ensure(self.session.connection())
        real: dict[str, list[int]] = {}
        written = 0
        total = sum(len(p) for p in self.planned.values()) or 1
        for otype in ORDER:
            planned = self.planned[otype]
            if planned:
                ids = self._allocate(otype, len(planned))
                real[otype] = ids
        self.real = real
        for otype in ORDER:
            self._write_creates(otype)
            written += len(self.planned[otype])
            if self.progress is not None and self.planned[otype]:
                self.progress(written, total, "written")
            self._write_updates(otype)
            if otype in ("device_model", "module_type"):
                self._write_templates(otype)
            if otype in TAGGED:
                self._write_taggings(otype)
        return {otype: ids for otype, ids in real.items()}

    def translate(self, otype: str, value: int | None) -> int | None:
        if value is None or value > 0:
            return value
        return self.real[otype][-value - 1]

    def _allocate(self, otype: str, count: int) -> list[int]:
        """Ids for new rows, one block per table, so children can refer to them before insert."""
        table = TYPES[otype].table
        if self.session.get_bind().dialect.name == "postgresql":
            seq = self.session.scalar(text(f"SELECT pg_get_serial_sequence('{table.name}', 'id')"))
            return list(
                self.session.scalars(
                    text("SELECT nextval(:seq) FROM generate_series(1, :n)"),
                    {"seq": seq, "n": count},
                )
            )
        start = int(self.session.scalar(select(func.max(table.c.id))) or 0) + 1
        return list(range(start, start + count))

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

    def _write_creates(self, otype: str) -> None:
        """Insert planned rows with executemany straight to the driver, chunk by chunk.

        `session.execute(insert(table), rows)` spends most of its time in per-row
        parameter handling. Here each planned row becomes a list of column values
        in one pass: defaults for what it left out, real ids for temporary ones,
        and the column types' own bind processing (dates, JSON, UTC datetimes);
        each planned row is dropped once its chunk is sent.
        """
        planned = self.planned[otype]
        if not planned:
            return
        table = TYPES[otype].table
        connection = self.session.connection()
        dialect = connection.dialect
        compiled = insert(table).compile(dialect=dialect)
        names = list(compiled.positiontup or []) if compiled.positional else list(compiled.params)
        position = {name: index for index, name in enumerate(names)}
        base = self.defaults(otype)
        defaults = [base[name] for name in names]
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((index, _last_value_cached(process)))
                if defaults[index] is not None:
                    defaults[index] = process(defaults[index])
        fks = [(position[c], self.real.get(t, [])) for c, t in FKS.get(otype, {}).items()]
        id_at = position["id"]
        self_fk = SELF_FK.get(otype)
        parent_at = position[self_fk] if self_fk else None
        real = self.real[otype]
        small = len(planned) <= PER_OBJECT_LIMIT
        count = len(planned)
        chunk: list[Any] = []
        later: list[list[Any]] = []
        for temp in list(planned):
            row = planned.pop(temp)
            if otype == "link":
                row["a_id"] = self.translate(row["a_type"], row["a_id"])
                row["b_id"] = self.translate(row["b_type"], row["b_id"])
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
            self._note_created(otype, row, ident)
            if small:
                full = {**base, **row, "id": ident}
                for column, target in FKS.get(otype, {}).items():
                    full[column] = self.translate(target, full[column])
                self.created_rows.setdefault(otype, []).append(full)
            if waits:
                later.append(values)  # its parent is new too: insert parents first
                continue
            chunk.append(values)
            if len(chunk) >= 20000:
                self._executemany(compiled, names, chunk)
                chunk = []
        if chunk:
            self._executemany(compiled, names, chunk)
        if later and parent_at is not None:
            for batch in _by_depth(later, id_at, parent_at):
                self._executemany(compiled, names, batch)
        self.created_count[otype] = count
        if otype == "link":
            self._connect_ends()

    def _note_created(self, otype: str, row: dict[str, Any], ident: int) -> None:
        """What audit, events and taggings need to know about a new row."""
        if otype == "link":
            self.created_links.append(
                (ident, row["a_type"], row["a_id"], row["b_type"], row["b_id"])
            )
        elif otype == "device":
            self.devices_added[self.translate("site", row["site_id"]) or 0] += 1
        elif otype == "component" and row.get("status") == "failed":
            device = self.translate("device", row["device_id"])
            self.created_failed.append(
                {**self.defaults(otype), **row, "id": ident, "device_id": device}
            )
        if otype in TAGGED and row.get("tags"):
            self.created_tags.setdefault(otype, []).append((ident, row["tags"]))

    def _insert_plain(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Rows that all carry the same columns (template rows, taggings) via the driver."""
        if not rows:
            return
        dialect = self.session.connection().dialect
        compiled = insert(table).compile(dialect=dialect, column_keys=list(rows[0]))
        names = list(compiled.positiontup or []) if compiled.positional else list(compiled.params)
        processors = [
            (index, process)
            for index, name in enumerate(names)
            if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            is not None
        ]
        params = []
        for row in rows:
            values = [row.get(name) for name in names]
            for index, convert in processors:
                if values[index] is not None:
                    values[index] = convert(values[index])
            params.append(values)
        self._executemany(compiled, names, params)

    def _executemany(self, compiled: Any, names: list[str], params: list[Any]) -> None:
        connection = self.session.connection()
        if not compiled.positional:
            params = [dict(zip(names, values, strict=True)) for values in params]
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.string, params)
        finally:
            cursor.close()

    def _connect_ends(self) -> None:
        for end_type in ("interface", "port"):
            table = TYPES[end_type].table
            params = []
            for link_id, a_type, a_id, b_type, b_id in self.created_links:
                for t, i in ((a_type, a_id), (b_type, b_id)):
                    if t == end_type:
                        params.append({"_id": i, "_link": link_id})
            for chunk in _chunks(params, 20000):
                self.session.execute(
                    update(table)
                    .where(table.c.id == bindparam("_id"))
                    .values(link_id=bindparam("_link"))
                    .execution_options(synchronize_session=False),
                    list(chunk),
                )

    def _write_updates(self, otype: str) -> None:
        changes = self.changes[otype]
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
                    value = self.real[target][-value - 1]
                params[column] = value
            if otype in TIMESTAMPED:
                params["updated_at"] = self.now
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
            for chunk in _chunks(params_list, 20000):
                self.session.execute(
                    stmt, list(chunk), execution_options={"synchronize_session": False}
                )

    def _write_templates(self, otype: str) -> None:
        table: Table = m.ComponentTemplate.__table__  # type: ignore[assignment]
        column = f"{otype}_id"
        replaced = [i for i in self.templates[otype] if i > 0]
        for chunk in _chunks(replaced, 1000):
            self.session.execute(delete(table).where(table.c[column].in_(chunk)))
        rows = []
        other = "module_type_id" if otype == "device_model" else "device_model_id"
        for ident, templates in self.templates[otype].items():
            owner = self.translate(otype, ident)
            for tpl in templates:
                rows.append({**tpl, column: owner, other: None})
        for chunk in _chunks(rows, 20000):
            self._insert_plain(table, list(chunk))

    def _write_taggings(self, otype: str) -> None:
        table: Table = m.Tagging.__table__  # type: ignore[assignment]
        rows = [
            {"object_type": otype, "object_id": ident, "tag": tag}
            for ident, tags in self.created_tags.get(otype, [])
            for tag in tags
        ]
        changed = [
            (ident, diff["tags"]) for ident, diff in self.changes[otype].items() if "tags" in diff
        ]
        for chunk in _chunks([i for i, _ in changed], 1000):
            self.session.execute(
                delete(table).where(table.c.object_type == otype, table.c.object_id.in_(chunk))
            )
        rows += [
            {"object_type": otype, "object_id": i, "tag": t} for i, tags in changed for t in tags
        ]
        for chunk in _chunks(rows, 20000):
            self._insert_plain(table, list(chunk))

    # -- audit and events -----------------------------------------------------------

    def record(self, result: BatchResult, *, summary: bool) -> None:
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
        total = sum(self.created_count.values()) + sum(len(c) for c in self.changes.values())
        small = total <= PER_OBJECT_LIMIT
        if small:
            for otype, rows in self.created_rows.items():
                for row in rows:
                    record_change(self.session, "create", otype, row["id"], after=jsonable(row))
                    emit(
                        self.session,
                        f"inventory.{otype}.created",
                        otype,
                        row["id"],
                        self._payload(otype, row),
                    )
                    if otype == "device":
                        emit(
                            self.session,
                            "inventory.device.added_to_site",
                            "device",
                            row["id"],
                            {"device": row["name"], "site": self._code(row["site_id"])},
                        )
            for row in self.created_failed:
                self._component_failed(row)
        for otype in ORDER:
            for ident, diff in self.changes[otype].items():
                if not diff:
                    continue
                before = self.before[otype][ident]
                after = {**before, **self._translated(otype, diff)}
                if small and not (otype in ("interface", "port") and set(diff) == {"link_id"}):
                    record_change(
                        self.session,
                        "update",
                        otype,
                        ident,
                        before=jsonable(before),
                        after=jsonable(after),
                    )
                    emit(
                        self.session,
                        f"inventory.{otype}.updated",
                        otype,
                        ident,
                        {**self._payload(otype, after), "changed": sorted(diff)},
                    )
                self._specific_events(otype, before, after)
        if summary or not small:
            payload = {
                "source": self.source,
                "counts": result.counts,
                "totals": result.totals,
                "devices_added_by_site": {self._code(k): v for k, v in self.devices_added.items()},
            }
            record_change(self.session, "import", "import", self.source[:80], after=payload)
            emit(self.session, "inventory.import.completed", "import", self.source[:80], payload)

    def _translated(self, otype: str, diff: dict[str, Any]) -> dict[str, Any]:
        fks = {**FKS.get(otype, {}), "link_id": "link"}
        return {k: self.translate(fks[k], v) if k in fks else v for k, v in diff.items()}

    def _code(self, site_id: int) -> str:
        found = self.before["site"].get(site_id)
        if found is None:
            stored = self.session.scalar(select(m.Site.code).where(m.Site.id == site_id))
            code = stored if stored is not None else str(site_id)
            self.before["site"][site_id] = {"code": code}
            return str(code)
        return str(found["code"])

    def _payload(self, otype: str, row: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for key in ("name", "code", "slug", "model", "kind", "status"):
            if key in row:
                payload[key] = row[key]
        if otype in CHILDREN:
            payload["device_id"] = row["device_id"]
        if otype == "device":
            payload["site"] = self._code(row["site_id"])
        return payload

    def _specific_events(
        self, otype: str, before: Mapping[Any, Any], after: Mapping[Any, Any]
    ) -> None:
        if otype == "device":
            if before["status"] != after["status"]:
                emit(
                    self.session,
                    "inventory.device.status_changed",
                    "device",
                    after["id"],
                    {
                        "device": after["name"],
                        "site": self._code(after["site_id"]),
                        "from": before["status"],
                        "to": after["status"],
                        "reason": self.reason,
                    },
                )
            if before["site_id"] != after["site_id"]:
                emit(
                    self.session,
                    "inventory.device.removed_from_site",
                    "device",
                    after["id"],
                    {"device": after["name"], "site": self._code(before["site_id"])},
                )
                emit(
                    self.session,
                    "inventory.device.added_to_site",
                    "device",
                    after["id"],
                    {"device": after["name"], "site": self._code(after["site_id"])},
                )
        if otype == "component" and after["status"] == "failed" and before["status"] != "failed":
            self._component_failed(after)

    def _component_failed(self, row: Mapping[Any, Any]) -> None:
        device = self.session.execute(
            select(m.Device.name, m.Device.site_id).where(m.Device.id == row["device_id"])
        ).first()
        emit(
            self.session,
            "inventory.component.failed",
            "component",
            row["id"],
            {
                "device": device[0] if device else None,
                "device_id": row["device_id"],
                "site": self._code(device[1]) if device else None,
                "component": row["name"],
                "kind": row["kind"],
                "serial": row["serial"],
                "reason": self.reason,
            },
        )


_INTERFACE_DEFAULTS = {("mgmt_only", False), ("enabled", True)}


def _stored(table: Any) -> Any:
    """Stored rows as planning compares them: every column but the timestamps."""
    return select(*[c for c in table.c if c.name not in ("created_at", "updated_at")])


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


def _overlap(
    a: Mapping[Any, Any],
    a_model: Mapping[Any, Any],
    b: Mapping[Any, Any],
    b_model: Mapping[Any, Any],
) -> bool:
    a_low, b_low = a["position"], b["position"]
    a_high = a_low + max(a_model["u_height"], 0.5)
    b_high = b_low + max(b_model["u_height"], 0.5)
    if a_high <= b_low or b_high <= a_low:
        return False
    if a_model["u_height"] == 0 or b_model["u_height"] == 0:
        return False
    both_faces = a_model["is_full_depth"] or b_model["is_full_depth"]
    return bool(both_faces or a.get("face") == b.get("face"))


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


def apply(
    session: Session,
    sections: dict[str, list[Row]],
    *,
    mode: str = "upsert",
    dry_run: bool = False,
    source: str = "api",
    summary: bool = False,
    reason: str = "",
    progress: Progress | None = None,
) -> BatchResult:
    """Check every row, then write them all or nothing. Raises InvalidInput with every error.

    `sections` is consumed: rows are dropped as they are planned.

    `summary=True` (file imports) always adds the one "import" audit record.
    """
    started = time.perf_counter()
    batch = Batch(session, mode=mode, source=source, reason=reason)
    batch.progress = progress
    for otype in list(sections):
        batch.add(otype, sections.pop(otype))
    batch.plan()
    batch.raise_errors()
    counts = batch.counts()
    result = BatchResult(dry_run=dry_run, counts=counts, ids={})
    if dry_run:
        result.seconds = time.perf_counter() - started
        return result
    dbapi = session.connection().dialect.dbapi
    conflicts: tuple[type[Exception], ...] = (IntegrityError,)
    if dbapi is not None:
        conflicts += (dbapi.IntegrityError,)
    try:
        batch.write()
    except conflicts as exc:
        # A rule the checks above do not cover (say, a second name for one manufacturer).
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise Conflict(f"the change conflicts with stored data: {detail}") from None
    result.ids = {otype: ids for otype, ids in batch.real.items()}
    for otype in ORDER:
        touched = [i for i in batch.touched[otype] if i > 0]
        if touched:
            result.ids.setdefault(otype, [])
            result.ids[otype] = [*result.ids[otype], *touched]
    batch.record(result, summary=summary)
    result.seconds = time.perf_counter() - started
    return result


def single(
    session: Session, otype: str, data: dict[str, Any], *, mode: str, reason: str = ""
) -> int:
    """Create or update one object; errors become one 409 (duplicates) or 422 naming fields."""
    try:
        result = apply(
            session, {otype: [Row(dict(data), where=TYPES[otype].label)]}, mode=mode, reason=reason
        )
    except InvalidInput as exc:
        errors = exc.details.get("errors", [])
        fields: dict[str, list[str]] = {}
        for err in errors:
            fields.setdefault(err["field"], []).append(err["message"])
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        codes = {e.get("code") for e in errors}
        if codes == {"duplicate"}:
            raise Conflict(message, details={"fields": fields}) from None
        if codes == {"not_found"}:
            raise NotFound(message, details={"fields": fields}) from None
        raise InvalidInput(message, details={"fields": fields}) from None
    ids = result.ids.get(otype) or []
    return ids[0]
