"""A NetBox dump as read, what it becomes, and the registry of mappers per NetBox model.

A mapper turns one NetBox record into Popcorn import rows (the same rows a
file import makes), so every rule of `bulk.apply` holds for a NetBox dump too.
Mappers register by NetBox model name (`dcim.device`, `ipam.ipaddress`…); a
family of models (IPAM, circuits, power) adds its own module of mappers. A
model with no mapper that no mapper reads either is reported as skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from popcorn.errors import InvalidInput
from popcorn.inventory.bulk import Row

Record = dict[str, Any]


class Dump:
    """The records of a `manage.py dumpdata` list, by model and primary key."""

    def __init__(self, items: Iterable[Any]):
        self.models: dict[str, dict[Any, Record]] = {}
        for index, item in enumerate(items):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("model"), str)
                and isinstance(item.get("fields"), dict)
            ):
                raise InvalidInput(
                    f"record {index}: expected {{'model', 'pk', 'fields'}} as dumpdata writes it"
                )
            self.models.setdefault(item["model"].lower(), {})[item.get("pk")] = item["fields"]
        self.content_types = {
            pk: f"{f.get('app_label')}.{f.get('model')}"
            for pk, f in self.all("contenttypes.contenttype").items()
        }
        self.cache: dict[str, Any] = {}  # derived lookups, built once by the mappers

    def all(self, model: str) -> dict[Any, Record]:
        return self.models.get(model, {})

    def get(self, model: str, pk: Any) -> Record | None:
        if pk is None:
            return None
        return self.models.get(model, {}).get(pk)

    def field(self, model: str, pk: Any, name: str = "name") -> Any:
        record = self.get(model, pk)
        return None if record is None else record.get(name)

    def content_type(self, value: Any) -> str | None:
        """`app.model` of a content type given as a pk or as a natural key (`["dcim", "site"]`)."""
        if isinstance(value, list | tuple) and len(value) == 2:
            return f"{value[0]}.{value[1]}".lower()
        if isinstance(value, str) and "." in value:
            return value.lower()
        return self.content_types.get(value)

    def derived(self, name: str, build: Callable[[Dump], Any]) -> Any:
        if name not in self.cache:
            self.cache[name] = build(self)
        return self.cache[name]


@dataclass
class Plan:
    """The rows a dump becomes, which NetBox record each came from, and what was left out."""

    sections: dict[str, list[Row]] = field(default_factory=dict)
    keys: list[tuple[str, Any, str, tuple[Any, ...]]] = field(default_factory=list)
    mapped: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    extra_fields: dict[tuple[str, str], str] = field(default_factory=dict)
    # Cables with an end written late: (NetBox pk, fields, {"A"/"B": (model, pk)}).
    late_cables: list[tuple[Any, Record, dict[str, tuple[str, Any]]]] = field(default_factory=list)

    def add(self, otype: str, data: Record, model: str, pk: Any, key: tuple[Any, ...]) -> None:
        """One Popcorn row from NetBox record `model` `pk`; `key` finds it again once written."""
        where = f"{model} {pk}"
        self.sections.setdefault(otype, []).append(Row(data, source=where))
        self.keys.append((model, pk, otype, key))
        self.mapped[model] += 1

    def drop(self, reason: str) -> None:
        """A part of a record Popcorn cannot hold (counted, reported once per reason)."""
        self.dropped[reason] += 1

    def declare(self, otype: str, name: str, label: str) -> None:
        """A text custom field the import itself keeps values in (tenant, NetBox role…)."""
        self.extra_fields[(otype, name)] = label


Mapper = Callable[[Dump, Any, Record, Plan], None]
MAPPERS: dict[str, Mapper] = {}
# Models read by other models' mappers (templates, terminations, tags…): not "skipped".
USED: set[str] = {"contenttypes.contenttype"}


# Models written after the DCIM batch through their own service (IPAM, circuits, power), in
# LATE_ORDER: each gives (Popcorn kind, input fields) with references as Popcorn ids, found
# in the map of NetBox (model, pk) -> Popcorn id of everything written before it.
LateMapper = Callable[[Dump, Any, Record, dict[tuple[str, Any], int]], tuple[str, Record]]
LATE: dict[str, LateMapper] = {}
LATE_ORDER: list[str] = []
# Cable ends written late (a circuit termination, a power feed): NetBox model -> Popcorn kind.
LATE_ENDS: dict[str, str] = {}


def late(model: str) -> Callable[[LateMapper], LateMapper]:
    def register(func: LateMapper) -> LateMapper:
        LATE[model] = func
        LATE_ORDER.append(model)
        return func

    return register


def mapper(*models: str) -> Callable[[Mapper], Mapper]:
    def register(func: Mapper) -> Mapper:
        for model in models:
            MAPPERS[model] = func
        return func

    return register


def uses(*models: str) -> None:
    USED.update(models)


# --- value helpers -----------------------------------------------------------------


def text(value: Any, limit: int = 200) -> str:
    return "" if value is None else str(value)[:limit]


def number(value: Any) -> float | None:
    """Django decimals are dumped as strings ("42.0")."""
    if value in (None, ""):
        return None
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def choice(value: Any, allowed: Iterable[str], default: str | None = None) -> str | None:
    return value if value in tuple(allowed) else default


def compact(data: Record) -> Record:
    """Leave out empty values so Popcorn's defaults (and current values) apply."""
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}
