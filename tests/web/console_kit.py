"""Helpers for the console tests: a signed-in Flask client that fills in CSRF tokens, and
test data made through the domains' service functions."""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "page has no CSRF field"
    return match.group(1)


class Console:
    """A browser-like Flask client signed in with one role's token."""

    def __init__(self, client: Any, token: str):
        self.client = client
        login = csrf_of(client.get("/ui/login").get_data(as_text=True))
        response = client.post("/ui/login", data={"token": token, "csrf": login})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.csrf = csrf_of(client.get("/ui/").get_data(as_text=True))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def page(self, path: str, status: int = 200) -> str:
        """The HTML of a page that must answer `status`."""
        response = self.client.get(path)
        text: str = response.get_data(as_text=True)
        assert response.status_code == status, text[:2000]
        assert response.content_type.startswith("text/html")
        return text

    def post(self, path: str, data: dict[str, Any] | None = None, csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf
        return self.client.post(path, data=form)


def text_of(html: str) -> str:
    """Page text without tags or repeated whitespace (for assertions on what people read)."""
    plain = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    plain = plain.replace("<wbr>", "")
    plain = re.sub(r"<[^>]+>", " ", plain)
    plain = plain.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return re.sub(r"\s+", " ", plain)


# --- signals -------------------------------------------------------------------------------

T0 = 1_772_445_600  # 2026-03-02T10:00:00Z


def store_incident(n_signals: int = 40, n_samples: int = 480, seed: int = 3) -> Any:
    """A generated incident stored as signals (through the signals service); returns it."""
    from popcorn.db import session_scope
    from popcorn.signals import service
    from popcorn.signals.generate import generate_incident

    incident = generate_incident(n_signals, n_samples, seed=seed, followers_per_culprit=2)
    series = []
    ts = incident.timestamps.astype(float)
    for i, name in enumerate(incident.names):
        ok = np.isfinite(incident.values[i])
        series.append(
            {
                "metric": name.split(".")[1].split("#")[0],
                "labels": {"service": name.split(".")[0], "signal": str(i), "site": "ams1"},
                "timestamps": ts[ok].tolist(),
                "values": incident.values[i][ok].tolist(),
            }
        )
    series.append(
        {
            "metric": "play_errors_rate",
            "labels": {"site": "ams1"},
            "timestamps": ts.tolist(),
            "values": incident.trigger.tolist(),
        }
    )
    with session_scope() as session:
        service.ingest_json(session=session, payload={"series": series})
    return incident


def analyse(incident: Any) -> int:
    """An inline analysis of a stored incident; returns its id."""
    from popcorn.signals import service

    analysis = service.analyze_alert(
        alert_time=incident.alert_time,
        trigger='play_errors_rate{site="ams1"}',
        selector='{service=~".+"}',
        window_minutes=450,
        after_minutes=30,
        inline=True,
    )
    return int(analysis.id)


# --- inventory -----------------------------------------------------------------------------

WORLD = """
regions:
  - {slug: europe, name: Europe}
  - {slug: benelux, name: Benelux, parent: europe}
sites:
  - {code: ams1, name: Amsterdam IX 1, region: benelux, kind: cdn-ix, country: NL,
     city: Amsterdam}
  - {code: bru-isp1, name: Brussels ISP 1, region: benelux, kind: cdn-isp, country: BE}
device_models:
  - manufacturer: Netflix
    model: OCA Storage Gen4
    slug: oca-storage-gen4
    u_height: 2
    interfaces:
      - {name: eth0, type: 100gbase-x-qsfp28}
      - {name: mgmt0, type: 1000base-t, mgmt_only: true}
  - manufacturer: Juniper
    model: MX204
    slug: juniper-mx204
    interfaces:
      - {name: et-0/0/0, type: 100gbase-x-qsfp28}
devices:
  - {name: oca-ams1-01, role: storage-appliance, model: oca-storage-gen4, site: ams1,
     serial: NFX-0001, throughput_gbps: 100G, storage_tb: 360TB}
  - {name: oca-bru-01, role: storage-appliance, model: oca-storage-gen4, site: bru-isp1,
     serial: NFX-0003, throughput_gbps: 80G, storage_tb: 240TB, status: maintenance}
  - {name: rtr-ams1-01, role: router, model: juniper-mx204, site: ams1, serial: JN-1}
components:
  - {device: oca-ams1-01, name: disk0, kind: disk, serial: HDD-1, part_number: ST16000,
     install_date: '2018-03-01'}
  - {device: oca-ams1-01, name: disk1, kind: disk, serial: HDD-2, part_number: ST16000}
links:
  - {a_device: oca-ams1-01, a_name: eth0, b_device: rtr-ams1-01, b_name: et-0/0/0, type: dac}
"""


def build_world() -> None:
    """A few sites, devices, components and a cable, imported through the inventory service;
    oca-ams1-01's Bolt agent has checked in."""
    from popcorn.db import session_scope
    from popcorn.inventory import service

    with session_scope() as session:
        service.import_files(session=session, files=[("world.yaml", WORLD)])
    with session_scope() as session:
        service.record_agent_heartbeat(
            session=session,
            device="oca-ams1-01",
            url="https://10.0.0.1:8443",
            version="1.2.0",
            actions=["disk_health"],
        )


# --- events --------------------------------------------------------------------------------

RULES = """
- name: disk/incident
  description: A full cache disk opens an incident.
  events: ["alertmanager.alert.*"]
  conditions: {labels.alertname: CacheDiskFull}
  actions:
    - type: incident
      params:
        key: "disk/{{ labels.instance }}"
        title: "Cache disk full on {{ labels.instance }}"
        severity: "{{ labels.severity }}"
- name: disk/watch
  events: [alertmanager.alert.firing]
  mode: monitor
  conditions: {labels.severity: critical}
  actions:
    - type: emit
      params: {type: console.test.watched}
"""


def alert(event_id: str, alertname: str = "CacheDiskFull", **labels: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "alertmanager",
        "type": "alertmanager.alert.firing",
        "time": "2026-03-02T10:00:00Z",
        "alertname": alertname,
        "severity": "critical",
        "instance": "oca-ams1-01",
        **labels,
        "data": {"annotations": {"summary": "disk full"}},
    }


def events_world() -> list[int]:
    """Two rules, two alerts (one matching both rules), processed; returns the event ids."""
    import json

    from popcorn.db import session_scope
    from popcorn.events import rulebook, service

    with session_scope() as session:
        rulebook.store_rules(session=session, files=[("rules.yaml", RULES)])
    body = json.dumps([alert("a-1"), alert("a-2", alertname="FanSlow", severity="warning")])
    with session_scope() as session:
        result = service.ingest_body(
            session=session, body=body, content_type="application/cloudevents-batch+json"
        )
        ids = [int(item["id"]) for item in result.items]
    with session_scope() as session:
        service.process_events(session=session, event_ids=ids)
    return ids


# --- remediation -----------------------------------------------------------------------------


def install_pack(home: str) -> None:
    """The console test pack, installed the way a user installs one (a file in packs/)."""
    import shutil
    from pathlib import Path

    from popcorn.remediation import packs

    directory = Path(home) / "packs"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).parent / "packs_src" / "console_pack.py", directory)
    packs.reload()


