"""Runs as Popcorn sees them: discovery, a failing step with its traceback, resume, cancel
killing the process tree, schedules, the job path through a real worker, CLI errors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from ml_kit import start
from popcorn_testing import Api, Processes, wait_until

from popcorn.cli import cli
from popcorn.ml.cli import group

cli.add_command(group)


def _run(run_id: int) -> dict[str, object]:
    from popcorn.db import session_scope
    from popcorn.ml import service

    with session_scope(readonly=True) as session:
        return service.run_read(service.get_run(session=session, ref=run_id))


def test_flows_lists_shipped_and_directory_flows() -> None:
    result = CliRunner().invoke(cli, ["ml", "flows", "--json"])
    assert result.exit_code == 0, result.output
    flows = {f["name"]: f for f in json.loads(result.output)["items"]}
    assert {"recommendations", "demand-forecast", "artwork-personalization"} <= set(flows)
    assert flows["recommendations"]["source"] == "popcorn"
    assert flows["recommendations"]["steps"] == ["start", "train", "evaluate", "end"]
    assert "plays" in {p["name"] for p in flows["recommendations"]["parameters"]}
    assert flows["flaky"]["source"] == "directory"
    assert flows["flaky"]["class_name"] == "FlakyFlow"


def test_cli_refuses_unknown_flow_and_parameter() -> None:
    result = CliRunner().invoke(cli, ["ml", "run", "nope", "--here"])
    assert result.exit_code == 1 and "no flow named 'nope'" in result.output
    result = CliRunner().invoke(cli, ["ml", "run", "flaky", "--param", "colour=red", "--here"])
    assert result.exit_code == 1 and "no parameter 'colour'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_failing_step_is_shown_and_resume_finishes_it(api: Api, tmp_path: Path) -> None:
    from popcorn.ml import service

    marker = tmp_path / "fail"
    marker.touch()
    run_id = start("flaky", marker=str(marker))
    service.execute_run(run_id)
    failed = api.get(f"/api/v1/ml/runs/{run_id}").json
    assert failed["status"] == "failed"
    assert failed["failed_step"] == "train"
    assert "planted failure in train" in failed["error"]
    assert failed["resumable"] is True
    assert failed["metaflow"]["failure"]["step"] == "train"
    log = api.get(f"/api/v1/ml/runs/{run_id}/log").get_data(as_text=True)
    assert "planted failure in train" in log

    marker.unlink()
    resumed = api.post(f"/api/v1/ml/runs/{run_id}/resume", role="operator")
    assert resumed.status_code == 202, resumed.json
    assert resumed.json["resume_of"] == run_id and resumed.json["job_id"] is not None
    service.execute_run(resumed.json["id"])  # what the queued job does, here
    done = api.get(f"/api/v1/ml/runs/{resumed.json['id']}").json
    assert done["status"] == "succeeded", done["error"]
    steps = {s["name"] for s in done["metaflow"]["steps"]}
    assert steps == {"start", "train", "end"}
    assert api.post(f"/api/v1/ml/runs/{done['id']}/resume").status_code == 409


@pytest.mark.slow
def test_cancel_kills_the_process_tree_and_offers_resume(api: Api, tmp_path: Path) -> None:
    from popcorn.ml import service

    pidfile = tmp_path / "nap.pid"
    run_id = start("sleepy", pidfile=str(pidfile))
    worker = threading.Thread(target=service.execute_run, args=(run_id,), daemon=True)
    worker.start()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "", timeout=120)
    wait_until(lambda: _run(run_id)["progress"]["step"] == "nap", timeout=30)  # type: ignore[index]
    nap = int(pidfile.read_text())
    assert api.post(f"/api/v1/ml/runs/{run_id}/cancel", role="viewer").status_code == 403
    canceled = api.post(f"/api/v1/ml/runs/{run_id}/cancel", role="operator")
    assert canceled.status_code == 200
    worker.join(timeout=60)
    assert not worker.is_alive()
    ended = _run(run_id)
    assert ended["status"] == "failed"
    assert "canceled" in str(ended["error"]) and ended["failed_step"] == "nap"
    assert ended["resumable"] is True

    def gone() -> bool:
        try:
            os.kill(nap, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, timeout=10)
    assert api.post(f"/api/v1/ml/runs/{run_id}/cancel").status_code == 409


def test_cancel_before_start_ends_the_queued_job(api: Api) -> None:
    created = api.post("/api/v1/ml/runs", json={"flow": "flaky"}, role="operator")
    assert created.status_code == 202
    canceled = api.post(f"/api/v1/ml/runs/{created.json['id']}/cancel").json
    assert canceled["status"] == "failed" and canceled["resumable"] is False
    job = api.get(f"/api/v1/jobs/{created.json['job_id']}").json
    assert job["status"] == "canceled"


def test_run_input_is_checked(api: Api) -> None:
    bad = api.post("/api/v1/ml/runs", json={"flow": "flaky", "parameters": {"x y": "1"}})
    assert bad.status_code == 422
    bad = api.post("/api/v1/ml/runs", json={"flow": "flaky", "decorators": ["conda"]})
    assert bad.status_code == 422
    assert api.post("/api/v1/ml/runs", json={"flow": "nope"}).status_code == 404
    assert api.get("/api/v1/ml/runs/99999999999999999999").status_code == 404


def test_schedules_go_through_popcorns_scheduler(api: Api) -> None:
    made = api.post(
        "/api/v1/ml/schedules",
        json={"name": "nightly", "flow": "flaky", "cron": "0 3 * * *"},
        role="operator",
    )
    assert made.status_code == 201, made.json
    assert api.get("/api/v1/ml/schedules").json["items"][0]["name"] == "nightly"
    core = api.get("/api/v1/schedules").json
    listed = core["items"] if isinstance(core, dict) else core
    assert any(s["name"] == "ml.run:nightly" and s["task"] == "ml.run" for s in listed)
    bad = api.post("/api/v1/ml/schedules", json={"name": "x", "flow": "flaky", "cron": "nope"})
    assert bad.status_code == 422
    assert api.delete("/api/v1/ml/schedules/nightly").status_code == 200
    assert api.get("/api/v1/ml/schedules").json["items"] == []


@pytest.mark.slow
def test_scheduled_job_runs_the_flow_on_a_real_worker(processes: Processes) -> None:
    from popcorn import jobs
    from popcorn.db import session_scope
    from popcorn.ml import service

    with session_scope() as session:
        record = jobs.enqueue(
            session, service.RUN_TASK, arguments={"flow": "flaky", "parameters": {}}, queue="low"
        )
        job_id = record.id
    processes.start("worker")
    finished = jobs.wait_for(job_id, timeout=180)
    assert finished.status == "finished", finished.error
    assert finished.result["status"] == "succeeded"
    run = _run(finished.result["run"])
    assert run["status"] == "succeeded" and run["progress"]["done"] == 3  # type: ignore[index]
