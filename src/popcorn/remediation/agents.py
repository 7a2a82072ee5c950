"""Bolt agents seen from the platform: their heartbeats, and the runbooks' client certificate."""

from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import record_change
from popcorn.db import dialect_insert, session_scope, utcnow
from popcorn.errors import InvalidInput, NotFound, PopcornError
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import emit
from popcorn.remediation import engine
from popcorn.remediation.models import (
    Agent,
)
from popcorn.remediation.schemas import AgentRead

AGENT_STALE_SECONDS = 120.0
AGENT_FILTERS = {
    "name": Agent.name,
    "device": Agent.device,
    "version": Agent.version,
    "last_seen": Agent.last_seen,
}


def record_heartbeat(
    *,
    session: Session,
    name: str,
    url: str,
    device: str | None = None,
    version: str = "",
    actions: list[str] | None = None,
) -> Agent:
    """Upsert an agent from its heartbeat, and tell inventory when its device exists."""
    now = utcnow()
    actions = list(actions or [])
    inserted = session.scalar(
        dialect_insert(session, Agent)
        .values(
            name=name,
            url=url,
            device=device,
            version=version,
            actions=actions,
            inventory_link="",
            last_seen=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Agent.id)
    )
    agent = session.scalar(
        select(Agent)
        .where(Agent.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert agent is not None
    created = inserted is not None
    before = {
        "device": agent.device,
        "url": agent.url,
        "version": agent.version,
        "actions": list(agent.actions),
    }
    agent.device = device
    agent.url = url
    agent.version = version
    agent.actions = actions
    agent.last_seen = now
    agent.inventory_link = _link_inventory(session, device, url, version, actions)
    after = {"device": device, "url": url, "version": version, "actions": actions}
    if created:
        record_change(session, "create", "remediation_agent", agent.id, after=after)
        emit(
            session,
            "remediation.agent.registered",
            "remediation_agent",
            agent.id,
            {"name": name, **after},
        )
    elif before != after:
        record_change(session, "update", "remediation_agent", agent.id, before=before, after=after)
    return agent


def _link_inventory(
    session: Session, device: str | None, url: str, version: str, actions: list[str]
) -> str:
    if not device:
        return ""
    if not domains.installed("inventory"):
        return "inventory service unavailable"
    import popcorn.inventory.api as inventory_api

    try:
        with session.begin_nested():
            inventory_api.record_agent_heartbeat(
                session=session, device=device, url=url, version=version, actions=actions
            )
    except NotFound:
        return f"no device {device!r} in inventory"
    except PopcornError as exc:
        return f"inventory refused: {exc.message}"[:200]
    return "linked"


def list_agents(*, session: Session, params: ListParams) -> PageResult:
    """A page of agents as read schemas, each marked stale when its heartbeat is old."""
    stmt = select(Agent).where(*filter_clauses(params.filters, AGENT_FILTERS))
    page = paginate(session, stmt, params, key=Agent.id)
    page.items = [agent_read(a) for a in page.items]
    return page


def agent_read(agent: Agent) -> AgentRead:
    return AgentRead.model_validate(agent).model_copy(update={"stale": agent_is_stale(agent)})


def agent_is_stale(agent: Agent) -> bool:
    return agent.last_seen < utcnow() - timedelta(seconds=AGENT_STALE_SECONDS)


def agent_url_for(device: str) -> str | None:
    """The URL the freshest heartbeat gave for a device (or an agent of that name)."""
    with session_scope(readonly=True) as session:
        for column in (Agent.device, Agent.name):
            url = session.scalar(
                select(Agent.url).where(column == device).order_by(Agent.last_seen.desc()).limit(1)
            )
            if url:
                return str(url)
    return None


# --- Bolt client credentials -----------------------------------------------------------------


def install_bolt_credentials(*, cert: bytes, key: bytes, ca: bytes) -> engine.BoltCredentials:
    """Write the runbook client's certificate, key and CA where steps look for them."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    for label, data in (("cert", cert), ("ca", ca)):
        try:
            x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidInput(f"{label}: not a PEM certificate ({exc})") from exc
    try:
        load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"key: not an unencrypted PEM private key ({exc})") from exc
    base = engine.bolt_dir()
    base.mkdir(parents=True, exist_ok=True)
    creds = engine.BoltCredentials(base / "client.pem", base / "client.key", base / "ca.pem")
    creds.cert.write_bytes(cert)
    creds.ca.write_bytes(ca)
    fd = os.open(creds.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return creds


def issue_bolt_credentials(
    *, session: Session, authority: str, name: str = "popcorn-runbook"
) -> engine.BoltCredentials:
    """Have the agents authority issue the runbooks' client certificate, and install it.

    Only the certificates domain's agent path may issue reserved `popcorn-` names, from an
    authority whose purpose is agents; Bolt agents trust that authority and nothing else.
    """
    domains.require(
        "certificates",
        "install a client certificate with `popcorn bolt credentials --cert --key --ca`",
    )
    import popcorn.certificates.api as certificates_api

    issued = certificates_api.issue_agent_certificate(
        session=session, authority=authority, agent_name=name, profile="client"
    )
    ca = certificates_api.ca_bundle(session=session, authority=authority)
    return install_bolt_credentials(
        cert=(issued.cert_pem + issued.chain_pem).encode(),
        key=issued.key_pem.encode(),
        ca=ca.encode(),
    )