def drain() -> int:
    """Run every pending remediation job here, as a worker would; returns how many ran."""
    from sqlalchemy import select

    from popcorn import jobs
    from popcorn.db import session_scope

    ran = 0
    for _ in range(20):
        with session_scope(readonly=True) as session:
            ids = list(
                session.scalars(
                    select(jobs.JobRecord.id)
                    .where(
                        jobs.JobRecord.status == "pending",
                        jobs.JobRecord.task.like("remediation.%"),
                    )
                    .order_by(jobs.JobRecord.id)
                )
            )
        if not ids:
            break
        for job_id in ids:
            jobs.execute(job_id)
            ran += 1
    return ran


def waiting_execution() -> int:
    """A console.gated execution stopped at its approval; returns its id."""
    from popcorn.db import session_scope
    from popcorn.remediation import service

    with session_scope() as session:
        execution_id = service.start_runbook(
            session=session, runbook="console.gated", inputs={"service": "cache"}
        ).id
    drain()
    return int(execution_id)


# --- certificates ----------------------------------------------------------------------------


def certificates_world() -> dict[str, int]:
    """A root, an issuing authority, three certificates (one expiring soon, one revoked)."""
    from popcorn.certificates import service
    from popcorn.certificates.schemas import AuthorityCreate, CertificateIssue
    from popcorn.db import session_scope

    with session_scope() as session:
        root = service.create_authority(
            session=session, spec=AuthorityCreate(name="Console Root", kind="root", path_length=1)
        )
        issuing = service.create_authority(
            session=session,
            spec=AuthorityCreate(
                name="Console Issuing",
                kind="intermediate",
                parent=root.id,
                key_type="ecdsa-p256",
                validity_days=1000,
                public_base_url="http://pki.example.test",
            ),
        )
        ids = {"root": root.id, "issuing": issuing.id}
        for name, days in (("edge-api", 10), ("origin", 200), ("old-cache", 90)):
            cert = service.issue_certificate(
                session=session,
                spec=CertificateIssue(
                    authority=issuing.id,
                    common_name=f"{name}.example.test",
                    dns_names=[f"{name}.example.test"],
                    validity_days=days,
                    name=name,
                    owner="sre",
                ),
            )
            ids[name] = cert.id
    with session_scope() as session:
        service.revoke_certificate(
            session=session, certificate_id=ids["old-cache"], reason="superseded"
        )
    return ids


