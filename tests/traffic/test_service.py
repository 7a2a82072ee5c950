"""Traffic service: the model, persisted plans, bad input, inventory and signals, forecasts,
placement, and the shift remediation asks for."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from popcorn.audit import records_for
from popcorn.db import session_scope
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.outbox import OutboxEvent, dispatch_once, emit
from popcorn.traffic import costs as cost_service
from popcorn.traffic import forecasts as forecast_service
from popcorn.traffic import models as m
from popcorn.traffic import placements as placement_service
from popcorn.traffic import plans as plan_service
from popcorn.traffic import regions as region_service
from popcorn.traffic import schemas as s
from popcorn.traffic import service
from popcorn.traffic.optimize import PlanInputError

WORLD = """
regions:
  - {slug: europe, name: Europe}
sites:
  - {code: ams1, name: Amsterdam 1, region: europe, kind: cdn-ix, country: NL}
  - {code: fra1, name: Frankfurt 1, region: europe, kind: cdn-ix, country: DE}
  - {code: lon-isp1, name: London ISP, region: europe, kind: cdn-isp, country: GB}
  - {code: eu-west-1, name: AWS Ireland, region: europe, kind: cloud-region, country: IE}
device_models:
  - {manufacturer: Netflix, model: OCA Storage, slug: oca-storage, u_height: 2}
devices:
  - {name: oca-ams1-01, role: storage-appliance, model: oca-storage, site: ams1,
     throughput_gbps: 100G, storage_tb: 360TB}
  - {name: oca-ams1-02, role: storage-appliance, model: oca-storage, site: ams1,
     throughput_gbps: 100G, storage_tb: 360TB}
  - {name: oca-fra1-01, role: storage-appliance, model: oca-storage, site: fra1,
     throughput_gbps: 100G, storage_tb: 240TB}
  - {name: oca-lon-01, role: storage-appliance, model: oca-storage, site: lon-isp1,
     throughput_gbps: 80G, storage_tb: 200TB}
