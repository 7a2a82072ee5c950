"""Status workflows per entity type: the statuses allowed and, optionally, the moves between them.

Defaults follow ShotGrid's stock status lists; an admin may replace any of them
(`PUT /api/v1/studio/workflows/<type>`). A status outside the workflow, or a move the
workflow does not allow, is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import audit, outbox
from popcorn.errors import InvalidInput
from popcorn.studio import models as m
from popcorn.studio.registry import Entity, entity

ENTITY_STATUSES = ["wtg", "rdy", "ip", "hld", "omt", "fin"]
DEFAULTS: dict[str, dict[str, Any]] = {
    "Project": {"statuses": ["active", "bidding", "hold", "complete"], "default": "active"},
    "Episode": {"statuses": ENTITY_STATUSES, "default": "wtg"},
    "Sequence": {"statuses": ENTITY_STATUSES, "default": "wtg"},
    "Shot": {"statuses": ENTITY_STATUSES, "default": "wtg"},
    "Asset": {"statuses": ENTITY_STATUSES, "default": "wtg"},
    "Task": {"statuses": ["wtg", "rdy", "ip", "rev", "hld", "omt", "fin"], "default": "wtg"},
    "Version": {"statuses": ["rev", "vwd", "apr", "rej", "na"], "default": "rev"},
    "PublishedFile": {"statuses": ["wtg", "ip", "cmpt", "na"], "default": "cmpt"},
    "Note": {"statuses": ["opn", "ip", "clsd"], "default": "opn"},
}


def status_field(ent: Entity) -> str | None:
    return next((f.name for f in ent.fields.values() if f.kind == "status_list"), None)


def get(session: Session, entity_type: str) -> dict[str, Any]:
    """The workflow in force for an entity type (the stored one, else the default)."""
    row = session.scalar(
        select(m.StudioWorkflow).where(m.StudioWorkflow.entity_type == entity_type)
    )
    if row is not None:
        return {
            "entity_type": entity_type,
            "statuses": list(row.statuses),
            "default": row.default,
            "transitions": dict(row.transitions or {}),
        }
    base = DEFAULTS.get(entity_type, {"statuses": [], "default": ""})
    return {"entity_type": entity_type, **base, "transitions": {}}


def all_workflows(session: Session) -> list[dict[str, Any]]:
    return [get(session, name) for name in DEFAULTS]


def check(
    session: Session, ent: Entity, field: str, old: str | None, new: Any, cache: dict[str, Any]
) -> str:
    """The new status if the workflow allows it; a 422 naming the field otherwise."""
    wf = cache.get(ent.name)
    if wf is None:
        wf = cache[ent.name] = get(session, ent.name)
    if not isinstance(new, str) or new not in wf["statuses"]:
        raise InvalidInput(
            f"{field}: {new!r} is not a status of the {ent.name} workflow",
            details={"field": field, "value": new, "valid_values": wf["statuses"]},
        )
    allowed = wf["transitions"].get(old) if old is not None else None
    if old is not None and new != old and allowed is not None and new not in allowed:
        raise InvalidInput(
            f"{field}: the {ent.name} workflow does not allow {old!r} -> {new!r}",
            details={"field": field, "from": old, "to": new, "allowed": list(allowed)},
        )
    return new


def put(
    session: Session,
    *,
    entity_type: str,
    statuses: list[str],
    default: str,
    transitions: dict[str, list[str]],
) -> dict[str, Any]:
    """Replace an entity type's workflow (admin), audited and announced."""
    ent = entity(entity_type)
    if status_field(ent) is None:
        raise InvalidInput(f"{entity_type} has no status field", details={"field": "entity_type"})
    if not statuses or len(set(statuses)) != len(statuses):
        raise InvalidInput(
            "statuses must be a non-empty list without repeats", details={"field": "statuses"}
        )
    if default not in statuses:
        raise InvalidInput("the default must be one of the statuses", details={"field": "default"})
    for source, targets in transitions.items():
        unknown = [s for s in [source, *targets] if s not in statuses]
        if unknown:
            raise InvalidInput(
                f"transitions name statuses outside the workflow: {', '.join(unknown)}",
                details={"field": "transitions", "unknown": unknown},
            )
    before = get(session, entity_type)
    row = session.scalar(
        select(m.StudioWorkflow).where(m.StudioWorkflow.entity_type == entity_type)
    )
    if row is None:
        row = m.StudioWorkflow(entity_type=entity_type)
        session.add(row)
    row.statuses = list(statuses)
    row.default = default
    row.transitions = {k: list(v) for k, v in transitions.items()}
    session.flush()
    after = get(session, entity_type)
    audit.record_change(
        session, "update", "studio_workflow", entity_type, before=before, after=after
    )
    outbox.emit(session, "studio.workflow.updated", "studio_workflow", entity_type, after)
    return after
