"""The device lab's part of the demo: a catalog with planted failure causes, a history of
past builds (so the failure model has something to learn from), a fleet of real device
agent processes, a signed pipeline hook that starts a build's suite, its JUnit report,
flaky tests and the likely culprit; then ML's `test-failure` flow trains the failure model
on that history and a second build runs with test selection by the promoted model.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from popcorn.demo.story import poll

FAMILIES = [("tv", "tv-vendorA-2022"), ("tv", "tv-vendorB-2019"), ("console", "console-gen9"),
            ("stb", "stb-operatorX")]  # fmt: skip
TIME_SCALE = 0.001  # a 10-minute test plays in 0.6 s
# How often an idle agent asks for work: a busy one asks again the moment a test ends, so
# this only delays a run's first tests; each ask is a request the API serves.
HEARTBEAT_SECONDS = "1.0"


@dataclass
class DeviceLab:
    home: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        return {f"devicelab-{name}": p.pid for name, p in self.procs.items()}

    def signal_stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()

    def stop(self) -> None:
        self.signal_stop()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


def seed(*, fast: bool) -> dict[str, Any]:
    """The catalog (planted causes from the generated world) and past builds' results."""
    from popcorn.context import acting_as
    from popcorn.db import session_scope
    from popcorn.demo import build
    from popcorn.devicelab import analysis, junit, prediction, scheduling, service
    from popcorn.devicelab import schemas as s

    world = prediction.make_world(tests=24 if fast else 40, families=len(FAMILIES), seed=17)
    names = {f"family-{i:02d}": family for i, (_, family) in enumerate(FAMILIES)}
    world.prone = {names[k]: v for k, v in world.prone.items()}
    world.families = [names[f] for f in world.families]
    specs = []
    for i, test in enumerate(world.tests):
        requires: dict[str, Any] = {}
        if "hdr" in test["components"]:
            requires = {"platform": "tv", "hdr": "dolby_vision"}
        specs.append(
            s.TestCreate(
                name=test["name"],
                suite="partner-certification",
                components=test["components"],
                tags=["flaky"] if test["flaky_rate"] else [],
                requires=requires,
                expected_duration_s=test["duration"],
                owners=[f"{test['components'][0]}-team"],
                behaviour=prediction.behaviour_for(test, world) | {"hang_rate": 0.0},
            )
        )
        test["index"] = i
    history = prediction.generate_history(world, builds=12 if fast else 30, seed=17)
    by_build: dict[int, list[dict[str, Any]]] = {}
    for record in history:
        by_build.setdefault(record["build"], []).append(record)
    with acting_as(build.ACTOR), session_scope() as session:
        service.upsert_tests(session=session, specs=specs)
        for number, records in sorted(by_build.items()):
            made = scheduling.create_build(
                session=session,
                spec=s.BuildCreate(
                    app_version=f"6.{number}.0",
                    change=f"CL-{1000 + number}",
                    branch="main",
                    components=records[0]["components"],
                ),
            )
            for family in world.families:
                cases = [
                    {"name": r["test"], "classname": family, "time_s": 1.0,
                     "status": "failed" if r["failed"] else "passed", "flaky": r["flaky"],
                     "message": "assertion failed" if r["failed"] else ""}
                    for r in records if r["family"] == family
                ]  # fmt: skip
                xml = junit.render("history", cases, properties={})
                analysis.import_junit(
                    session=session, build_id=made.id, data=xml.encode(), family=family
                )
    return {"tests": len(specs), "history_builds": len(by_build), "families": len(FAMILIES)}


def start(lab: DeviceLab, *, url: str, token: str, agents: int) -> None:
    logs = lab.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(agents):
        platform_name, family = FAMILIES[i % len(FAMILIES)]
        name = f"lab-{family}-{i // len(FAMILIES) + 1:02d}"
        extra = ["--hdr", "dolby_vision", "--hdr", "hdr10"] if platform_name == "tv" else []
        log = open(logs / f"devicelab-{name}.log", "ab")  # noqa: SIM115 - the agent's own file
        lab.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "popcorn.devicelab.agent", "--url", url, "--token", token,
             "--name", name, "--platform", platform_name, "--family", family,
             "--pool", f"rack-{i % 2 + 1}", "--heartbeat", HEARTBEAT_SECONDS,
             "--time-scale", str(TIME_SCALE), "--seed", str(i), *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()