"""


def small_world() -> None:
    """Two regions of 100 each and three groups; `a` is close to `east`, `b` to `west`."""
    with session_scope() as session:
        region_service.create_region(session=session, data={"name": "east", "capacity": 100.0})
        region_service.create_region(
            session=session,
            data={
                "name": "west",
                "instances": 4,
                "throughput_per_instance": 25.0,
                "max_instances": 10,
            },
        )
        for name, demand in (("a", 60.0), ("b", 50.0), ("c", 20.0)):
            region_service.create_group(session=session, data={"name": name, "demand": demand})
        cost_service.set_costs(
            session=session,
            entries=cost_service.cost_entries(
                {"a": {"east": 10, "west": 40}, "b": {"east": 40, "west": 10}, "c": {"west": 5}}
            ),
        )


def plan_count() -> int:
    with session_scope(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(m.Plan)) or 0)


def events(kind: str) -> list[OutboxEvent]:
    with session_scope(readonly=True) as session:
        stmt = select(OutboxEvent).where(OutboxEvent.type == kind).order_by(OutboxEvent.id)
        return list(session.scalars(stmt))


def steer(**spec: Any) -> m.Plan:
    with session_scope() as session:
        return plan_service.plan_steering_for(session=session, spec=s.SteeringCreate(**spec))


def test_a_steering_plan_is_stored_with_its_inputs_and_announced() -> None:
    small_world()
    plan = steer(reason="daily")

    assert plan.feasible
    loads = {r["region"]: r["load"] for r in plan.result["regions"]}
    assert loads == pytest.approx({"east": 60.0, "west": 70.0})
    assert plan.inputs["cost"] == [[10.0, 40.0], [40.0, 10.0], [None, 5.0]]
    assert [g["demand"] for g in plan.inputs["groups"]] == [60.0, 50.0, 20.0]
    [event] = events("traffic.plan.created")
    assert event.payload["plan_id"] == plan.id and event.payload["feasible"] is True
    with session_scope(readonly=True) as session:
        assert records_for(session, "traffic_plan", plan.id)[0].action == "create"


def test_demand_that_cannot_fit_is_an_explicit_report() -> None:
    small_world()
    plan = steer(demand={"a": 150.0})

    assert not plan.feasible
    assert plan.summary["total_shortfall"] == pytest.approx(20.0)
    assert plan.summary["shortfall"]
    region = {r["region"]: r for r in plan.result["regions"]}
    assert region["west"]["required_instances"] is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"demand": {"a": -1.0}}, "group 'a'.demand: must be >= 0"),
        ({"demand": {"a": None}}, "group 'a'.demand: is missing"),
        ({"demand": {"zz": 1.0}}, "demand: unknown group(s) 'zz'"),
        ({"regions": ["east", "nowhere"]}, "regions: unknown region 'nowhere'"),
    ],
)
def test_bad_plan_input_is_refused_and_writes_nothing(spec: dict[str, Any], message: str) -> None:
    small_world()
    with pytest.raises(InvalidInput) as err:
        steer(**spec)
    assert message in err.value.message
    assert plan_count() == 0


def test_a_group_without_demand_is_named() -> None:
    small_world()
    with session_scope() as session:
        region_service.create_group(session=session, data={"name": "d"})
        cost_service.set_costs(session=session, entries=[("d", "east", 3.0)], replace=False)
    with pytest.raises(PlanInputError, match=r"group 'd'\.demand: is missing"):
        steer()


def test_evacuating_every_region_is_refused() -> None:
    small_world()
    with session_scope() as session, pytest.raises(PlanInputError, match="cannot evacuate every"):
        plan_service.plan_evacuation_for(
            session=session, spec=s.EvacuationCreate(evacuate=["east", "west"])
        )
    assert plan_count() == 0


def test_an_evacuation_that_cannot_fit_says_why() -> None:
    small_world()
    with session_scope() as session:
        plan = plan_service.plan_evacuation_for(
            session=session, spec=s.EvacuationCreate(evacuate=["west"])
        )
    assert not plan.feasible
    assert plan.summary["reasons"]
    assert plan.result["infeasibility"]["stranded_groups"] == ["c"]
    assert events("traffic.plan.created")[0].payload["feasible"] is False


def test_evacuation_scales_the_receiver_and_the_return_scales_it_back() -> None:
    small_world()
    with session_scope() as session:
        evac = plan_service.plan_evacuation_for(
            session=session, spec=s.EvacuationCreate(evacuate=["east"], steps=4)
        )
        back = plan_service.plan_return_for(
            session=session, plan_id=evac.id, spec=s.ReturnCreate(dwell_seconds=30)
        )
    assert evac.feasible and back.feasible
    assert evac.summary["scale_up"] == {"west": [4, 6]}
    assert back.summary["scale_down"] == {"west": [6, 4]}
    assert back.parent_id == evac.id
    final = back.result["steps"][-1]["loads"]
    assert final == pytest.approx(dict(zip(["east", "west"], [60.0, 70.0], strict=True)))
    for step in evac.result["steps"]:
        assert step["loads"]["west"] <= evac.result["capacity"]["west"] + 1e-9
    with session_scope() as session:
        png = plan_service.plan_png(session=session, plan_id=back.id)
        with pytest.raises(InvalidInput, match="only an evacuation can be returned"):
            plan_service.plan_return_for(session=session, plan_id=back.id, spec=s.ReturnCreate())
    assert png.startswith(b"\x89PNG")


def test_an_evacuation_can_start_from_the_steering_in_force() -> None:
    small_world()
    current = steer()
    with session_scope() as session:
        evac = plan_service.plan_evacuation_for(
            session=session,
            spec=s.EvacuationCreate(evacuate=["east"], steps=2, current_plan=current.id),
        )
    assert evac.result["start_loads"] == pytest.approx({"east": 60.0, "west": 70.0})


def test_costs_upload_as_csv_json_or_matrix_and_wrong_shapes_change_nothing() -> None:
    small_world()
    wide = "group,east,west\na,1,2\nb,3,\nc,,4\n"
    with session_scope() as session:
        cost_service.set_costs(
            session=session, entries=cost_service.parse_costs(wide, filename="c.csv")
        )
        matrix = cost_service.cost_matrix(session=session)
    assert matrix["matrix"] == [[1.0, 2.0], [3.0, None], [None, 4.0]]

    long = "group,region,cost\na,west,9\n"
    with session_scope() as session:
        cost_service.set_costs(
            session=session, entries=cost_service.parse_costs(long), replace=False
        )
        assert cost_service.cost_matrix(session=session)["matrix"][0] == [1.0, 9.0]

    bad_shapes = [
        {"groups": ["a", "b"], "regions": ["east", "west"], "matrix": [[1, 2]]},
        {"groups": ["a"], "regions": ["east", "west"], "matrix": [[1, 2, 3]]},
    ]
    for data in bad_shapes:
        with pytest.raises(InvalidInput, match="expected"):
            cost_service.cost_entries(data)
    with pytest.raises(InvalidInput, match="line 2 has 1 costs, expected 2"):
        cost_service.parse_costs("group,east,west\na,1\n")
    with session_scope() as session, pytest.raises(InvalidInput, match="unknown region"):
        cost_service.set_costs(session=session, entries=[("a", "mars", 1.0)])
    with pytest.raises(InvalidInput, match="must be >= 0"):
        cost_service.cost_entries({"a": {"east": -2}})
    with session_scope(readonly=True) as session:
        assert cost_service.cost_matrix(session=session)["matrix"][0] == [1.0, 9.0]


def test_region_numbers_are_checked() -> None:
    with session_scope() as session, pytest.raises(PlanInputError, match="max_instances"):
        region_service.create_region(
            session=session,
            data={"name": "x", "instances": 5, "throughput_per_instance": 1.0, "max_instances": 2},
        )
    with session_scope() as session:
        region_service.create_region(session=session, data={"name": "x", "capacity": 5.0})
        with pytest.raises(Conflict):
            region_service.create_region(session=session, data={"name": "x"})
        row = region_service.update_region(session=session, ref="x", data={"capacity": None})
        assert row.capacity is None
    with session_scope() as session, pytest.raises(NotFound):
        region_service.get_region(session=session, ref="nope")


def inventory_world() -> None:
    from popcorn.inventory import service as inventory

    with session_scope() as session:
        inventory.import_files(session=session, files=[("world.yaml", WORLD)])


def test_regions_and_cdn_sites_come_from_inventory() -> None:
    inventory_world()
    with session_scope() as session:
        first = region_service.sync_from_inventory(session=session)
        again = region_service.sync_from_inventory(session=session)
        rows = {r.name: r for r in session.scalars(select(m.TrafficRegion))}

    assert sorted(first["created"]) == ["ams1", "eu-west-1", "fra1", "lon-isp1"]
    assert again["created"] == again["updated"] == []
    assert rows["ams1"].kind == "cdn" and rows["ams1"].capacity == 200.0
    assert rows["ams1"].storage_gb == 720_000.0
    assert rows["eu-west-1"].kind == "cloud" and rows["eu-west-1"].aws_region == "eu-west-1"


def cdn_groups() -> None:
    with session_scope() as session:
        for name, demand in (("nl", 60.0), ("de", 50.0), ("gb", 40.0)):
            region_service.create_group(
                session=session, data={"name": name, "demand": demand, "kind": "isp"}
            )
        cost_service.set_costs(
            session=session,
            entries=cost_service.cost_entries(
                {
                    "nl": {"ams1": 5, "fra1": 15, "lon-isp1": 20},
                    "de": {"ams1": 15, "fra1": 5, "lon-isp1": 25},
                    "gb": {"ams1": 20, "fra1": 25, "lon-isp1": 5},
                }
            ),
        )


def test_a_failed_appliance_moves_its_site_load_to_other_cdn_sites() -> None:
    from popcorn.inventory import service as inventory

    inventory_world()
    with session_scope() as session:
        region_service.sync_from_inventory(session=session)
    cdn_groups()
    with session_scope() as session:
        inventory.set_device_status(session=session, ref="oca-ams1-02", status="maintenance")
    with session_scope() as session:
        plan = plan_service.shift_site_load(
            session=session, site="ams1", reason="disk failure", device="oca-ams1-02"
        )
        capacity = region_service.get_region(session=session, ref="ams1").capacity

    assert capacity == 100.0
    assert plan.kind == "shift" and plan.feasible and plan.evacuated == ["ams1"]
    assert plan.result["steps"][-1]["loads"]["ams1"] == pytest.approx(0.0, abs=1e-9)
    assert "eu-west-1" not in plan.result["region_names"]
    [event] = events("traffic.plan.created")
    assert event.payload["site"] == "ams1" and event.payload["device"] == "oca-ams1-02"


def test_the_remediation_event_is_answered_with_a_plan_or_a_rejection() -> None:
    import popcorn.traffic.subscribers  # noqa: F401  (registers the subscriber)

    inventory_world()
    with session_scope() as session:
        region_service.sync_from_inventory(session=session)
    cdn_groups()
    dispatch_once()  # the subscriber starts at the end of the log
    with session_scope() as session:
        for site in ("fra1", "nowhere"):
            emit(
                session,
                "remediation.traffic.shift_requested",
                "remediation_execution",
                1,
                {"site": site, "device": "oca-fra1-01", "reason": "disk failure", "disks": []},
            )
    dispatch_once()

    [created] = events("traffic.plan.created")
    assert created.payload["site"] == "fra1" and created.payload["reason"] == "disk failure"
    [rejected] = events("traffic.shift.rejected")
    assert rejected.payload["site"] == "nowhere"
    assert "no CDN site 'nowhere'" in rejected.payload["reason"]


def weekly(days: int = 21, step: int = 3600, seed: int = 0) -> np.ndarray[Any, Any]:
    t = np.arange(days * 86400 // step) * step
    daily = 1.0 + 0.5 * np.sin(2 * np.pi * t / 86400)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return np.asarray(1000.0 * daily * (1 + noise))


def test_a_forecast_from_history_reports_mape_and_plans_scaling() -> None:
    small_world()
    with session_scope() as session:
        row = forecast_service.create_forecast(
            session=session,
            spec=s.ForecastCreate(
                region="west", history=(0.1 * weekly()).tolist(), step_seconds=3600, horizon=24
            ),
        )
        png = forecast_service.forecast_plot(session=session, forecast_id=row.id)
    assert len(row.values) == 24
    assert row.backtest["mape"]["combined"] < 5.0
    assert row.scaling is not None and row.scaling["actions"]
    served = np.array(row.scaling["instances"]) * 25.0
    assert (served >= np.array(row.values)).all()
    assert row.scaling["capped_intervals"] == []
    assert png.startswith(b"\x89PNG")


def test_forecast_history_and_group_demand_can_come_from_signals() -> None:
    from popcorn.signals import service as signals

    small_world()
    now = time.time()
    step = 3600
    values = weekly(days=14)
    start = now - values.size * step
    with session_scope() as session:
        signals.ingest_json(
            session=session,
            payload={
                "series": [
                    {
                        "metric": "edge_demand_gbps",
                        "labels": {"region": "west"},
                        "timestamps": (start + np.arange(values.size) * step).tolist(),
                        "values": values.tolist(),
                    }
                ]
            },
        )
    with session_scope() as session:
        row = forecast_service.create_forecast(
            session=session,
            spec=s.ForecastCreate(
                selector='edge_demand_gbps{region="west"}', step_seconds=step, horizon=12, days=14
            ),
        )
        region_service.update_group(
            session=session,
            ref="c",
            data={
                "demand_source": "signals",
                "demand_selector": 'edge_demand_gbps{region="west"}',
                "demand_window_seconds": 3 * 3600,
            },
        )
        region_service.update_group(
            session=session, ref="b", data={"demand_source": "forecast", "forecast_id": row.id}
        )
        demand = region_service.resolve_demand(
            session=session, groups=list(session.scalars(select(m.ClientGroup)))
        )
    assert row.source == "signals" and len(row.history) >= 13 * 24
    assert demand["b"] == pytest.approx(max(row.values))
    assert demand["c"] == pytest.approx(float(values[-2:].mean()), rel=1e-6)


def test_a_group_reading_demand_from_signals_needs_a_selector() -> None:
    with session_scope() as session, pytest.raises(InvalidInput, match="demand_selector"):
        region_service.create_group(session=session, data={"name": "x", "demand_source": "signals"})


def test_placement_fills_sites_from_uploaded_tables_and_region_storage() -> None:
    with session_scope() as session:
        region_service.create_region(
            session=session, data={"name": "ams1", "kind": "cdn", "storage_gb": 10.0}
        )
    popularity = pd.DataFrame(
        {
            "site": ["ams1", "ams1", "ams1", "fra1", "fra1"],
            "title": ["big", "small1", "small2", "big", "small1"],
            "requests": [100.0, 60.0, 50.0, 10.0, 80.0],
        }
    )
    buffer = io.BytesIO()
    popularity.to_parquet(buffer)
    sizes = "title,size\nbig,9\nsmall1,5\nsmall2,5\n"
    data = {
        "popularity": service.read_table(
            buffer.getvalue(), name="popularity", filename="p.parquet"
        ),
        "sizes": service.read_table(sizes, name="sizes", filename="sizes.csv"),
        "storage": [{"site": "fra1", "storage": 5.0}],
    }
    with session_scope() as session:
        row = placement_service.create_placement(
            session=session, spec=placement_service.placement_spec(data)
        )
    sites = {site["site"]: site for site in row.result["sites"]}
    assert sites["ams1"]["titles"] == ["small1", "small2"]
    assert sites["fra1"]["titles"] == ["small1"]
    assert row.local_share > row.baseline_share
    assert row.summary["storage"] == {"ams1": 10.0, "fra1": 5.0}


def test_placement_input_errors_name_the_problem() -> None:
    data = {
        "popularity": [{"site": "x", "title": "t", "requests": 1}],
        "sizes": [{"title": "u", "size": 1}],
    }
    with session_scope() as session, pytest.raises(InvalidInput, match="no size for title"):
        placement_service.create_placement(
            session=session, spec=placement_service.placement_spec(data)
        )
    data["sizes"] = [{"title": "t", "size": 1}]
    with session_scope() as session, pytest.raises(InvalidInput, match="no storage known"):
        placement_service.create_placement(
            session=session, spec=placement_service.placement_spec(data)
        )
    data["popularity"] = [{"site": "x", "title": "t", "requests": -1}]
    with pytest.raises(InvalidInput, match=r"popularity\.0\.requests"):
        placement_service.placement_spec(data)


def test_settings_default_store_and_reset() -> None:
    with session_scope() as session:
        assert service.get_settings_view(session=session)["aws_region"] == "us-east-1"
        service.update_settings(
            session=session, changes={"aws_endpoint_url": "http://127.0.0.1:5000"}
        )
        with pytest.raises(InvalidInput, match="unknown setting"):
            service.update_settings(session=session, changes={"colour": "red"})
    with session_scope() as session:
        assert service.get_settings_view(session=session)["aws_endpoint_url"].endswith(":5000")
        service.update_settings(session=session, changes={"aws_endpoint_url": None})
        assert service.get_settings_view(session=session)["aws_endpoint_url"] is None


def test_placement_reads_site_storage_from_inventory() -> None:
    inventory_world()
    data = {
        "popularity": [{"site": "fra1", "title": "t", "requests": 3}],
        "sizes": [{"title": "t", "size": 100.0}],
    }
    with session_scope() as session:
        row = placement_service.create_placement(
            session=session, spec=placement_service.placement_spec(data)
        )
    assert row.summary["storage"] == {"fra1": 240_000.0}
    assert row.local_share == 1.0


def test_without_inventory_or_signals_traffic_says_which_domain_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from popcorn import domains
    from popcorn.errors import Unavailable

    monkeypatch.setattr(domains, "DOMAINS", ["traffic"])
    small_world()
    with session_scope() as session, pytest.raises(Unavailable, match="inventory") as caught:
        region_service.sync_from_inventory(session=session)
    assert caught.value.details == {"domain": "inventory"}
    with session_scope() as session:
        region_service.update_group(
            session=session, ref="a", data={"demand_source": "signals", "demand_selector": "x"}
        )
    with session_scope() as session, pytest.raises(Unavailable, match="signals"):
        plan_service.plan_steering_for(session=session, spec=s.SteeringCreate())
    with session_scope() as session:
        region_service.update_region(session=session, ref="east", data={"kind": "cdn"})
        region_service.update_region(session=session, ref="west", data={"kind": "cdn"})
        region_service.update_group(session=session, ref="a", data={"demand_source": "given"})
        plan = plan_service.shift_site_load(session=session, site="east", reason="disk failure")
    assert plan.kind == "shift" and plan.evacuated == ["east"]