# --- traffic ---------------------------------------------------------------------------------


def traffic_world() -> dict[str, int]:
    """Three cloud regions bound to AWS names, a steering plan, an evacuation of us-east-1,
    its execution (queued) and a forecast; returns their ids."""
    from popcorn.db import session_scope
    from popcorn.traffic import executions as execution_service
    from popcorn.traffic import forecasts as forecast_service
    from popcorn.traffic import plans as plan_service
    from popcorn.traffic import regions as region_service
    from popcorn.traffic import schemas
    from popcorn.traffic import world as world_service

    with session_scope() as session:
        world_service.generate_world(session=session, groups=12, seed=2)
        for name in ("us-east-1", "us-west-2", "eu-west-1"):
            region_service.update_region(
                session=session,
                ref=name,
                data={
                    "asg_name": f"edge-{name}",
                    "route53_zone_id": "Z123",
                    "route53_record_name": "edge.example.test",
                },
            )
    with session_scope() as session:
        steering = plan_service.plan_steering_for(session=session, spec=schemas.SteeringCreate())
        evacuation = plan_service.plan_evacuation_for(
            session=session,
            spec=schemas.EvacuationCreate(evacuate=["us-east-1"], steps=4, reason="drill"),
        )
        ids = {"steering": steering.id, "evacuation": evacuation.id}
    with session_scope() as session:
        ids["execution"] = execution_service.execute_plan(
            session=session, plan_id=ids["evacuation"]
        ).id
        history = (100 + 30 * np.sin(np.arange(2016) * 2 * np.pi / 288)).tolist()
        ids["forecast"] = forecast_service.create_forecast(
            session=session,
            spec=schemas.ForecastCreate(region="us-east-1", history=history, horizon=288),
        ).id
    return ids


PLACES = """
site_groups:
  - {slug: tier-1, name: Tier 1, description: Our own data centres}
  - {slug: tier-1-eu, name: Tier 1 EU, parent: tier-1}
locations:
  - {site: ams1, slug: floor-1, name: Floor 1}
  - {site: ams1, slug: cage-a, name: Cage A, parent: floor-1, description: caged row}
racks:
  - {site: ams1, name: R01, location: cage-a}
  - {site: ams1, name: R02, location: floor-1}
"""


def places_world() -> dict[str, int]:
    """`build_world` plus site groups (ams1 in Tier 1 EU below Tier 1, bru-isp1 in Tier 1) and
    ams1's locations (Cage A on Floor 1: oca-ams1-01 racked in the cage, the router on the
    floor); returns the groups' and locations' ids by slug."""
    from popcorn.db import session_scope
    from popcorn.inventory import service

    build_world()
    with session_scope() as session:
        service.import_files(session=session, files=[("places.yaml", PLACES)])
    changes = [
        ("site", "ams1", {"group": "tier-1-eu"}),
        ("site", "bru-isp1", {"group": "tier-1"}),
        ("device", "oca-ams1-01", {"rack": "R01", "position": 10, "location": "cage-a"}),
        ("device", "rtr-ams1-01", {"location": "floor-1"}),
    ]
    with session_scope() as session:
        for otype, ref, data in changes:
            service.update_object(session=session, otype=otype, ref=ref, data=data)
    ids: dict[str, int] = {}
    with session_scope(readonly=True) as session:
        for otype in ("site_group", "location"):
            listing = service.list_objects(session=session, otype=otype, args={})
            ids.update({item["slug"]: item["id"] for item in listing["items"]})
    return ids
