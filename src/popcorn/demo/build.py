"""Writing a generated world into a fresh installation, through the domains' service functions.

This runs before the platform's processes start (nothing else is writing), so it calls
the services in-process: the same functions the API and the CLI call, each change in
its own transaction with its audit records and domain events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from popcorn import auth
from popcorn.context import acting_as
from popcorn.db import session_scope
from popcorn.demo.world import World
from popcorn.signals.ingest import Batch

ACTOR = "demo"
AUTHORITY = "Popcorn Demo Root CA"
RUNBOOK_CLIENT = "popcorn-runbook"


def inventory(world: World, directory: Path) -> dict[str, Any]:
    """One all-or-nothing import of the whole network (also kept as a file to look at)."""
    from popcorn.inventory import service

    text = json.dumps(world.inventory, indent=1)
    (directory / "inventory.json").write_text(text)
    with acting_as(ACTOR), session_scope() as session:
        result = service.import_files(session=session, files=[("demo-world.json", text)])
    return result.as_dict()


def signals(world: World, track: Callable[[Iterable[Batch], int], Iterable[Batch]]) -> int:
    """The day of signals before the incident, and the week of client demand."""
    from popcorn.signals import service

    stored = 0
    per_batch = 1000
    total = sum(math.ceil(len(b.keys) / per_batch) for b in (world.signals, world.demand))
    for batch in track(world.stored_batches(per_batch), total):
        with acting_as(ACTOR), session_scope() as session:
            stored += service.ingest_batch(session=session, batch=batch, source="demo").samples
    return stored


def traffic(world: World) -> dict[str, Any]:
    """Cloud regions with their instance model, CDN sites from inventory, groups and costs."""
    from popcorn.traffic import costs as cost_service
    from popcorn.traffic import regions as region_service

    with acting_as(ACTOR), session_scope() as session:
        for region in world.cloud_regions:
            region_service.create_region(session=session, data=region)
        synced = region_service.sync_from_inventory(session=session)
        for group in world.groups:
            region_service.create_group(session=session, data=group)
        costs = cost_service.set_costs(session=session, entries=world.costs, replace=True)
    return {"synced": synced, "costs": costs}


def rules() -> dict[str, Any]:
    """The shipped Alertmanager and platform rule packs, switched from monitor to enforce."""
    from popcorn.events import rulebook

    root = resources.files("popcorn.events") / "rules.d"
    files = rulebook.read_rule_files(str(root))
    enforced = [(name, text.replace("mode: monitor", "mode: enforce")) for name, text in files]
    with acting_as(ACTOR), session_scope() as session:
        loaded = rulebook.store_rules(session=session, files=enforced)
    return loaded.as_dict()


def packs() -> list[str]:
    """The runbook packs every worker finds (shipped with Popcorn, installed, or in the home),
    after installing the demo's own `field` pack in the home like a user's pack."""
    import shutil

    from popcorn.remediation import service
    from popcorn.remediation.packs import packs_dirs

    target = packs_dirs()[0] / "demo_field.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("field_pack.py"), target)

    return [f"{p['name']} {p['version']}" for p in service.list_packs()["packs"]]


def certificates(world: World, directory: Path) -> tuple[Path, Path, Path]:
    """A demo root CA; a server certificate for the appliance's Bolt agent; the runbooks'
    client certificate, installed where runbook steps look for it."""
    from popcorn.certificates import service as certs
    from popcorn.certificates.schemas import AuthorityCreate
    from popcorn.remediation import service as remediation

    device = world.incident.device
    with acting_as(ACTOR), session_scope() as session:
        certs.create_authority(
            session=session,
            spec=AuthorityCreate(
                name=AUTHORITY,
                purpose="agents",
                key_type="ecdsa-p256",
                organization="Popcorn demo",
                common_name="Popcorn Demo Root CA",
                validity_days=3650,
            ),
        )
        issued = certs.issue_agent_certificate(
            session=session,
            authority=AUTHORITY,
            agent_name=device[:64],
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1"],
            profile="server",
        )
        bundle = certs.ca_bundle(session=session, authority=AUTHORITY)
        remediation.issue_bolt_credentials(
            session=session, authority=AUTHORITY, name=RUNBOOK_CLIENT
        )
    tls = directory / "agent-tls"
    tls.mkdir(parents=True, exist_ok=True)
    cert, key, ca = tls / "agent.crt", tls / "agent.key", tls / "ca.pem"
    cert.write_text(issued.cert_pem + issued.chain_pem)
    key.touch(mode=0o600)
    key.write_text(issued.key_pem)
    ca.write_text(bundle)
    return cert, key, ca


def tokens() -> tuple[str, str]:
    """An admin token for the person running the demo, an operator token for the agent."""
    with acting_as(ACTOR), session_scope() as session:
        _, admin = auth.create_token(session=session, name="demo-admin", role="admin")
        _, agent = auth.create_token(session=session, name="demo-bolt-agent", role="operator")
    return admin, agent
