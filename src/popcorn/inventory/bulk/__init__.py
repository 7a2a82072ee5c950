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
   cable ends. Audit records and domain events follow the rule in `write.record`.

The package reads top to bottom: `types` (object types and their fields),
`rows` (input rows, errors, results, the `Planner` shape), `batch` (the
shared checking machinery), one planner module per family of types behind
`registry.PLANNERS` (`organisation`: custom fields, regions, site groups,
manufacturers, sites, locations, racks; `device_types`: device models and module types; `devices`;
`parts`: bays, components, interfaces, ports; `cables`: links), and `write`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory.bulk.rows import BatchResult, Planner, Progress, Row, RowError
from popcorn.inventory.bulk.types import (
    BY_PLURAL,
    CHILDREN,
    CUSTOM,
    ORDER,
    PER_OBJECT_LIMIT,
    SECTION_ALIASES,
    TAGGED,
    TYPES,
    ObjectType,
    jsonable,
    resolve_type,
)

__all__ = [
    "BY_PLURAL",
    "CHILDREN",
    "CUSTOM",
    "ORDER",
    "PER_OBJECT_LIMIT",
    "SECTION_ALIASES",
    "TAGGED",
    "TYPES",
    "BatchResult",
    "ObjectType",
    "Planner",
    "Progress",
    "Row",
    "RowError",
    "apply",
    "jsonable",
    "resolve_type",
    "single",
]


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
    then: Callable[[BatchResult], None] | None = None,
) -> BatchResult:
    """Check every row, then write them all or nothing. Raises InvalidInput with every error.

    `sections` is consumed: rows are dropped as they are planned.

    `summary=True` (file imports) always adds the one "import" audit record.
    `then` runs once the batch is written (on a dry run, checked), before its audit
    records: an importer writes there what other services hold (a NetBox dump's IPAM
    objects) and adds their counts to the result, so one summary records the import.
    """
    # the checking and writing machinery loads with the first batch: reading the
    # inventory (a list, a lookup) needs only the types
    from popcorn.inventory.bulk import write
    from popcorn.inventory.bulk.batch import Batch

    started = time.perf_counter()
    batch = Batch(session, mode=mode, source=source, reason=reason)
    batch.progress = progress
    batch.per_object_limit = PER_OBJECT_LIMIT  # read here, so it can be tuned on the package
    for otype in list(sections):
        batch.add(otype, sections.pop(otype))
    batch.plan()
    batch.raise_errors()
    counts = batch.counts()
    result = BatchResult(dry_run=dry_run, counts=counts, ids={})
    if dry_run:
        if then is not None:
            then(result)
        result.seconds = time.perf_counter() - started
        return result
    dbapi = session.connection().dialect.dbapi
    conflicts: tuple[type[Exception], ...] = (IntegrityError,)
    if dbapi is not None:
        conflicts += (dbapi.IntegrityError,)
    try:
        write.write(batch)
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
    if then is not None:
        then(result)
    write.record(batch, result, summary=summary)
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
