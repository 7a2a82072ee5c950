"""Following cables from an interface or port to the far end, through patch panels and circuits.

A cable may end on a circuit termination or a power feed (`inventory.ipam`): a
trace reaching a circuit's termination crosses the circuit to its other end and
continues along that end's cable, if any; a power feed ends the trace.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.errors import NotFound
from popcorn.inventory import models as m
from popcorn.inventory.bulk import TYPES
from popcorn.inventory.ipam import reads as ipam_reads
from popcorn.lookup import parse_id


def _end(session: Session, end_type: str, end_id: int) -> dict[str, Any]:
    if end_type not in TYPES:
        found = ipam_reads.cable_end(session, end_type, end_id)
        if found is None:
            raise NotFound(f"no {end_type.replace('_', ' ')} {end_id}")
        return found
    model = TYPES[end_type].model
    row = session.execute(
        select(model, m.Device.name)
        .join(m.Device, m.Device.id == model.device_id)
        .where(model.id == end_id)
    ).first()
    if row is None:
        raise NotFound(f"no {end_type} {end_id}")
    obj, device = row
    kind = obj.kind if end_type == "port" else "interface"
    return {
        "type": end_type,
        "id": obj.id,
        "kind": kind,
        "device": device,
        "device_id": obj.device_id,
        "name": obj.name,
        "link_id": obj.link_id,
        "peer_id": getattr(obj, "peer_id", None),
        "peer_position": getattr(obj, "peer_position", None),
        "positions": getattr(obj, "positions", None),
    }


def _public(end: dict[str, Any]) -> dict[str, Any]:
    keys = ("type", "id", "kind", "device", "device_id", "name", "site", "circuit")
    return {k: end[k] for k in keys if k in end}


def trace_from(*, session: Session, end_type: str, end_id: int) -> dict[str, Any]:
    """Follow cables from an interface or port given by id (see `service.trace`)."""
    if parse_id(end_id) is None:
        raise NotFound(f"no {end_type} {end_id}")
    current = _end(session, end_type, end_id)
    origin = _public(current)
    hops: list[dict[str, Any]] = []
    seen = {(end_type, end_id)}
    position: int | None = None
    destination: dict[str, Any] | None = None
    for _ in range(64):
        if current["link_id"] is None:
            hops.append({"near": _public(current), "link": None, "far": None})
            break
        link = session.get(m.Link, current["link_id"])
        assert link is not None
        mine = (current["type"], current["id"])
        far_type, far_id = (
            (link.b_type, link.b_id)
            if (link.a_type, link.a_id) == mine
            else (link.a_type, link.a_id)
        )
        far = _end(session, far_type, far_id)
        hops.append(
            {
                "near": _public(current),
                "far": _public(far),
                "link": {
                    "id": link.id,
                    "type": link.type,
                    "status": link.status,
                    "label": link.label,
                },
            }
        )
        following = _pass_through(session, far, position)
        if following is not None and following[0]["type"] == "circuit_termination":
            other = following[0]
            # the hop across the circuit: its "link" is the circuit itself
            hops.append({"near": _public(far), "far": _public(other), "link": far["circuit"]})
            if other["link_id"] is None:  # the circuit's far end lands on no cable: it ends there
                destination = _public(other)
                break
        elif following is None:
            destination = _public(far)
            break
        current, position = following
        if (current["type"], current["id"]) in seen:
            break
        seen.add((current["type"], current["id"]))
    return {
        "origin": origin,
        "hops": hops,
        "destination": destination,
        "complete": destination is not None,
    }


def _pass_through(
    session: Session, end: dict[str, Any], position: int | None
) -> tuple[dict[str, Any], int | None] | None:
    """Where a signal continues from after reaching `end` (patch panels, circuits), if anywhere."""
    if end["type"] == "circuit_termination":
        other = ipam_reads.other_termination(session, end["id"])
        return None if other is None else (_end(session, "circuit_termination", other), None)
    if end["kind"] == "front-port" and end["peer_id"] is not None:
        return _end(session, "port", end["peer_id"]), end["peer_position"] or 1
    if end["kind"] == "rear-port":
        if position is None and (end["positions"] or 1) > 1:
            return None  # which strand is unknown: the trace ends at this rear port
        wanted = position or 1
        front = session.scalar(
            select(m.Port.id).where(
                m.Port.kind == "front-port",
                m.Port.peer_id == end["id"],
                func.coalesce(m.Port.peer_position, 1) == wanted,
            )
        )
        if front is not None:
            return _end(session, "port", front), None
    return None
