"""Imports and exports: CSV, JSON and YAML files and device-type libraries in, the same shape out.

An import is one all-or-nothing batch (`bulk.apply`), idempotent on natural keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound
from popcorn.inventory import bulk, serialize
from popcorn.inventory import models as m
from popcorn.inventory.bulk import TYPES, BatchResult, Progress, Row, resolve_type
from popcorn.inventory.filters import filtered
from popcorn.listing import (
    ListParams,
    parse_list_params,
)


def import_files(
    *,
    session: Session,
    files: Sequence[tuple[str, bytes | str]],
    fmt: str | None = None,
    otype: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Import CSV, JSON or YAML files as one all-or-nothing batch, idempotent on natural keys."""
    from popcorn.inventory import formats  # parsers load with the first file

    sections: dict[str, list[Row]] = {}
    for name, content in files:
        parsed = formats.parse(content, filename=name, fmt=fmt, otype=otype)
        if len(files) > 1:
            formats.mark_source(parsed, name)
        for key in list(parsed):
            _merge(sections, key, parsed.pop(key))
    source = ", ".join(Path(name).name for name, _ in files)[:80] or "import"
    return bulk.apply(
        session, sections, dry_run=dry_run, source=source, summary=True, progress=progress
    )


def _merge(sections: dict[str, list[Row]], key: str, rows: list[Row]) -> None:
    """Add a file's rows to a batch's sections without copying the first file's list."""
    if key in sections:
        sections[key].extend(rows)
    else:
        sections[key] = rows


def import_paths(
    *,
    session: Session,
    paths: Sequence[Path],
    fmt: str | None = None,
    otype: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Import files and device-type library directories together, as one all-or-nothing batch.

    A directory is read as a library checkout: YAML files under `module-types/`
    are module types, the others device types.
    """
    from popcorn.inventory import formats  # parsers load with the first file

    sections: dict[str, list[Row]] = {}
    for path in paths:
        if not path.exists():
            raise NotFound(f"no such file or directory: {path}")
        if path.is_dir():
            parts: Iterable[dict[str, list[Row]]] = (p for _, p in formats.parse_library(path))
            found = False
            for part in parts:
                found = True
                for key in list(part):
                    _merge(sections, key, part.pop(key))
            if not found:
                raise InvalidInput(f"no device-type YAML files under {path}")
            continue
        parsed = formats.parse_path(path, fmt=fmt, otype=otype)
        if len(paths) > 1:
            formats.mark_source(parsed, str(path))
        for key in list(parsed):
            _merge(sections, key, parsed.pop(key))
    source = ", ".join(p.name for p in paths)[:80] or "import"
    return bulk.apply(
        session, sections, dry_run=dry_run, source=source, summary=True, progress=progress
    )


def export(
    *,
    session: Session,
    out: TextIO,
    fmt: str,
    otypes: Sequence[str] | None = None,
    args: Mapping[str, Any] | None = None,
) -> int:
    """Write objects in the import shape; returns how many. Filters apply to a single type."""
    from popcorn.inventory import formats  # parsers load with the first file

    fmt = formats.detect_format("", fmt)
    types = [resolve_type(t) for t in otypes] if otypes else list(bulk.ORDER)
    if fmt == "csv" and len(types) != 1:
        raise InvalidInput("a CSV export holds one object type: give the type")
    params = parse_list_params({k: v for k, v in (args or {}).items() if k not in ("limit",)})
    names = serialize.Names(session)
    total = 0
    single = len(types) == 1 and otypes is not None
    if fmt == "json":
        out.write("[" if single else "{")
    for position, otype in enumerate(types):
        custom = sorted(
            session.scalars(select(m.CustomField.name).where(m.CustomField.object_type == otype))
        )
        header = formats.csv_header(otype, custom) if fmt == "csv" else []
        if fmt == "csv":
            import csv

            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
        elif fmt == "json" and not single:
            out.write(("," if position else "") + f"\n{_json(TYPES[otype].plural)}: [")
        wrote_section = False
        first = True
        for chunk in _export_chunks(session, otype, params if len(types) == 1 else None, names):
            if fmt == "yaml" and not single and not wrote_section:
                out.write(f"{TYPES[otype].plural}:\n")
                wrote_section = True
            rows = [serialize.export_row(otype, r, compact=fmt != "csv") for r in chunk]
            total += len(rows)
            if fmt == "csv":
                writer.writerows(formats.csv_line(header, r) for r in rows)
            elif fmt == "json":
                for row in rows:
                    out.write(("\n  " if first else ",\n  ") + _json(row))
                    first = False
            else:
                out.write(formats.yaml_dump([bulk.jsonable(r) for r in rows]))
        if fmt == "json" and not single:
            out.write("\n]")
    if fmt == "json":
        out.write("\n]\n" if single else "\n}\n")
    if fmt == "yaml" and single and total == 0:
        out.write("[]\n")
    return total


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str, ensure_ascii=False)


def _export_chunks(
    session: Session, otype: str, params: ListParams | None, names: serialize.Names
) -> Iterable[list[dict[str, Any]]]:
    model = TYPES[otype].model
    stmt = filtered(session, otype, params) if params is not None else select(model)
    if otype == "link":
        # Cables to circuit terminations and power feeds are not in this format (no device
        # ends); the IPAM, circuit and power API exports and recreates them.
        stmt = stmt.where(m.Link.a_device_id.is_not(None), m.Link.b_device_id.is_not(None))
    if (
        otype in bulk.CHILDREN
        and (session.scalar(select(func.count()).select_from(m.Device)) or 0) > 20000
    ):
        names.preload("device")
    after = 0
    while True:
        batch = list(session.scalars(stmt.where(model.id > after).order_by(model.id).limit(5000)))
        if not batch:
            return
        after = batch[-1].id
        yield serialize.read(session, otype, batch, names)
        session.expunge_all()
