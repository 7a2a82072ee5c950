"""Rows in, errors and results out, and the shape of a planner."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


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


@dataclass(frozen=True)
class Planner:
    """How one object type is planned: `plan` per row, with optional hooks around it.

    `start` runs before the type's rows even when there are none (new devices'
    template parts), `prepare` gets all the rows first (to load what they name
    in a few queries), `finish` runs after the last row (cross-row checks).
    """

    plan: Callable[[Batch, Row], None]
    prepare: Callable[[Batch, list[Row]], None] | None = None
    finish: Callable[[Batch], None] | None = None
    start: Callable[[Batch], None] | None = None
