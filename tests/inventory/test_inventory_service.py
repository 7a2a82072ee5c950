"""The functions other domains call, and the reports."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from inventory_world import events  # type: ignore[import-not-found]

from popcorn.db import session_scope
from popcorn.errors import InvalidInput, NotFound
from popcorn.inventory import service


def test_devices_for_scope(world: Any) -> None:
    with session_scope(readonly=True) as session:

        def names(**scope: Any) -> list[str]:
            return [d.name for d in service.devices_for_scope(session=session, **scope)]

        assert names(region="europe") == ["oca-ams1-01", "oca-ams1-02", "oca-bru-01", "rtr-ams1-01"]
        assert names(region="Benelux", role="router") == ["rtr-ams1-01"]
        assert names(site=["ams1", "iad1"], status="active") == [
            "oca-ams1-01",
            "rtr-ams1-01",
            "rtr-iad1-01",
        ]
        assert names(device="oca-bru-01") == ["oca-bru-01"]
        found = service.devices_for_scope(session=session, site="bru-isp1")[0]
        assert (found.site.code, found.device_model.slug) == ("bru-isp1", "oca-storage-gen4")
        with pytest.raises(NotFound):
            names(site="ams9")
        with pytest.raises(NotFound):
            names(region="atlantis")


def test_get_device_by_id_or_name(world: Any) -> None:
    with session_scope(readonly=True) as session:
        by_name = service.get_device(session=session, ref="oca-bru-01")
        by_id = service.get_device(session=session, ref=by_name.id)
        assert by_id.name == "oca-bru-01" and by_id.site.code == "bru-isp1"
        with pytest.raises(NotFound):
            service.get_device(session=session, ref="nope")


def test_set_device_status_and_mark_component_failed(world: Any) -> None:
    with session_scope() as session:
        device = service.set_device_status(
            session=session, ref="oca-ams1-01", status="failed", reason="disk errors"
        )
        assert device.status == "failed"
        with pytest.raises(InvalidInput, match="cannot go from failed to planned"):
            service.set_device_status(session=session, ref="oca-ams1-01", status="planned")
    with session_scope() as session:
        by_serial = service.mark_component_failed(
            session=session, device="oca-ams1-01", component="HDD-2", reason="SMART 5"
        )
        assert (by_serial.name, by_serial.status) == ("disk1", "failed")
        again = service.mark_component_failed(
            session=session, device="oca-ams1-01", component="disk1"
        )
        assert again.status == "failed"
        with pytest.raises(NotFound):
            service.mark_component_failed(session=session, device="oca-ams1-01", component="x")
    failed = events("inventory.component.failed")
    assert len(failed) == 1
    assert failed[0].payload == {
        "device": "oca-ams1-01",
        "device_id": by_serial.device_id,
        "site": "ams1",
        "component": "disk1",
        "kind": "disk",
        "serial": "HDD-2",
        "reason": "SMART 5",
    }
    status = events("inventory.device.status_changed")[-1].payload
    assert (status["from"], status["to"], status["reason"]) == ("active", "failed", "disk errors")


def test_site_capacity_and_reports(world: Any, api: Any) -> None:
    with session_scope(readonly=True) as session:
        per_site = {r["site"]: r for r in service.site_capacity(session=session)}
        region = service.capacity(session=session, by="region")
        counts = service.device_counts(session=session, by="region")
    # oca-ams1-02 is in maintenance, so it does not count
    assert per_site["ams1"]["devices"] == 2 and per_site["ams1"]["throughput_gbps"] == 100.0
    assert per_site["ams1"]["storage_tb"] == 360.0 and per_site["ams1"]["region"] == "benelux"
    assert per_site["iad1"]["throughput_gbps"] == 400.0
    assert {r["region"]: r["throughput_gbps"] for r in region} == {
        "americas": 400.0,
        "benelux": 180.0,
        "europe": 180.0,
    }
    assert {r["region"]: r["devices"] for r in counts} == {"europe": 4, "benelux": 4, "americas": 1}
    by_model = api.get("/api/v1/inventory/reports/counts?by=model", role="viewer").json["items"]
    assert by_model == [
        {"model": "oca-storage-gen4", "devices": 3},
        {"model": "juniper-mx204", "devices": 2},
    ]
    assert api.get("/api/v1/inventory/reports/counts?by=colour").status_code == 422
    only = api.get("/api/v1/inventory/reports/capacity?by=site").json["items"]
    assert {r["site"] for r in only} == {"ams1", "bru-isp1", "iad1"}


def test_end_of_life_report(world: Any, api: Any) -> None:
    api.patch(
        "/api/v1/inventory/components/"
        + str(api.get("/api/v1/inventory/components?serial=OPT-1").json["items"][0]["id"]),
        json={"eol_date": "2025-01-31"},
    )
    with session_scope(readonly=True) as session:
        report = service.end_of_life(session=session, within_days=90, today=date(2025, 1, 1))
        longer = service.end_of_life(
            session=session, within_days=90, today=date(2025, 1, 1), life_years={"disk": 1}
        )
    found = {(r["name"], r["end_of_life"], r["basis"], r["overdue"]) for r in report["items"]}
    assert found == {
        ("disk0", "2023-03-01", "install_date + 5 years", True),
        ("optic0", "2025-01-31", "eol_date", False),
    }
    assert {r["name"] for r in longer["items"]} == {"disk0", "disk1", "optic0"}
    assert api.get("/api/v1/inventory/reports/end-of-life?life=disk").status_code == 422


def test_record_agent_heartbeat(world: Any, api: Any) -> None:
    with session_scope() as session:
        device = service.record_agent_heartbeat(
            session=session,
            device="oca-bru-01",
            url="https://10.1.2.3:7443",
            version="1.2",
            actions=["disk.smart", "service.restart"],
        )
        first_seen = device.agent_last_seen
    with session_scope() as session:
        device = service.record_agent_heartbeat(
            session=session,
            device="oca-bru-01",
            url="https://10.1.2.3:7443",
            version="1.2",
            actions=["service.restart", "disk.smart"],
        )
        assert first_seen is not None and device.agent_last_seen is not None
        assert device.agent_last_seen >= first_seen
    changed = events("inventory.device.agent_changed")
    assert len(changed) == 1
    assert changed[0].payload["agent_actions"] == ["disk.smart", "service.restart"]
    shown = api.get("/api/v1/inventory/devices/oca-bru-01").json
    assert shown["agent_url"] == "https://10.1.2.3:7443" and shown["agent_last_seen"]
    history = api.get("/api/v1/inventory/devices/oca-bru-01/history").json["items"]
    assert [h["action"] for h in history] == ["create", "agent"]
    with session_scope() as session, pytest.raises(NotFound):
        service.record_agent_heartbeat(session=session, device="ghost", url="https://x")


def test_scope_endpoint_matches_service(world: Any, api: Any) -> None:
    found = api.get("/api/v1/inventory/scope?region=benelux&role=storage-appliance&brief=1")
    assert [d["name"] for d in found.json["items"]] == ["oca-ams1-01", "oca-ams1-02", "oca-bru-01"]
    assert api.get("/api/v1/inventory/scope?site=nowhere").status_code == 404
