"""Traffic reacts to remediation: a failed storage appliance moves its site's load away."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from popcorn.errors import PopcornError
from popcorn.outbox import DomainEvent, emit, subscribe
from popcorn.traffic import plans as plan_service

log = logging.getLogger("popcorn.traffic")


@subscribe("traffic.shift_requests", "remediation.traffic.shift_requested")
def shift_requested(event: DomainEvent, session: Session) -> None:
    """Plan the shift (announced as `traffic.plan.created`). A request traffic cannot plan
    (an unknown site, the only CDN site) is answered with `traffic.shift.rejected` instead
    of being retried forever."""
    payload = event.payload
    site = str(payload.get("site") or "")
    device = payload.get("device")
    reason = str(payload.get("reason") or f"requested by {event.type} #{event.id}")
    try:
        with session.begin_nested():
            plan_service.shift_site_load(
                session=session,
                site=site,
                reason=reason[:500],
                device=str(device) if device else None,
            )
    except PopcornError as exc:
        log.warning("cannot plan a shift off site %r: %s", site, exc.message)
        emit(
            session,
            "traffic.shift.rejected",
            "traffic_site",
            site or "-",
            {"site": site, "device": device, "reason": exc.message, "request_event": event.id},
        )
