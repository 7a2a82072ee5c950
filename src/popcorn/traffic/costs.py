"""The group x region cost (latency) matrix: reading it from JSON or CSV, storing it all or
nothing, and showing it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.errors import InvalidInput
from popcorn.traffic import models as m


def cost_matrix(*, session: Session, kind: str | None = None) -> dict[str, Any]:
    """The stored costs as a (groups x regions) matrix; None marks a pair that is not allowed."""
    regions_stmt = select(m.TrafficRegion).order_by(m.TrafficRegion.name)
    if kind:
        regions_stmt = regions_stmt.where(m.TrafficRegion.kind == kind)
    regions = list(session.scalars(regions_stmt))
    groups = list(session.scalars(select(m.ClientGroup).order_by(m.ClientGroup.name)))
    rindex = {r.id: i for i, r in enumerate(regions)}
    gindex = {g.id: i for i, g in enumerate(groups)}
    matrix: list[list[float | None]] = [[None] * len(regions) for _ in groups]
    for cost in session.scalars(select(m.Cost)):
        if cost.region_id in rindex and cost.group_id in gindex:
            matrix[gindex[cost.group_id]][rindex[cost.region_id]] = cost.cost
    return {
        "groups": [g.name for g in groups],
        "regions": [r.name for r in regions],
        "matrix": matrix,
    }


def parse_costs(content: bytes | str, *, filename: str = "", fmt: str | None = None) -> list[Any]:
    """Cost entries `(group, region, cost or None)` from JSON or CSV.

    JSON: `{group: {region: cost}}`, `{"groups": [...], "regions": [...], "matrix": [[...]]}`
    or `[{"group", "region", "cost"}]`. CSV: `group,region,cost` rows, or a wide table with a
    `group` column and one column per region. An empty cell, null or NaN means not allowed.
    """
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    fmt = fmt or ("csv" if filename.lower().endswith(".csv") else None)
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in "[{" else "csv"
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"cost: not valid JSON (line {exc.lineno}): {exc.msg}") from None
        return cost_entries(data)
    if fmt != "csv":
        raise InvalidInput(f"format: {fmt!r} is not json or csv")
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InvalidInput("cost: the CSV is empty")
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != "group":
        raise InvalidInput("cost: the CSV header must start with 'group'")
    entries: list[tuple[str, str, float | None]] = []
    if header == ["group", "region", "cost"]:
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 3:
                raise InvalidInput(f"cost: line {line} has {len(row)} cells, expected 3")
            entries.append((row[0].strip(), row[1].strip(), _cost_value(row[2], f"line {line}")))
        return entries
    regions = header[1:]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InvalidInput(
                f"cost: line {line} has {len(row) - 1} costs, expected {len(regions)} "
                "(one per region column)"
            )
        for region, cell in zip(regions, row[1:], strict=True):
            entries.append((row[0].strip(), region, _cost_value(cell, f"line {line}")))
    return entries


def _cost_value(raw: Any, where: str) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "null", "inf")):
        return None
    if isinstance(raw, bool):
        raise InvalidInput(f"cost: {where}: {raw!r} is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"cost: {where}: {raw!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        return None
    if value < 0:
        raise InvalidInput(f"cost: {where}: {value} must be >= 0")
    return value


def cost_entries(data: Any) -> list[tuple[str, str, float | None]]:
    """Normalise any of the JSON cost shapes to `(group, region, cost)` entries."""
    entries: list[tuple[str, str, float | None]] = []
    if isinstance(data, dict) and "matrix" in data:
        groups, regions, matrix = data.get("groups"), data.get("regions"), data["matrix"]
        if not isinstance(groups, list) or not isinstance(regions, list):
            raise InvalidInput("cost: a matrix needs 'groups' and 'regions' lists")
        if not isinstance(matrix, list) or len(matrix) != len(groups):
            got = len(matrix) if isinstance(matrix, list) else type(matrix).__name__
            raise InvalidInput(
                f"cost: matrix has {got} rows, expected {len(groups)} (one per group)",
                details={"shape": [len(groups), len(regions)]},
            )
        for i, (group, row) in enumerate(zip(groups, matrix, strict=True)):
            if not isinstance(row, list) or len(row) != len(regions):
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise InvalidInput(
                    f"cost: matrix row {i} (group {group!r}) has {got} costs, expected "
                    f"{len(regions)} (one per region)",
                    details={"shape": [len(groups), len(regions)]},
                )
            for region, cell in zip(regions, row, strict=True):
                entries.append((str(group), str(region), _cost_value(cell, f"row {i}")))
        return entries
    if isinstance(data, dict):
        for group, row in data.items():
            if not isinstance(row, dict):
                raise InvalidInput(f"cost: {group!r} must map region names to costs")
            for region, cell in row.items():
                entries.append((str(group), str(region), _cost_value(cell, f"{group}/{region}")))
        return entries
    if isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not {"group", "region"} <= set(item):
                raise InvalidInput(f"cost: item {i} needs 'group', 'region' and 'cost'")
            entries.append(
                (
                    str(item["group"]),
                    str(item["region"]),
                    _cost_value(item.get("cost"), f"item {i}"),
                )
            )
        return entries
    raise InvalidInput("cost: expected a JSON object or list")


def set_costs(
    *, session: Session, entries: Sequence[tuple[str, str, float | None]], replace: bool = True
) -> dict[str, Any]:
    """Store costs, all or nothing. `replace` drops every pair not given (the upload is the
    whole matrix); otherwise the given pairs are added or changed and the rest kept."""
    if not entries:
        raise InvalidInput("cost: no entries given")
    groups = {g.name: g.id for g in session.scalars(select(m.ClientGroup))}
    regions = {r.name: r.id for r in session.scalars(select(m.TrafficRegion))}
    bad_groups = sorted({g for g, _, _ in entries if g not in groups})
    bad_regions = sorted({r for _, r, _ in entries if r not in regions})
    if bad_groups or bad_regions:
        parts = []
        if bad_groups:
            parts.append(f"unknown group(s) {', '.join(map(repr, bad_groups[:5]))}")
        if bad_regions:
            parts.append(f"unknown region(s) {', '.join(map(repr, bad_regions[:5]))}")
        raise InvalidInput(
            "cost: " + "; ".join(parts),
            details={"groups": bad_groups[:50], "regions": bad_regions[:50]},
        )
    wanted: dict[tuple[int, int], float | None] = {}
    for group, region, value in entries:
        wanted[(groups[group], regions[region])] = value
    existing = {(c.group_id, c.region_id): c for c in session.scalars(select(m.Cost))}
    before = len(existing)
    if replace:
        for key, row in existing.items():
            if wanted.get(key) is None:
                session.delete(row)
    for key, value in wanted.items():
        found = existing.get(key)
        if value is None:
            if found is not None and not replace:
                session.delete(found)
        elif found is None:
            session.add(m.Cost(group_id=key[0], region_id=key[1], cost=value))
        else:
            found.cost = value
    session.flush()
    count = int(session.scalar(select(func.count()).select_from(m.Cost)) or 0)
    record_change(
        session,
        "update",
        "traffic_costs",
        "matrix",
        before={"pairs": before},
        after={"pairs": count, "replace": replace, "given": len(entries)},
    )
    return {"pairs": count, "given": len(entries), "replace": replace}
