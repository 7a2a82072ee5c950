"""Starting, registering and stopping the Bolt agent process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from popcorn import __version__
from popcorn.remediation.agent.heartbeat import HEARTBEAT_PATH

from .conftest import Pki, free_port


def test_heartbeats_reach_popcorn_and_survive_its_failures(
    agent_factory: Any, popcorn_stub: Any
) -> None:
    popcorn_stub.fail_first = 1
    agent = agent_factory(
        popcorn_url=popcorn_stub.url,
        token="s3cret-token",
        device="oca-lax-017",
        heartbeat_interval=0.5,
    )
    requests = popcorn_stub.wait_for(3)
    assert {r["path"] for r in requests} == {HEARTBEAT_PATH}
    assert {r["headers"]["Authorization"] for r in requests} == {"Bearer s3cret-token"}
    beat = requests[-1]["json"]
    assert beat["name"] == "cache-01"
    assert beat["device"] == "oca-lax-017"
    assert beat["url"] == agent.url
    assert beat["version"] == __version__
    assert {"disk_health", "restart_service", "tail_log"} <= set(beat["actions"])
    assert agent.proc.poll() is None
    assert agent.client().health()["status"] == "ok"


def test_an_unreachable_popcorn_is_logged_not_fatal(agent_factory: Any) -> None:
    agent = agent_factory(popcorn_url=f"http://127.0.0.1:{free_port()}", heartbeat_interval=0.5)
    deadline = time.monotonic() + 20
    while "heartbeat to" not in agent.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "heartbeat to" in agent.log()
    client = agent.client()
    assert client.run("disk_usage", {"mounts": ["/"]}).ok
    probed = client.run("disk_health")  # no data file: the host's own /sys/block (and smartctl)
    assert probed.ok, probed.error
    assert probed.result["source"] in ("sysfs", "sysfs+smartctl")
    assert all(
        d["status"] in ("ok", "degraded", "failing", "unknown") for d in probed.result["disks"]
    )


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_sigterm_stops_the_agent_and_kills_running_actions(
    tmp_path: Path, agent_factory: Any
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "hang.sh"
    script.write_text('#!/bin/sh\nsleep 120 &\necho $! > "$POPCORN_ARG_PIDFILE"\nwait\n')
    script.chmod(0o755)
    manifest = {
        "script": "hang.sh",
        "timeout": 120,
        "args_via": "env",
        "args": {"pidfile": {"type": "string", "required": True}},
    }
    (scripts / "hang.yaml").write_text(yaml.safe_dump(manifest))
    agent = agent_factory(scripts_dir=str(scripts))
    pidfile = tmp_path / "child.pid"
    outcome: list[Any] = []
    caller = threading.Thread(
        target=lambda: outcome.append(agent.client().run("hang", {"pidfile": str(pidfile)}))
    )
    caller.start()
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, agent.log()
        time.sleep(0.05)
    child = int(pidfile.read_text())
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=20) == 0
    caller.join(timeout=20)
    [run] = outcome
    assert run.status == "cancelled"
    assert "shutting down" in run.error
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    assert "stopped" in agent.log()


def _run_main(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "popcorn.remediation.agent", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"port": "eighty"}, "port"),
        ({"allowed_log_files": ["/var/log/../etc/shadow"]}, "allowed_log_files"),
        ({"restart_command": "systemctl restart {name}"}, "restart_command"),
        ({"listen": "0.0.0.0"}, "listen"),
        ({"scripts_dir": "missing-dir"}, "scripts_dir"),
        ({"ca_file": "nowhere.pem"}, "ca_file"),
        ({"port": "taken"}, "cannot listen"),
    ],
)
def test_a_bad_config_stops_the_agent_with_the_field_named(
    tmp_path: Path, pki: Pki, settings: dict[str, Any], expected: str
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    if settings.get("port") == "taken":
        settings = {"port": taken.getsockname()[1]}
    config = {
        "port": free_port(),
        "cert_file": str(pki.server.cert),
        "key_file": str(pki.server.key),
        "ca_file": str(pki.ca),
        "audit_log": str(tmp_path / "audit.jsonl"),
        **settings,
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with taken:
        done = _run_main(path)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
