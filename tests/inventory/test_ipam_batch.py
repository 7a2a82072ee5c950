"""IPAM objects many at a time: checked together, all or nothing, audited like single changes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from popcorn.audit import AuditRecord, records_for
from popcorn.db import session_scope
from popcorn.inventory.ipam import batch, service
from popcorn.inventory.ipam.models import IpAddress, Prefix
from popcorn.outbox import OutboxEvent

BASE = "/api/v1/inventory"
WORLD = """
sites:
  - {code: fra1, name: Frankfurt 1}
device_models:
  - manufacturer: Generic
    model: OCA
    slug: oca
    interfaces:
      - {name: eth0, type: 100gbase-x-qsfp28}
      - {name: eth1, type: 100gbase-x-qsfp28}
devices:
  - {name: oca1, role: storage-appliance, model: oca, site: fra1}
"""


@pytest.fixture
def world(api: Any) -> None:
    response = api.post(f"{BASE}/import?format=yaml", data=WORLD)
    assert response.status_code == 200, response.json


def _count(model: Any, *where: Any) -> int:
    with session_scope(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_duplicates_in_the_batch_and_stored_are_refused_together(world: None, api: Any) -> None:
    api.post(f"{BASE}/ip-addresses", json={"address": "10.0.0.1/24"}, role="operator")
    api.post(f"{BASE}/vrfs", json={"name": "lab", "enforce_unique": False}, role="operator")
    body = [
        {"address": "10.0.0.2/24"},
        {"address": "10.0.0.1/16"},  # the stored 10.0.0.1, another mask
        {"address": "10.0.0.2/25"},  # the first item's host
        {"address": "10.0.0.3/24", "interface": 999_999},
    ]
    refused = api.post(f"{BASE}/ip-addresses/bulk", json=body, role="operator")
    assert refused.status_code == 422
    errors = {e["item"]: e for e in refused.json["error"]["details"]["errors"]}
    assert set(errors) == {1, 2, 3}
    assert errors[1]["code"] == "conflict" and "10.0.0.1" in errors[1]["message"]
    assert "item 0" in errors[2]["message"]
    assert errors[3]["code"] == "not_found"
    assert _count(IpAddress) == 1  # nothing of the batch was written
    # a VRF that does not enforce uniqueness takes the same address twice in one batch
    shared = [{"address": "10.0.0.1/24", "vrf": "lab"}] * 2
    done = api.post(f"{BASE}/ip-addresses/bulk", json=shared, role="operator")
    assert done.status_code == 201 and done.json["count"] == 2
    prefixes = [{"prefix": "10.1.0.0/24"}, {"prefix": "10.1.0.9/24"}]  # the same network
    assert api.post(f"{BASE}/prefixes/bulk", json=prefixes, role="operator").status_code == 422
    assert _count(Prefix) == 0


def test_updates_unchanged_rows_and_primary_ips(world: None, api: Any) -> None:
    with session_scope() as session:
        made = batch.write_many(
            session,
            "ip_address",
            [
                (None, {"address": "192.0.2.1/24", "device": "oca1", "interface": "eth0"}),
                (None, {"address": "192.0.2.2/24"}),
            ],
        )
    assert made.verbs == ["create", "create"] and not made.errors
    first, second = made.ids
    assert first is not None and second is not None
    api.post(f"{BASE}/ip-addresses/{first}/primary", role="operator")
    assert api.get(f"{BASE}/devices/oca1").json["primary_ip4"] == "192.0.2.1"
    with session_scope() as session:
        again = batch.write_many(
            session,
            "ip_address",
            [(first, {"interface": None}), (second, {"address": "192.0.2.2/24"})],
        )
    assert again.verbs == ["update", "unchanged"]
    assert api.get(f"{BASE}/devices/oca1").json["primary_ip4"] is None  # it left its interface
    with session_scope(readonly=True) as session:
        assert [r.action for r in records_for(session, "ip_address", first)] == [
            "create",
            "update",
        ]
        assert [r.action for r in records_for(session, "ip_address", second)] == ["create"]
    with session_scope() as session:
        gone = batch.write_many(session, "ip_address", [(10**9, {"status": "reserved"})])
    assert gone.errors and gone.errors[0]["code"] == "not_found"


def test_a_large_batch_is_recorded_once(
    world: None, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "PER_OBJECT_LIMIT", 2)
    body = [{"address": f"10.2.0.{n}/24"} for n in range(1, 6)]
    done = api.post(f"{BASE}/ip-addresses/bulk", json=body, role="operator")
    assert done.status_code == 201 and done.json["count"] == 5
    assert _count(AuditRecord, AuditRecord.object_type == "ip_address") == 0
    assert _count(OutboxEvent, OutboxEvent.type == "inventory.ip_address.created") == 0
    with session_scope(readonly=True) as session:
        summary = session.scalars(
            select(AuditRecord).where(AuditRecord.object_id == "api ip-addresses")
        ).all()
        assert len(summary) == 1 and summary[0].action == "import"
        assert summary[0].after is not None
        assert summary[0].after["counts"]["ip-addresses"] == {"create": 5}


def test_the_service_upsert_route_finds_stored_objects(world: None) -> None:
    with session_scope() as session:
        service.bulk_apply(session=session, otype="prefix", items=[{"prefix": "10.3.0.0/16"}])
        again = service.bulk_apply(
            session=session,
            otype="prefix",
            items=[{"prefix": "10.3.0.0/16", "status": "reserved"}, {"prefix": "10.4.0.0/16"}],
            mode="upsert",
        )
    assert again["count"] == 2
    assert _count(Prefix) == 2
    assert _count(Prefix, Prefix.status == "reserved") == 1
