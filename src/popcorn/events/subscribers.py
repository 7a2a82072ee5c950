"""Every domain event of the installation becomes an event that rules can match."""

from __future__ import annotations

from sqlalchemy.orm import Session

from popcorn.events import service
from popcorn.outbox import DomainEvent, subscribe


@subscribe("events.ingest", "*")
def ingest(domain_event: DomainEvent, session: Session) -> None:
    """Stored in the dispatcher's transaction, so the cursor and the event commit together."""
    service.ingest_domain_event(session=session, domain_event=domain_event)
