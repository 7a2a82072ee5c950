"""The certificates domain's facade: what other domains may call, typed and checked by mypy.

Remediation installs the runbook engine's client certificate through this, and
the demo issues its Bolt agents' certificates the same way. Nothing here returns
an ORM row.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from popcorn.certificates import service
from popcorn.certificates.schemas import ProfileName
from popcorn.certificates.service import AgentCertificate

__all__ = ["AgentCertificate", "ca_bundle", "issue_agent_certificate"]


def issue_agent_certificate(
    *,
    session: Session,
    authority: int | str,
    agent_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    profile: ProfileName = "both",
    validity_days: int | None = None,
) -> AgentCertificate:
    """A mutual-TLS certificate (and its key, once) for a Bolt agent or the runbook client."""
    return service.issue_agent_certificate(
        session=session,
        authority=authority,
        agent_name=agent_name,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        profile=profile,
        validity_days=validity_days,
    )


def ca_bundle(*, session: Session, authority: int | str) -> str:
    """The PEM bundle (the authority up to its root) that agents and clients trust."""
    return service.ca_bundle(session=session, authority=authority)
