"""`popcorn demo`: the whole product, end to end, as a new user runs it, leaving nothing behind.

The demo runs as a real subprocess in its own POPCORN_HOME with the embedded defaults
(its own SQLite and Redis), never the test installation's servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from popcorn_testing import free_port

pytestmark = [pytest.mark.embedded_only, pytest.mark.slow]


def demo_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCORN_")}
    env["POPCORN_HOME"] = str(home)
    return env


def run_demo(home: Path, *args: str, timeout: float = 540) -> tuple[int, str, str, set[int]]:
    """Run `python -m popcorn demo ARGS`; returns its exit code, stdout, stderr and the pids
    of every process it had under it while it ran."""
    out, err = home.parent / f"{home.name}.out", home.parent / f"{home.name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "popcorn", "demo", *args],
            stdout=stdout,
            stderr=stderr,
            env=demo_env(home),
            cwd=home.parent,
        )
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the demo did not finish in {timeout}s: {err.read_text()[-2000:]}")
            with contextlib.suppress(psutil.NoSuchProcess):
                seen |= {child.pid for child in parent.children(recursive=True)}
            time.sleep(0.2)
    return proc.returncode, out.read_text(), err.read_text(), seen


def still_running(pids: set[int]) -> list[str]:
    alive = []
    for pid in pids:
        try:
            found = psutil.Process(pid)
            if found.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(found.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return alive


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(600)  # the whole demo, every domain's part, on a shared machine
def test_the_incident_plays_end_to_end_and_nothing_is_left_running(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    code, out, err, seen = run_demo(home, "--fast", "--port", str(port), "--json")
    assert code == 0, err[-3000:]
    summary: dict[str, Any] = json.loads(out)
    assert summary["ok"] and summary["fast"] and not summary["serving"]
    assert summary["world"]["regions"] == 3 and summary["world"]["sites"] == 4

    analysis = summary["analysis"]
    assert analysis["culprits_ranked_first"]
    assert analysis["top"][0] in analysis["culprits"]  # the disk error counter comes first
    assert all(rank <= analysis["planted"] for rank in analysis["culprit_ranks"].values())
    assert analysis["signal_count"] >= 300

    incident = summary["incident"]
    assert summary["disk_failure"]["status"] == "succeeded"
    assert summary["disk_failure"]["failing"] == [incident["disk"]]
    assert summary["inventory"] == {
        "device": incident["device"],
        "device_status": "maintenance",
        "component": incident["disk"],
        "component_status": "failed",
    }
    shift = summary["shift_plan"]
    assert shift["feasible"] and shift["site"] == incident["site"]
    # the failed appliance's site serves real load, and the shift moves all of it elsewhere
    assert shift["site_load_before"] > 0 and shift["site_load_after"] == 0
    receivers = {k: v for k, v in shift["moved"].items() if k != incident["site"]}
    assert receivers and all(after > before for before, after in receivers.values())

    approval = summary["approval"]  # a person answered an approval in the story
    assert approval["status"] == "approved" and approval["answered_by"]
    assert approval["ticket"].startswith("CHG-") and approval["execution_status"] == "succeeded"

    drill = summary["evacuation"]
    region = drill["region"]
    assert drill["feasible"] and drill["overloaded_steps"] == []
    assert drill["max_utilisation"] <= 1.0
    assert drill["status"] == "succeeded" and drill["return_status"] == "succeeded"
    aws = drill["aws"]
    assert aws["during"]["weights"][region] == 0 and aws["after"]["weights"][region] > 0
    assert aws["after"]["instances"] == aws["before"]["instances"]
    assert drill["traffic_returned"]

    triage = summary["triage"]
    assert triage["role"] == "storage-appliance" and len(triage["devices"]) >= 4
    assert triage["site"] != incident["site"]
    assert triage["hosts"] == {"ok": len(triage["devices"])}
    assert sorted(triage["planted"].values()) == ["authorized_keys", "suid_files"]
    ranked = [r["device"] for r in triage["ranked"]]
    assert sorted(ranked) == sorted(triage["planted"])  # the planted hosts first, no one else
    for device, table in triage["planted"].items():
        assert table in triage["evidence"][device]
    assert triage["planted_ranked_first"]

    ml = summary["ml"]  # a real Metaflow run on the workers, promoted for beating popularity
    assert ml["version"] == 1 and ml["evaluation"]["model"] > ml["evaluation"]["baseline"]
    assert len(ml["member_7"]) == 5
    assert summary["links"]["ml_run"].endswith(f":{port}/ui/ml/runs/{ml['run_id']}")

    lab = summary["devicelab"]
    assert lab["stage_status"] in ("SUCCEEDED", "TERMINAL") and lab["culprit"] == "CL-2001"
    assert lab["failed"] > 0 and 0 < lab["selected_fraction"] < 1
    assert lab["model"].startswith("test-failure v")  # selection used ML's promoted model
    assert summary["links"]["failure_model_run"].endswith(f"/ui/ml/runs/{lab['model_run_id']}")
    assert summary["links"]["devicelab_run"].endswith(f"/ui/devicelab/runs/{lab['run_id']}")
    assert sum(1 for p in summary["processes"] if p.startswith("devicelab-")) == lab["agents"]
    execution = summary["disk_failure"]["execution_id"]
    assert summary["links"]["execution"].endswith(f"/ui/runbooks/executions/{execution}")
    collection = triage["collection_id"]
    assert summary["links"]["triage"].endswith(f":{port}/ui/triage/collections/{collection}")
    security = summary["security"]
    assert security["fixed_issues"] == 1 and security["open_issues"] >= 5 and security["removed"]
    assert summary["links"]["security"].endswith(f":{port}/ui/security/accounts/demo-aws")
    assert summary["admin_token"].startswith("pop_")
    started = set(summary["processes"].values())
    assert {"api", "worker-1", "scheduler", "bolt-agent", "redis"} <= set(summary["processes"])
    assert {f"bolt-{d}" for d in triage["devices"]} <= set(summary["processes"])
    assert still_running(seen | started) == []
    assert port_free(port)
    assert "The incident" in err and "Regional evacuation drill" in err and "Host triage" in err
    assert "Device lab" in err
    # the ML run, the notebook jobs and the lab played beside the incident; they are told
    # after it, in order, and the narrative's timings do not count their time twice
    told = [err.index(t) for t in ("Host triage", "Train recommendations", "Notebook jobs")]
    assert told == sorted(told) and told[-1] < err.index("Device lab: a pipeline hook")
    assert set(summary["beside_the_story"]) == {"ml", "notebooks", "devicelab"}
    timings = summary["timings"]
    assert sum(v for k, v in timings.items() if k != "total") <= timings["total"]

    # A rerun finds the demo world, rebuilds it, and a step that fails stops the demo with
    # one line naming it (the first step that waits: the platform, unless it was up already),
    # again leaving nothing running, the runs it queued included.
    code, out, err, seen = run_demo(home, "--fast", "--port", str(port), "--timeout", "0.001")
    assert code == 1
    assert "the previous demo world was wiped" in out
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"Error: demo stopped at \w+: .+", last), last
    assert still_running(seen) == []
    assert port_free(port)


def test_an_installation_with_other_data_is_not_wiped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {code: ams1, name: Amsterdam 1}\n")
    env = demo_env(home)
    for argv in (["db", "upgrade"], ["inventory", "import", str(sites)]):
        done = subprocess.run(
            [sys.executable, "-m", "popcorn", *argv], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    code, _out, err, seen = run_demo(home, "--fast", "--port", str(free_port()), timeout=60)
    assert code == 1
    assert "not a demo world" in err and "--force" in err
    assert still_running(seen) == []
    listed = subprocess.run(
        [sys.executable, "-m", "popcorn", "inventory", "sites", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    shown = json.loads(listed.stdout)
    assert [s["code"] for s in shown.get("items", shown)] == ["ams1"]
