"""Following cables from an interface or port to the far end, through patch panels."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.errors import NotFound
from popcorn.inventory import models as m
from popcorn.inventory.bulk import TYPES
from popcorn.lookup import parse_id


def _end(session: Session, end_type: str, end_id: int) -> dict[str, Any]:
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
    return {k: end[k] for k in ("type", "id", "kind", "device", "device_id", "name")}


def trace_from(*, session: Session, end_type: str, end_id: int) -> dict[str, Any]:
    """Follow cables from an interface or port given by id (see `service.trace`)."""
    if parse_id(end_id) is None:
        raise NotFound(f"no {end_type} {end_id}")
    current = _end(session, end_type, end_id)
    origin = _public(current)
    hops: list[dict[str, Any]] = []
    seen = {(end_type, end_id)}
    position: int | None = None
    far: dict[str, Any] | None = None
    for _ in range(64):
        if current["link_id"] is None:
            hops.append({"near": _public(current), "link": None, "far": None})
            far = None
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
        if following is None:
            break
        current, position = following
        if (current["type"], current["id"]) in seen:
            break
        seen.add((current["type"], current["id"]))
    destination = (
        _public(far) if far is not None and _pass_through(session, far, position) is None else None
    )
    return {
        "origin": origin,
        "hops": hops,
        "destination": destination,
        "complete": destination is not None,
    }


def _pass_through(
    session: Session, end: dict[str, Any], position: int | None
) -> tuple[dict[str, Any], int | None] | None:
    """The port a signal continues from after reaching `end` (patch panels), if any."""
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
