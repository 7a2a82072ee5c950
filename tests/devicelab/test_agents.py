"""Real device agent processes against a served platform: registration, heartbeats,
signed work, planted failures, a pipeline hook with its callback, and an agent killed
mid-test whose test moves to another device. One platform and fleet for the module."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_kit import Console  # type: ignore[import-not-found]
from popcorn_testing import free_port, wait_until

from popcorn.devicelab.protocol import canonical, sign

API = "/api/v1/devicelab"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def clean_tables() -> Iterator[None]:
    """The fleet lives for the whole module; its tables are emptied once, at the end."""
    yield


class Fleet:
    def __init__(self, url: str, token: str, admin: str, env: dict[str, str], logs: Path) -> None:
        self.url, self.token, self.admin, self.env, self.logs = url, token, admin, env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def start(self, name: str, family: str, platform: str, *extra: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [
                sys.executable, "-m", "popcorn.devicelab.agent", "--url", self.url,
                "--token", self.token, "--name", name, "--family", family,
                "--platform", platform, "--heartbeat", "0.3", "--time-scale", "0.002", *extra,
            ],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def get(self, path: str) -> Any:
        return self.http.get(API + path).json()

    def wait_run(self, run_id: int, timeout: float = 60) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (
                    (r := self.get(f"/runs/{run_id}"))["status"] not in ("queued", "running") and r
                ),
                timeout=timeout,
            )
        )


def _clean() -> None:
    from sqlalchemy import text

    from popcorn.db import Base, get_engine

    engine = get_engine()
    names = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        for name in names:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {name} RESTART IDENTITY CASCADE"))
            else:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture(scope="module")
def fleet(
    app: Any, installation: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    from werkzeug.serving import make_server

    from popcorn.auth import create_token
    from popcorn.config import reset_settings
    from popcorn.db import session_scope

    # A beat late by a loaded machine must not make a live agent offline (its test lost and
    # run again); only the test that kills an agent waits for silence, with a short limit.
    os.environ["POPCORN_DEVICELAB_OFFLINE_S"] = "60"
    reset_settings()
    with session_scope() as session:
        _, operator = create_token(session=session, name="agents", role="operator")
        _, admin = create_token(session=session, name="pipeline-admin", role="admin")
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**os.environ, **installation}
    fleet = Fleet(
        f"http://127.0.0.1:{port}", operator, admin, env, tmp_path_factory.mktemp("agents")
    )
    breaks = {"breaks_with": ["playback"], "break_p": 1.0}
    tests = [
        {"name": "playback.start", "components": ["playback"], "suite": "smoke",
         "expected_duration_s": 60, "behaviour": breaks},
        {"name": "playback.dv", "components": ["playback", "hdr"], "suite": "smoke",
         "expected_duration_s": 90, "requires": {"hdr": "dolby_vision"}},
        {"name": "ui.browse", "components": ["ui"], "suite": "smoke", "expected_duration_s": 30},
        {"name": "login.soak", "components": ["login"], "suite": "soak",
         "expected_duration_s": 3000, "requires": {"platform": "console"}},
    ]  # fmt: skip
    assert fleet.http.post(API + "/tests", json={"tests": tests}).status_code == 200
    fleet.start("tv-1", "tv-a", "tv", "--hdr", "dolby_vision")
    fleet.start("tv-2", "tv-a", "tv")
    fleet.start("console-1", "console-a", "console")
    try:
        wait_until(
            lambda: (
                len([d for d in fleet.get("/devices")["items"] if d["agent_state"] == "online"])
                == 3
            ),
            timeout=60,
        )
        yield fleet
    finally:
        fleet.stop()
        server.shutdown()
        os.environ.pop("POPCORN_DEVICELAB_OFFLINE_S", None)
        reset_settings()
        _clean()


def test_a_signed_pipeline_hook_runs_a_suite_on_the_fleet_and_calls_back(fleet: Fleet) -> None:
    received: list[tuple[dict[str, Any], str]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), self.headers.get("X-Popcorn-Signature", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        admin = {"Authorization": f"Bearer {fleet.admin}"}
        hook = fleet.http.post(API + "/hooks", json={"name": "spinnaker"}, headers=admin)
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        payload = {
            "app_version": "8.0.0", "change": "CL-42", "branch": "feature",
            "components": ["playback"],
            "suite": "smoke", "callback_url": f"http://127.0.0.1:{receiver.server_port}/gate",
        }  # fmt: skip
        body = canonical(payload)
        started = fleet.http.post(
            API + "/hooks/spinnaker/trigger", content=body,
            headers={"X-Popcorn-Signature": sign(secret, body), "Content-Type": "application/json"},
        )  # fmt: skip
        assert started.status_code == 202, started.text
        run = fleet.wait_run(started.json()["run"])
        assert run["status"] == "failed"
        # playback.start is planted to break when playback changes, on both families
        assert sorted(run["summary"]["new_failures"]) == [
            "playback.start@console-a",
            "playback.start@tv-a",
        ]
        assert run["summary"]["culprit"] == "CL-42"
        executions = fleet.get(f"/runs/{run['id']}/executions")["items"]
        dv = [e["device_name"] for e in executions if e["test_name"] == "playback.dv"]
        assert dv == ["tv-1"]
        junit = fleet.http.get(f"{API}/runs/{run['id']}/junit").text
        assert 'failures="2"' in junit
        from popcorn.devicelab import hooks

        sent = hooks.send_callback(run["id"])
        assert sent["stage_status"] == "TERMINAL"
        status, signature = received[0]
        assert status["stage_status"] == "TERMINAL" and status["passed"] is False
        assert signature == sign(secret, canonical(status))
    finally:
        receiver.shutdown()


@pytest.fixture
def quick_offline(fleet: Fleet) -> Iterator[None]:
    """Silence of 1.5 s makes a device offline (the platform is served in this process)."""
    from popcorn.config import reset_settings

    os.environ["POPCORN_DEVICELAB_OFFLINE_S"] = "1.5"
    reset_settings()
    yield
    os.environ["POPCORN_DEVICELAB_OFFLINE_S"] = "60"
    reset_settings()


@pytest.mark.usefixtures("quick_offline")
def test_an_agent_killed_mid_test_has_its_test_rescheduled(fleet: Fleet) -> None:
    started = fleet.http.post(
        API + "/runs",
        json={"build": {"app_version": "8.0.1", "components": ["login"]}, "suite": "soak"},
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    wait_until(lambda: fleet.get(f"/runs/{run_id}/executions?status=running")["items"], timeout=30)
    fleet.kill("console-1")
    fleet.start("console-2", "console-a", "console")
    run = fleet.wait_run(run_id)
    assert run["status"] == "passed"
    executions = fleet.get(f"/runs/{run_id}/executions")["items"]
    assert [(e["device_name"], e["status"], e["reason"]) for e in executions] == [
        ("console-1", "lost", "first"),
        ("console-2", "passed", "rescheduled"),
    ]
    assert fleet.get("/devices/console-1")["agent_state"] == "offline"


def test_the_demo_part_plays_on_the_fleet(fleet: Fleet, app: Any) -> None:
    from popcorn.db import session_scope
    from popcorn.demo import devicelab as devicelab_demo
    from popcorn.ml import schemas as ml_schemas
    from popcorn.ml import service as ml_service

    def train_model() -> dict[str, Any]:
        """What the demo's ml workers do: run the test-failure flow on the lab's history."""
        with session_scope() as session:
            spec = ml_schemas.RunCreate(flow="test-failure", parameters={"source": "lab"})
            run_id = ml_service.start_run(session=session, spec=spec, queue_job=False).id
        ml_service.execute_run(run_id)
        return {"run_id": run_id}

    try:
        lab = devicelab_demo.play(
            url=fleet.url,
            admin_token=fleet.admin,
            agent_token=fleet.token,
            timeout=60,
            fast=True,
            train_model=train_model,
        )
    except TimeoutError:
        runs = fleet.get("/runs?status=running")["items"]
        for run in runs:
            stuck = fleet.get(f"/runs/{run['id']}/executions?status__n=passed&status__n=failed")
            print("STUCK", run["id"], run["selection"].get("fraction"), stuck["items"][:5])
        print(
            "DEVICES",
            [(d["name"], d["family"], d["agent_state"]) for d in fleet.get("/devices")["items"]],
        )
        raise
    try:
        summary = lab.summary
        assert summary["stage_status"] in ("SUCCEEDED", "TERMINAL")
        assert summary["history_builds"] == 12 and summary["agents"] == 8
        assert Path(summary["junit"]).read_text().startswith("<?xml")
        # the change touches drm and playback: planted breaks make new failures, blamed on it
        assert summary["failed"] > 0 and summary["culprit"] == "CL-2001"
        assert 0 < summary["selected_fraction"] < 1
        assert summary["model"] == "test-failure v1"  # ML's promoted model chose the tests
        console = Console(app.test_client(), fleet.admin)
        run_page = console.page(f"/ui/devicelab/runs/{summary['selected_run_id']}")
        assert "by test-failure v1" in run_page
        predictions = console.page("/ui/devicelab/predictions")
        assert "test-failure v1" in predictions and f"/ui/ml/runs/{summary['model_run_id']}" in (
            predictions
        )
    finally:
        lab.stop()
