"""The typed facade other domains use (`popcorn.inventory.api`), on a real database."""

from __future__ import annotations

from typing import Any

import pytest
from inventory_world import events  # type: ignore[import-not-found]

from popcorn.db import session_scope
from popcorn.errors import InvalidInput, NotFound
from popcorn.inventory import api as inventory_api


def test_devices_for_scope_returns_summaries(world: Any) -> None:
    with session_scope(readonly=True) as session:
        found = inventory_api.devices_for_scope(session=session, region="benelux", role="router")
        assert [d.name for d in found] == ["rtr-ams1-01"]
        device = found[0]
        assert isinstance(device, inventory_api.DeviceSummary)
        assert (device.site, device.region, device.status) == ("ams1", "Benelux", "active")
        several = inventory_api.devices_for_scope(session=session, site=["ams1", "iad1"])
        assert {d.site for d in several} == {"ams1", "iad1"}
        with pytest.raises(NotFound):
            inventory_api.devices_for_scope(session=session, site="ams9")
        with pytest.raises(NotFound):
            inventory_api.devices_for_scope(session=session, device="no-such-device")


def test_get_device_by_name_or_id(world: Any) -> None:
    with session_scope(readonly=True) as session:
        by_name = inventory_api.get_device(session=session, ref="oca-bru-01")
        assert by_name.model_dump().keys() == inventory_api.DeviceSummary.model_fields.keys()
        assert inventory_api.get_device(session=session, ref=by_name.id) == by_name
        assert inventory_api.get_device(session=session, ref=str(by_name.id)) == by_name
        for unknown in ("nope", 2**63, "9223372036854775808", "٣"):
            with pytest.raises(NotFound):
                inventory_api.get_device(session=session, ref=unknown)


def test_set_device_status_moves_and_refuses(world: Any) -> None:
    with session_scope() as session:
        moved = inventory_api.set_device_status(
            session=session, ref="oca-ams1-01", status="maintenance", reason="disk swap"
        )
        assert moved.status == "maintenance"
    assert events("inventory.device.status_changed")[-1].payload["to"] == "maintenance"
    with session_scope() as session:
        inventory_api.set_device_status(session=session, ref="oca-ams1-01", status="decommissioned")
    with session_scope() as session, pytest.raises(InvalidInput) as refused:
        inventory_api.set_device_status(session=session, ref="oca-ams1-01", status="active")
    assert "cannot go from decommissioned to active" in str(refused.value)
    assert "allowed: none" in str(refused.value)
    with session_scope() as session, pytest.raises(InvalidInput) as refused:
        inventory_api.set_device_status(session=session, ref="oca-bru-01", status="planned")
    assert "allowed: decommissioned, failed, maintenance" in str(refused.value)
    with session_scope() as session, pytest.raises(NotFound):
        inventory_api.set_device_status(session=session, ref="ghost", status="active")


def test_find_and_fail_component(world: Any) -> None:
    with session_scope(readonly=True) as session:
        part = inventory_api.find_component(
            session=session, device="oca-ams1-01", component="HDD-2"
        )
        assert isinstance(part, inventory_api.ComponentSummary)
        assert (part.device, part.name, part.kind, part.status) == (
            "oca-ams1-01",
            "disk1",
            "disk",
            "ok",
        )
        with pytest.raises(NotFound):
            inventory_api.find_component(session=session, device="oca-ams1-01", component="disk9")
        with pytest.raises(NotFound):
            inventory_api.find_component(session=session, device="ghost", component="disk0")
    with session_scope() as session:
        failed = inventory_api.mark_component_failed(
            session=session, device="oca-ams1-01", component=part.id, reason="SMART 5"
        )
        assert (failed.id, failed.status) == (part.id, "failed")
    with session_scope() as session:
        inventory_api.mark_component_failed(
            session=session, device="oca-ams1-01", component="disk1"
        )
    assert len(events("inventory.component.failed")) == 1


def test_list_sites_and_capacity(world: Any) -> None:
    with session_scope(readonly=True) as session:
        sites = inventory_api.list_sites(session=session)
        assert [x.code for x in sites] == ["ams1", "bru-isp1", "iad1"]
        assert sites[0].region == "Benelux" and sites[0].kind == "cdn-ix"
        isp = inventory_api.list_sites(session=session, kinds=["cdn-isp"])
        assert [x.code for x in isp] == ["bru-isp1"]
        capacity = inventory_api.site_capacity(session=session, sites=["ams1", "iad1"])
    by_site = {c.site: c for c in capacity}
    assert set(by_site) == {"ams1", "iad1"}
    # oca-ams1-02 is in maintenance: only active devices count
    assert (by_site["ams1"].devices, by_site["ams1"].throughput_gbps) == (2, 100.0)
    assert by_site["ams1"].storage_tb == 360.0
    assert by_site["iad1"].throughput_gbps == 400.0


def test_record_agent_heartbeat(world: Any) -> None:
    with session_scope() as session:
        result = inventory_api.record_agent_heartbeat(
            session=session,
            device="rtr-ams1-01",
            url="https://10.0.0.1:8443",
            version="1.2",
            actions=["restart_service", "collect_logs"],
        )
        assert result is None
    with session_scope(readonly=True) as session:
        device = inventory_api.get_device(session=session, ref="rtr-ams1-01")
    assert device.agent_url == "https://10.0.0.1:8443"
    assert events("inventory.device.agent_changed")[-1].payload["agent_actions"] == [
        "collect_logs",
        "restart_service",
    ]
    with session_scope() as session, pytest.raises(NotFound):
        inventory_api.record_agent_heartbeat(
            session=session, device="ghost", url="https://x", version="1", actions=[]
        )
