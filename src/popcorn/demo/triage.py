"""The demo's host triage: a handful of storage appliances at one site, each served by its
own Bolt agent (a real process, the triage collectors loaded) reading a planted file tree
under POPCORN_HOME. Every host is noisy the way real ones are (its own PIDs, socket
inodes, ephemeral ports, its name in key comments and command lines); one has an extra
set-uid binary, another a rogue root authorized key.

The story collects the group through the API (a job on the platform's workers, calling
each agent over mutual TLS) and narrates the hosts that stand out, with their evidence:
the two planted hosts must come first, and the clean ones have no evidence at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popcorn.context import acting_as
from popcorn.db import session_scope
from popcorn.demo.platform import BoltAgent, DemoError
from popcorn.demo.world import World

if TYPE_CHECKING:
    from popcorn.client import Client
    from popcorn.demo.story import Narrator

ACTOR = "demo"
ROLE = "storage-appliance"
NAME = "storage appliance"
HOSTS = 6
MIN_HOSTS = 4  # triage accuses nobody in groups of fewer than 3
COLLECTORS = "popcorn.triage.collectors"
PLANTS = {"suid": "suid_files", "rogue_key": "authorized_keys"}  # what, and where it shows
PLANTED = {"suid_files": "an extra set-uid binary", "authorized_keys": "a rogue root key"}


@dataclass
class TriageFleet:
    role: str
    site: str
    devices: list[str]
    planted: dict[str, str]  # device -> the table its planted row is in
    roots: dict[str, Path]
    tls: dict[str, tuple[Path, Path, Path]]
    directory: Path
    agents: list[BoltAgent] = field(default_factory=list)

    def describe(self) -> str:
        odd = "; ".join(f"{PLANTED[table]} on {d}" for d, table in self.planted.items())
        return f"{len(self.devices)} {NAME}s at {self.site}: {odd}; the others clean"

    def pids(self) -> dict[str, int]:
        return {
            f"bolt-{a.device}": a.process.pid
            for a in self.agents
            if a.process is not None and a.alive()
        }

    def signal_stop(self) -> None:
        for agent in self.agents:
            agent.signal_stop()

    def stop(self) -> None:
        self.signal_stop()
        for agent in self.agents:
            agent.stop()


def choose(world: World) -> tuple[str, list[str]]:
    """The site (not the incident's) with the most appliances of ROLE, and up to HOSTS of them."""
    by_site: dict[str, list[str]] = {}
    for device in world.inventory["devices"]:
        if device["role"] == ROLE and device["site"] != world.incident.site:
            by_site.setdefault(device["site"], []).append(device["name"])
    if not by_site:
        raise DemoError("triage_hosts", f"the world has no {ROLE} outside the incident's site")
    site = max(sorted(by_site), key=lambda s: len(by_site[s]))
    devices = sorted(by_site[site])[:HOSTS]
    if len(devices) < MIN_HOSTS:
        raise DemoError("triage_hosts", f"{site} has only {len(devices)} of {ROLE}")
    return site, devices


def build(world: World, directory: Path, authority: str) -> TriageFleet:
    """Plant every host's file tree and issue its agent a server certificate."""
    from popcorn.certificates import service as certs
    from popcorn.triage.planting import plant

    site, devices = choose(world)
    odd = random.Random(world.seed).sample(devices, len(PLANTS))
    planted = {device: PLANTS[kind] for kind, device in zip(PLANTS, odd, strict=True)}
    roots: dict[str, Path] = {}
    for index, device in enumerate(devices, start=1):
        flags = {kind: device == host for kind, host in zip(PLANTS, odd, strict=True)}
        roots[device] = plant(directory / device / "root", device, index, **flags)
    tls: dict[str, tuple[Path, Path, Path]] = {}
    with acting_as(ACTOR), session_scope() as session:
        bundle = certs.ca_bundle(session=session, authority=authority)
        for device in devices:
            issued = certs.issue_agent_certificate(
                session=session,
                authority=authority,
                agent_name=device[:64],
                dns_names=["localhost"],
                ip_addresses=["127.0.0.1"],
                profile="server",
            )
            folder = directory / device / "tls"
            folder.mkdir(parents=True, exist_ok=True)
            cert, key, ca = folder / "agent.crt", folder / "agent.key", folder / "ca.pem"
            cert.write_text(issued.cert_pem + issued.chain_pem)
            key.touch(mode=0o600)
            key.write_text(issued.key_pem)
            ca.write_text(bundle)
            tls[device] = (cert, key, ca)
    return TriageFleet(ROLE, site, devices, planted, roots, tls, directory)


def start(fleet: TriageFleet, *, popcorn_url: str, token: str) -> None:
    """One agent process per host, each reading its own tree, heartbeating to the API."""
    for device in fleet.devices:
        agent = BoltAgent(
            device=device,
            popcorn_url=popcorn_url,
            token=token,
            tls=fleet.tls[device],
            disks=[],
            directory=fleet.directory / device / "agent",
            settings={"action_modules": [COLLECTORS], "output_cap_bytes": 8 * 1024 * 1024},
            env={"POPCORN_TRIAGE_ROOT": str(fleet.roots[device])},
            log=f"bolt-{device}.log",
        )
        fleet.agents.append(agent)
        agent.start()


def registered(fleet: TriageFleet, client: Client) -> bool | None:
    """True once every host's heartbeat put its agent's address in inventory."""
    for agent in fleet.agents:
        if not agent.alive():
            raise DemoError(
                "triage_agents", f"{agent.device}'s agent exited; see logs/bolt-{agent.device}.log"
            )
        found = client.get(f"/api/v1/inventory/devices/{agent.device}")
        if found.get("agent_url") != agent.url:
            return None
    return True


def play(client: Client, fleet: TriageFleet, n: Narrator, timeout: float) -> dict[str, Any]:
    """Collect the group through the API, then narrate (and check) who stands out."""
    from popcorn.demo.story import poll

    n.say("")
    n.say(
        f"[bold]Host triage[/bold] — {len(fleet.devices)} {NAME}s at {fleet.site}, "
        "through their Bolt agents"
    )
    title = "Collect each host's state: sockets, processes, keys, cron, set-uid files..."
    with n.step("triage_collect", title) as notes:
        created = client.post(
            "/api/v1/triage/collections",
            json={
                "name": f"demo: {NAME}s at {fleet.site}",
                "scope": {"role": fleet.role, "site": fleet.site, "devices": fleet.devices},
            },
        )
        ident = int(created["id"])

        def finished() -> dict[str, Any] | None:
            found: dict[str, Any] = client.get(f"/api/v1/triage/collections/{ident}")
            return found if found["status"] in ("done", "failed") else None

        collection = poll(f"triage collection {ident}", finished, timeout, every=0.3)
        summary = collection["summary"] or {}
        hosts = summary.get("hosts") or {}
        notes.append(
            f"collection {ident}: {hosts.get('ok', 0)} of {len(fleet.devices)} hosts answered, "
            f"{summary.get('rows', 0):,} rows, {summary.get('distinct_rows', 0):,} distinct "
            "after normalising PIDs, ports and host names"
        )
    if collection["status"] != "done" or hosts != {"ok": len(fleet.devices)}:
        raise DemoError(
            "triage_collect",
            f"collection {ident} is {collection['status']} ({collection.get('error') or hosts})",
        )
    with n.step("triage_outliers", "Rank the hosts by their rarest rows") as notes:
        page = client.get(f"/api/v1/triage/collections/{ident}/outliers", limit=100)
        outliers = page["items"]
        flagged = [o for o in outliers if o["score"] > 0]
        for o in flagged:
            notes.append(f"{o['rank']}. {o['device']} (score {o['score']:.2f})")
            for e in o["evidence"][:3]:
                notes.append(f"     {_evidence(e)}")
        clean = len(outliers) - len(flagged)
        notes.append(f"the other {clean} hosts: nothing rare (their noise does not count)")
    top = [o["device"] for o in flagged]
    first = set(top[: len(fleet.planted)]) == set(fleet.planted)
    found_rows = {
        o["device"]: sorted({e["table"] for e in o["evidence"]})
        for o in flagged
        if o["device"] in fleet.planted
    }
    shows = all(fleet.planted[d] in found_rows.get(d, []) for d in fleet.planted)
    out = {
        "collection_id": ident,
        "role": fleet.role,
        "site": fleet.site,
        "devices": fleet.devices,
        "planted": fleet.planted,
        "hosts": hosts,
        "rows": summary.get("rows"),
        "findings": summary.get("findings"),
        "ranked": [{"device": o["device"], "score": o["score"]} for o in flagged],
        "evidence": found_rows,
        "planted_ranked_first": first and shows and len(top) == len(fleet.planted),
    }
    if not out["planted_ranked_first"]:
        raise DemoError(
            "triage_outliers",
            f"expected {sorted(fleet.planted)} on top with their planted rows, got {found_rows} "
            f"(ranked {top})",
        )
    return out


def _evidence(e: dict[str, Any]) -> str:
    row = e["row"]
    if e["table"] == "suid_files":
        what = f"{row.get('path')} mode {row.get('mode')}"
    elif e["table"] == "authorized_keys":
        what = f"{row.get('user')}: {row.get('key_type')} {row.get('fingerprint')} "
        what += repr(row.get("comment") or "")
    elif e["table"] == "recent_files":
        what = f"{row.get('path')} modified recently"
    else:
        what = ", ".join(f"{k}={v}" for k, v in list(row.items())[:3])
    sign = "+" if e["kind"] == "extra" else "-"
    return f"{sign} {e['table']}: {what} (on {e['hosts_with']} of {e['peers']} hosts)"