def launch(*, url: str, agent_token: str, fast: bool) -> DeviceLab:
    """Start the fleet's agent processes without waiting for them: they start and register
    while earlier parts of the story play."""
    from popcorn.config import get_settings

    lab = DeviceLab(home=get_settings().home)
    start(lab, url=url, token=agent_token, agents=8 if fast else 12)
    return lab


def play(
    *,
    url: str,
    admin_token: str,
    agent_token: str,
    timeout: float,
    fast: bool,
    train_model: Callable[[], dict[str, Any]],
    lab: DeviceLab | None = None,
    seeded: dict[str, Any] | None = None,
) -> DeviceLab:
    """Run the device lab's story on `lab` (launched here when not given); the fleet keeps
    running until `stop()`. `seeded` is `seed`'s answer when the catalog and history were
    seeded before (else they are seeded here). `train_model` trains and promotes ML's
    `test-failure` model on the lab's history (with the ml domain's workers) before the
    build that uses test selection; it may have started before, beside the first build."""
    import httpx

    from popcorn.devicelab.protocol import canonical, sign

    if lab is None:
        lab = launch(url=url, agent_token=agent_token, fast=fast)
    lab.summary.update(seeded if seeded is not None else seed(fast=fast))
    api = httpx.Client(
        base_url=f"{url}/api/v1/devicelab",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=120,
    )
    try:

        def online() -> bool | None:
            for name, proc in lab.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"device agent {name} exited; see its log")
            devices = api.get("/devices", params={"agent_state": "online"}).json()["items"]
            return True if len(devices) >= len(lab.procs) else None

        poll("the device agents' registrations", online, timeout, every=0.3)
        made = api.post("/hooks", json={"name": "spinnaker-partner-cert",
                                        "suite": "partner-certification"})  # fmt: skip
        made.raise_for_status()
        hook = made.json()
        payload = {"app_version": "7.0.0", "change": "CL-2001", "branch": "feature/drm-refresh",
                   "components": ["drm", "playback"]}  # fmt: skip
        body = canonical(payload)
        started = api.post(
            "/hooks/spinnaker-partner-cert/trigger",
            content=body,
            headers={"X-Popcorn-Signature": sign(hook["secret"], body),
                     "Content-Type": "application/json"},
        )  # fmt: skip
        started.raise_for_status()
        run_id = started.json()["run"]
        begun = time.monotonic()

        def finished() -> dict[str, Any] | None:
            found: dict[str, Any] = api.get(f"/runs/{run_id}/status").json()
            return found if found["stage_status"] != "RUNNING" else None

        status = poll("the pipeline's run", finished, timeout, every=0.2)
        elapsed = time.monotonic() - begun
        report = api.get(f"/runs/{run_id}/junit").text
        path = lab.home / "devicelab" / f"run-{run_id}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report)
        summary = status["summary"]
        model = train_model()
        selected = api.post(
            "/runs",
            json={"build": {"app_version": "7.0.1", "change": "CL-2002", "branch": "feature/ui",
                            "components": ["ui"]},
                  "suite": "partner-certification", "select": "predicted"},
        )  # fmt: skip
        selected.raise_for_status()
        second = selected.json()
        poll(
            "the selected run",
            lambda: api.get(f"/runs/{second['id']}").json()["status"] not in ("running",) or None,
            timeout,
            every=0.2,
        )
        lab.summary.update(
            {
                "agents": len(lab.procs),
                "run_id": run_id,
                "stage_status": status["stage_status"],
                "executions": summary.get("executions"),
                "failed": summary.get("failed"),
                "flaky": summary.get("flaky"),
                "culprit": summary.get("culprit"),
                "new_failures": len(summary.get("new_failures", [])),
                "run_seconds": round(elapsed, 1),
                "junit": str(path),
                "selected_run_id": second["id"],
                "selected_fraction": second["selection"].get("fraction"),
                "selected_of": second["selection"].get("planned"),
                "model": second["selection"].get("model"),
                "model_run_id": model.get("run_id"),
            }
        )
    except BaseException:
        lab.stop()  # a failed step leaves no agent running
        raise
    finally:
        api.close()
    return lab
