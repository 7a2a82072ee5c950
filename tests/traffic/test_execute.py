"""Executing plans against a moto server over HTTP: pre-scale, shift, check, roll back."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from popcorn_testing import Processes, free_port, wait_until
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.errors import Conflict, Forbidden, InvalidInput
from popcorn.jobs import JobRecord
from popcorn.outbox import OutboxEvent
from popcorn.traffic import executions as execution_service
from popcorn.traffic import models as m
from popcorn.traffic import plans as plan_service
from popcorn.traffic import regions as region_service
from popcorn.traffic import schemas as s
from popcorn.traffic import service
from popcorn.traffic.aws import autoscaling_client, get_capacity, get_weights, route53_client
from popcorn.traffic.health import HealthResult, health_check


def evacuation(region: str = "us-east-1", steps: int = 5) -> int:
    with session_scope() as session:
        plan = plan_service.plan_evacuation_for(
            session=session, spec=s.EvacuationCreate(evacuate=[region], steps=steps)
        )
        return plan.id


def execute(plan_id: int, **options: Any) -> int:
    spec = s.ExecuteCreate(dwell_seconds=0, poll_seconds=0.1, **options)
    with session_scope() as session:
        return execution_service.execute_plan(session=session, plan_id=plan_id, spec=spec).id


def detail(execution_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return execution_service.execution_detail(session=session, execution_id=execution_id)


def weights(sandbox: dict[str, Any]) -> dict[str, int]:
    route53 = route53_client(endpoint_url=sandbox["endpoint"])
    found = get_weights(route53, sandbox["zone_id"], sandbox["record_name"])
    return {ident: record.weight for ident, record in found.items()}


def desired(sandbox: dict[str, Any], region: str) -> tuple[int, int]:
    client = autoscaling_client(region, endpoint_url=sandbox["endpoint"])
    state = get_capacity(client, sandbox["regions"][region]["asg_name"])
    return state.desired, state.in_service


def events(prefix: str = "traffic.execution.") -> list[str]:
    with session_scope(readonly=True) as session:
        stmt = select(OutboxEvent.type).where(OutboxEvent.type.startswith(prefix))
        return list(session.scalars(stmt.order_by(OutboxEvent.id)))


def instances(region: str) -> int | None:
    with session_scope(readonly=True) as session:
        return region_service.get_region(session=session, ref=region).instances


@pytest.fixture
def failing_health() -> Iterator[dict[str, Any]]:
    """An HTTP health endpoint that answers 200 until its fourth request, then 503."""
    state: dict[str, Any] = {"calls": 0, "fail_from": 4}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["calls"] += 1
            self.send_response(503 if state["calls"] >= state["fail_from"] else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/health"
    yield state
    server.shutdown()
    server.server_close()


def test_an_evacuation_plan_never_overloads_a_region(sandbox: dict[str, Any]) -> None:
    with session_scope(readonly=True) as session:
        plan = plan_service.get_plan(session=session, plan_id=evacuation(steps=5))
        result = plan.result
    assert plan.feasible
    assert [a["region"] for a in result["scale_up"]] == ["us-west-2"]
    for step in result["steps"]:
        for region, load in step["loads"].items():
            assert load <= result["capacity"][region] * (1 + 1e-9)
    assert result["steps"][-1]["loads"]["us-east-1"] == pytest.approx(0.0, abs=1e-6)


def test_a_worker_pre_scales_then_shifts_weights_step_by_step(
    sandbox: dict[str, Any], processes: Processes, aws_env: dict[str, str]
) -> None:
    processes.env.update(aws_env)
    processes.start("worker")
    assert desired(sandbox, "us-west-2") == (10, 10)
    execution_id = execute(evacuation(steps=5))

    def ended() -> bool:
        return detail(execution_id)["status"] not in m.ACTIVE_EXECUTION

    wait_until(ended, timeout=120)
    found = detail(execution_id)

    assert found["status"] == "succeeded", found["error"]
    assert desired(sandbox, "us-west-2") == (13, 13)
    assert instances("us-west-2") == 13
    final = weights(sandbox)
    assert final["us-east-1"] == 0
    assert sum(final.values()) == 255
    kinds = [(step["kind"], step["status"]) for step in found["steps"]]
    assert (
        kinds
        == [("capture", "succeeded"), ("scale_up", "succeeded")] + [("shift", "succeeded")] * 5
    )
    east = [
        step["detail"]["weights"][sandbox["record_name"]]["us-east-1"]
        for step in found["steps"][2:]
    ]
    assert east == sorted(east, reverse=True)
    assert events() == ["traffic.execution.started"] + ["traffic.execution.stepped"] * 6 + [
        "traffic.execution.finished"
    ]
    with session_scope(readonly=True) as session:
        job = session.get(JobRecord, found["job_id"])
        assert job is not None and job.status == "finished"
        assert job.progress["done"] == job.progress["total"] == 6


def test_a_failing_health_check_at_step_four_rolls_everything_back(
    sandbox: dict[str, Any],
    processes: Processes,
    aws_env: dict[str, str],
    failing_health: dict[str, Any],
) -> None:
    processes.env.update(aws_env)
    processes.start("worker")
    before = weights(sandbox)
    execution_id = execute(evacuation(steps=5), health=s.HealthSpec(url=failing_health["url"]))

    wait_until(lambda: detail(execution_id)["status"] not in m.ACTIVE_EXECUTION, timeout=120)
    found = detail(execution_id)

    assert found["status"] == "aborted"
    assert found["rolled_back"] is True
    assert "health check failed after step 4" in found["error"]
    shifts = [step for step in found["steps"] if step["kind"] == "shift"]
    assert [step["status"] for step in shifts] == ["succeeded"] * 3 + ["failed"]
    assert shifts[3]["detail"]["health"]["source"] == "http"
    assert found["steps"][-1]["kind"] == "rollback"
    assert weights(sandbox) == before
    assert desired(sandbox, "us-west-2")[0] == 10
    assert instances("us-west-2") == 10
    assert events()[-1] == "traffic.execution.aborted"


def test_instances_that_never_come_in_service_time_out_and_roll_back(
    sandbox: dict[str, Any],
) -> None:
    client = autoscaling_client("us-west-2", endpoint_url=sandbox["endpoint"])
    group = sandbox["regions"]["us-west-2"]["asg_name"]
    one = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    instance = one["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    client.set_instance_health(InstanceId=instance, HealthStatus="Unhealthy")
    before = weights(sandbox)
    execution_id = execute(evacuation(), scale_timeout_seconds=0.5)

    outcome = execution_service.run_execution(execution_id)
    found = detail(execution_id)

    assert outcome["status"] == found["status"] == "aborted"
    assert "CapacityTimeoutError" in found["error"]
    assert [st["kind"] for st in found["steps"]] == ["capture", "scale_up", "rollback"]
    assert found["steps"][1]["status"] == "failed"
    assert desired(sandbox, "us-west-2")[0] == 10
    assert weights(sandbox) == before


def test_an_operator_cancel_between_steps_rolls_back(sandbox: dict[str, Any]) -> None:
    before = weights(sandbox)
    execution_id = execute(evacuation(steps=5))

    def cancel_at_step_two(context: dict[str, Any]) -> HealthResult:
        if context["step"] == 2:
            with session_scope() as session:
                execution_service.cancel_execution(session=session, execution_id=execution_id)
        return HealthResult(True, "test")

    outcome = execution_service.run_execution(execution_id, health_check=cancel_at_step_two)
    found = detail(execution_id)

    assert outcome["status"] == "canceled"
    assert found["error"] == "canceled by operator"
    assert [st["status"] for st in found["steps"] if st["kind"] == "shift"] == ["succeeded"] * 2
    assert found["current_step"] == 3  # steps done: the scale-up and two shifts
    assert weights(sandbox) == before
    assert desired(sandbox, "us-west-2")[0] == 10


class WorkerDied(BaseException):
    """Stands in for a worker killed in the middle of a step."""


def test_a_run_after_a_lost_worker_rolls_back_from_the_capture(sandbox: dict[str, Any]) -> None:
    before = weights(sandbox)
    execution_id = execute(evacuation(steps=5))

    def die_at_step_three(context: dict[str, Any]) -> HealthResult:
        if context["step"] == 3:
            raise WorkerDied()
        return HealthResult(True, "test")

    with pytest.raises(WorkerDied):
        execution_service.run_execution(execution_id, health_check=die_at_step_three)
    assert detail(execution_id)["status"] == "running"
    assert weights(sandbox) != before

    outcome = execution_service.run_execution(execution_id)

    assert outcome["status"] == "aborted"
    assert "worker running it was lost" in detail(execution_id)["error"]
    assert weights(sandbox) == before
    assert desired(sandbox, "us-west-2")[0] == 10


def test_signals_health_check_aborts_when_the_error_ratio_is_high(sandbox: dict[str, Any]) -> None:
    from popcorn.signals import service as signals

    now = time.time()
    with session_scope() as session:
        signals.ingest_json(
            session=session,
            payload={
                "series": [
                    {
                        "metric": "edge_error_ratio",
                        "labels": {"service": "api"},
                        "timestamps": [now - 5],
                        "values": [0.2],
                    }
                ]
            },
        )
    health = s.HealthSpec(selector='edge_error_ratio{service="api"}', threshold=0.05)
    execution_id = execute(evacuation(steps=3), health=health)

    assert execution_service.run_execution(execution_id)["status"] == "aborted"
    found = detail(execution_id)
    shift = next(st for st in found["steps"] if st["kind"] == "shift")
    assert shift["detail"]["health"]["source"] == "signals"
    assert shift["detail"]["health"]["value"] == pytest.approx(0.2)


@health_check("tests:unhealthy_at_step_two")
def unhealthy_at_step_two(context: dict[str, Any]) -> tuple[bool, str]:
    """A registered health check, as an installation adds its own through a plugin."""
    return context["step"] != 2, f"step {context['step']}"


def test_without_signals_data_the_configured_callable_decides(sandbox: dict[str, Any]) -> None:
    health = s.HealthSpec(
        selector='nothing_here{service="api"}',
        threshold=1.0,
        callable="tests:unhealthy_at_step_two",
    )
    execution_id = execute(evacuation(steps=3), health=health)

    assert execution_service.run_execution(execution_id)["status"] == "aborted"
    found = detail(execution_id)
    shifts = [st for st in found["steps"] if st["kind"] == "shift"]
    assert [st["detail"]["health"]["source"] for st in shifts] == ["callable", "callable"]
    assert found["error"] == "health check failed after step 2: step 2"


def test_infeasible_unbound_or_concurrent_executions_are_refused(sandbox: dict[str, Any]) -> None:
    with session_scope() as session:
        region_service.update_region(session=session, ref="eu-west-1", data={"max_instances": 12})
        bad = plan_service.plan_evacuation_for(
            session=session,
            spec=s.EvacuationCreate(evacuate=["us-east-1", "us-west-2"], steps=2),
        )
        assert not bad.feasible
        with pytest.raises(Conflict, match="infeasible"):
            execution_service.execute_plan(session=session, plan_id=bad.id)
    plan_id = evacuation()
    with session_scope() as session:
        region_service.update_region(
            session=session, ref="eu-west-1", data={"route53_zone_id": None}
        )
    with (
        session_scope() as session,
        pytest.raises(InvalidInput, match="eu-west-1: route53_zone_id"),
    ):
        execution_service.execute_plan(session=session, plan_id=plan_id)
    with session_scope() as session:
        region_service.update_region(
            session=session, ref="eu-west-1", data={"route53_zone_id": sandbox["zone_id"]}
        )
    first = execute(plan_id)
    with session_scope() as session, pytest.raises(Conflict, match=f"execution {first}"):
        execution_service.execute_plan(session=session, plan_id=plan_id)


def test_a_pending_execution_canceled_before_it_starts_changes_nothing(
    sandbox: dict[str, Any],
) -> None:
    before = weights(sandbox)
    execution_id = execute(evacuation())
    with session_scope() as session:
        row = execution_service.cancel_execution(session=session, execution_id=execution_id)
        assert row.status == "canceled"
    with session_scope(readonly=True) as session:
        job = session.get(JobRecord, detail(execution_id)["job_id"])
        assert job is not None and job.status == "canceled"

    assert execution_service.run_execution(execution_id)["status"] == "canceled"
    assert detail(execution_id)["steps"] == []
    assert weights(sandbox) == before
    with session_scope() as session, pytest.raises(Conflict, match="already ended"):
        execution_service.cancel_execution(session=session, execution_id=execution_id)


def test_a_health_check_can_only_name_a_registered_function(sandbox: dict[str, Any]) -> None:
    plan_id = evacuation(steps=2)
    for name in ("os:getcwd", "popcorn.traffic.executor:run", "tests:not_registered"):
        with pytest.raises(InvalidInput, match="not a registered health check"):
            execute(plan_id, health=s.HealthSpec(callable=name))
    with session_scope() as session, pytest.raises(InvalidInput, match="registered"):
        service.update_settings(session=session, changes={"health_callable": "os:getcwd"})


def test_a_stored_execution_naming_an_unregistered_function_never_calls_it(
    sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[Any] = []
    monkeypatch.setattr("os.getcwd", lambda *args: called.append(args))
    execution_id = execute(evacuation(steps=2))
    with session_scope() as session:
        row = session.get(m.Execution, execution_id)
        assert row is not None
        row.options = {**row.options, "health": {"callable": "os:getcwd"}}

    assert execution_service.run_execution(execution_id)["status"] == "aborted"
    assert called == []
    assert "os:getcwd is not a registered health check" in detail(execution_id)["error"]


def test_a_health_url_goes_only_where_an_admin_allowed(sandbox: dict[str, Any]) -> None:
    plan_id = evacuation(steps=2)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3:8080/health"):
        with pytest.raises(Forbidden, match="not allowed"):
            execute(plan_id, health=s.HealthSpec(url=url))
