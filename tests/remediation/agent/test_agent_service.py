"""The Bolt agent as a real process: mTLS, registered actions only, limits, streaming, audit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from popcorn.remediation.agent.client import AgentClient
from popcorn.remediation.agent.errors import AgentError

from .conftest import Pki, RunningAgent, start_agent

PY = sys.executable

SCRIPTS: dict[str, tuple[str, dict[str, Any]]] = {
    "echo_args": (
        f"#!{PY}\nimport json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('POPCORN_')}\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': env}))\n",
        {
            "description": "Print the arguments it was given",
            "script": "echo_args",
            "args": {
                "value": {"type": "string", "required": True},
                "count": {"type": "integer", "default": 1, "minimum": 1, "maximum": 5},
                "mode": {"type": "string", "enum": ["fast", "safe"]},
                "ticket": {"type": "string", "pattern": "INC-[0-9]+"},
            },
        },
    ),
    "env_args": (
        f"#!{PY}\nimport json, os, sys\n"
        "target = os.environ.get('POPCORN_ARG_TARGET')\n"
        "print(json.dumps({'argv': sys.argv[1:], 'target': target}))\n",
        {"script": "env_args", "args_via": "env", "args": {"target": {"type": "string"}}},
    ),
    "sleeper": (
        '#!/bin/sh\nsleep 60 &\necho $! > "$POPCORN_ARG_PIDFILE"\necho started\nwait\n',
        {
            "description": "Hang with a child process, to be killed at its timeout",
            "script": "sleeper.sh",
            "timeout": 1,
            "args_via": "env",
            "args": {"pidfile": {"type": "string", "required": True}},
        },
    ),
    "chatty": (
        f"#!{PY}\nimport sys\nsys.stdout.write('x' * int(sys.argv[1]))\n",
        {"script": "chatty", "argv": ["{size}"], "args": {"size": {"type": "integer"}}},
    ),
    "handshake": (
        f"#!{PY}\nimport os, sys, time\n"
        "print('waiting for the caller', flush=True)\n"
        "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\n"
        "print('caller answered', flush=True)\n",
        {
            "script": "handshake",
            "timeout": 20,
            "argv": ["{flag}"],
            "args": {"flag": {"type": "string", "required": True}},
        },
    ),
    "fails": (
        "#!/bin/sh\necho 'cache volume is read-only' >&2\nexit 3\n",
        {"script": "fails.sh"},
    ),
}


def _write_scripts(directory: Path) -> None:
    directory.mkdir()
    for name, (body, manifest) in SCRIPTS.items():
        script = directory / manifest["script"]
        script.write_text(body)
        script.chmod(0o755)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (directory / "broken.yaml").write_text("script: fails.sh\nshell: true\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Any:
    base = tmp_path_factory.mktemp("bolt")
    _write_scripts(base / "scripts")
    logs = base / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"request {i} served\n" for i in range(500)))
    (logs / "secret.txt").write_text("do not read\n")
    (base / "cache.pid").write_text(str(os.getpid()))
    disks = base / "disks.yaml"
    disks.write_text(
        yaml.safe_dump(
            {
                "disks": [
                    {"name": "sda", "model": "HGST HUH721010", "smart": {"passed": True}},
                    {
                        "name": "sdb",
                        "model": "HGST HUH721010",
                        "serial": "7JH2AB",
                        "smart": {"passed": False, "reallocated_sectors": 3120},
                    },
                ]
            }
        )
    )
    agent = start_agent(
        base / "agent",
        pki,
        scripts_dir=str(base / "scripts"),
        allowed_client_subjects=["popcorn-runbook"],
        allowed_log_files=[str(logs / "*.log")],
        allowed_services=["web-cache"],
        restart_command=[PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", "{name}"],
        service_pidfiles={"cache": str(base / "cache.pid")},
        disk_health_file=str(disks),
        output_cap_bytes=4096,
    )
    yield {"agent": agent, "base": base, "logs": logs, "disks": disks}
    agent.stop()


@pytest.fixture
def agent(world: dict[str, Any]) -> RunningAgent:
    return world["agent"]


@pytest.fixture
def client(agent: RunningAgent) -> AgentClient:
    return agent.client()


def _http(pki: Pki) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    return httpx.Client(verify=context, timeout=20)


# --- built-in diagnostics ---------------------------------------------------------------------


def test_disk_usage_reports_the_root_filesystem(client: AgentClient) -> None:
    run = client.run("disk_usage")
    assert run.ok, run.error
    root = next(fs for fs in run.result["filesystems"] if fs["mountpoint"] == "/")
    assert root["total_bytes"] > 0
    assert 0 <= root["used_percent"] <= 100
    asked = client.run("disk_usage", {"mounts": ["/", "/no/such/mount"]}).result
    assert [fs["mountpoint"] for fs in asked["filesystems"]] == ["/"]
    assert asked["not_mounted"] == ["/no/such/mount"]


def test_listening_ports_include_the_agent_itself(agent: RunningAgent, client: AgentClient) -> None:
    port = int(agent.url.rsplit(":", 1)[1])
    run = client.run("listening_ports", {"port": port})
    assert run.ok, run.error
    [sock] = run.result["listening"]
    assert sock["address"] == "127.0.0.1"
    assert sock["protocol"] == "tcp"
    assert sock["pid"] == agent.proc.pid


def test_top_processes_lists_the_busiest(client: AgentClient) -> None:
    run = client.run("top_processes", {"limit": 3, "sort_by": "memory", "interval": 0})
    assert run.ok, run.error
    procs = run.result["processes"]
    assert len(procs) == 3
    assert procs[0]["rss_bytes"] >= procs[1]["rss_bytes"] >= procs[2]["rss_bytes"]
    assert all(p["pid"] > 0 and p["command"] for p in procs)


def test_tail_returns_the_last_lines_of_an_allowed_log(
    world: dict[str, Any], client: AgentClient
) -> None:
    run = client.run("tail_log", {"path": str(world["logs"] / "app.log"), "lines": 3})
    assert run.ok, run.error
    assert run.result["lines"] == ["request 497 served", "request 498 served", "request 499 served"]


@pytest.mark.parametrize(
    "path",
    [
        "{logs}/../logs/app.log",
        "{logs}/secret.txt",
        "/etc/passwd",
        "relative/app.log",
        "{logs}/sub/../../../../etc/shadow",
    ],
)
def test_tail_refuses_paths_outside_the_allow_list(
    world: dict[str, Any], client: AgentClient, path: str
) -> None:
    with pytest.raises(AgentError) as caught:
        client.run("tail_log", {"path": path.format(logs=world["logs"])})
    assert caught.value.status == 422
    assert [e["field"] for e in caught.value.details["errors"]] == ["path"]


def test_tail_refuses_a_symlink_that_matches_the_allowed_pattern(
    world: dict[str, Any], client: AgentClient
) -> None:
    link = world["logs"] / "shadow.log"
    link.symlink_to(world["logs"] / "secret.txt")
    with pytest.raises(AgentError) as caught:
        client.run("tail_log", {"path": str(link)})
    assert caught.value.status == 422
    assert "symbolic link" in caught.value.details["errors"][0]["message"]


def test_service_status_without_systemd_uses_the_pid_file(client: AgentClient) -> None:
    systemd = os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None
    if systemd:
        pytest.skip("this host runs systemd; the fallback is not used")
    run = client.run("service_status", {"name": "cache"})
    assert run.ok, run.error
    assert run.result["systemd"] is False
    assert run.result["method"] == "pidfile"
    assert run.result["active"] is True
    assert "systemd is not running" in run.result["detail"]
    missing = client.run("service_status", {"name": "no-such-daemon"}).result
    assert (missing["method"], missing["active"]) == ("process", False)


def test_restart_runs_the_configured_argv_for_allowed_services_only(client: AgentClient) -> None:
    run = client.run("restart_service", {"name": "web-cache"})
    assert run.ok, run.error
    assert json.loads(run.stdout) == ["web-cache"]
    with pytest.raises(AgentError) as caught:
        client.run("restart_service", {"name": "sshd"})
    assert caught.value.status == 422
    assert caught.value.details["errors"][0]["field"] == "name"


def test_disk_health_reports_a_failing_disk_from_the_data_file(
    world: dict[str, Any], client: AgentClient
) -> None:
    run = client.run("disk_health")
    assert run.ok, run.error
    assert run.result["source"] == "file"
    assert run.result["failing"] == ["sdb"]
    assert run.result["healthy"] is False
    sdb = next(d for d in run.result["disks"] if d["name"] == "sdb")
    assert sdb["serial"] == "7JH2AB"
    assert any("self-assessment failed" in r for r in sdb["reasons"])
    only = client.run("disk_health", {"device": "sda"}).result
    assert [d["status"] for d in only["disks"]] == ["ok"]


# --- the registry and argument checking -------------------------------------------------------


def test_actions_lists_builtins_and_scripts_with_schemas(client: AgentClient) -> None:
    actions = {a["name"]: a for a in client.actions()}
    builtins = {"disk_usage", "top_processes", "service_status", "listening_ports"}
    assert builtins | {"tail_log", "restart_service", "disk_health"} <= set(actions)
    echo = actions["echo_args"]
    assert echo["kind"] == "script"
    assert echo["args_schema"]["required"] == ["value"]
    assert echo["description"] == "Print the arguments it was given"
    assert len(echo["version"]) == 16
    assert actions["sleeper"]["timeout"] == 1
    assert "broken" not in actions


def test_health_reports_the_manifest_it_skipped(client: AgentClient) -> None:
    health = client.health()
    assert health["status"] == "ok"
    assert health["caller"] == "CN=popcorn-runbook,O=Popcorn"
    [problem] = health["scripts"]["problems"]
    assert "broken.yaml" in problem and "shell" in problem


def test_unregistered_action_is_404(client: AgentClient) -> None:
    with pytest.raises(AgentError) as caught:
        client.run("rm", {"path": "/"})
    assert (caught.value.status, caught.value.code) == (404, "unknown_action")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "value"),
        ({"value": "x", "bogus": 1}, "bogus"),
        ({"value": "x", "count": "2"}, "count"),
        ({"value": "x", "count": 9}, "count"),
        ({"value": "x", "mode": "reckless"}, "mode"),
        ({"value": "x", "ticket": "INC-12; reboot"}, "ticket"),
    ],
)
def test_bad_arguments_are_422_naming_the_field(
    client: AgentClient, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(AgentError) as caught:
        client.run("echo_args", args)
    assert (caught.value.status, caught.value.code) == (422, "validation_error")
    assert [e["field"] for e in caught.value.details["errors"]] == [field]


def test_malformed_json_is_400_and_a_large_body_413(agent: RunningAgent, pki: Pki) -> None:
    with _http(pki) as http:
        bad = http.post(f"{agent.url}/v1/actions/echo_args", content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "bad_request"
        big = http.post(f"{agent.url}/v1/actions/echo_args", json={"value": "x" * 100_000})
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "body_too_large"
        array = http.post(f"{agent.url}/v1/actions/echo_args", json=["x"])
        assert array.status_code == 400


# --- scripts: no shell, timeouts, caps, streaming ---------------------------------------------


def test_arguments_reach_scripts_literally_never_through_a_shell(
    tmp_path: Path, client: AgentClient
) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    value = f"x; rm -rf {sentinel}; $(touch {tmp_path}/pwned) `id`"
    run = client.run("echo_args", {"value": value, "mode": "safe"})
    assert run.ok, run.error
    printed = json.loads(run.stdout)
    assert printed["argv"] == [f"--value={value}", "--count=1", "--mode=safe"]
    assert sentinel.exists()
    assert not (tmp_path / "pwned").exists()
    env = client.run("env_args", {"target": value})
    assert json.loads(env.stdout) == {"argv": [], "target": value}


def test_scripts_get_a_minimal_environment(client: AgentClient) -> None:
    env = json.loads(client.run("echo_args", {"value": "v"}).stdout)["env"]
    assert env["POPCORN_ACTION"] == "echo_args"
    assert env["POPCORN_CALLER"] == "CN=popcorn-runbook,O=Popcorn"
    assert "POPCORN_HOME" not in env  # the agent's own environment is not passed on


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_script_past_its_timeout_is_killed_with_its_children(
    tmp_path: Path, client: AgentClient
) -> None:
    pidfile = tmp_path / "child.pid"
    run = client.run("sleeper", {"pidfile": str(pidfile)})
    assert run.status == "timeout"
    assert run.exit_code is not None and run.exit_code < 0
    assert "started" in run.stdout
    assert _wait_gone(int(pidfile.read_text()))


def test_caller_may_shorten_but_not_extend_a_timeout(tmp_path: Path, client: AgentClient) -> None:
    flag = tmp_path / "never"
    run = client.run("handshake", {"flag": str(flag)}, timeout=0.5)
    assert run.status == "timeout"
    listed = client.run("sleeper", {"pidfile": str(tmp_path / "p")}, timeout=600)
    assert listed.status == "timeout"


def test_output_over_the_cap_is_truncated_and_flagged(client: AgentClient) -> None:
    run = client.run("chatty", {"size": 100_000})
    assert run.ok, run.error
    assert run.truncated is True
    assert len(run.stdout) == 4096
    small = client.run("chatty", {"size": 100})
    assert (small.truncated, len(small.stdout)) == (False, 100)


def test_a_bounded_run_reads_no_more_than_asked_and_names_transport_failures(
    agent: RunningAgent, pki: Pki, client: AgentClient
) -> None:
    whole = client.run_bounded("chatty", {"size": 100}, timeout=20, max_bytes=1_000_000)
    assert (whole.status_code, whole.oversized) == (200, False)
    assert json.loads(whole.body)["status"] == "ok"
    cut = client.run_bounded("chatty", {"size": 3000}, timeout=20, max_bytes=500)
    assert cut.oversized and 500 < len(cut.body) <= 500 + 65536
    refused = client.run_bounded("no_such_action", {}, timeout=20, max_bytes=10_000)
    assert refused.status_code == 404
    with pytest.raises(AgentError) as rogue:
        agent.client(pki.rogue).run_bounded("disk_usage", timeout=5, max_bytes=1000)
    # TLS 1.3 refuses a client certificate after the handshake: the host is up either way.
    assert rogue.value.code in ("refused", "transport_error")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    down = AgentClient(f"https://127.0.0.1:{port}", pki.client.cert, pki.client.key, pki.ca)
    with down, pytest.raises(AgentError) as nobody:
        down.run_bounded("disk_usage", timeout=5, max_bytes=1000)
    assert nobody.value.code == "unreachable"


def test_a_failing_script_is_reported_with_its_exit_status(client: AgentClient) -> None:
    run = client.run("fails")
    assert (run.status, run.exit_code) == ("failed", 3)
    assert run.stderr == "cache volume is read-only\n"


def test_output_streams_while_the_script_runs(tmp_path: Path, client: AgentClient) -> None:
    flag = tmp_path / "answer"
    events = []
    for event in client.stream("handshake", {"flag": str(flag)}):
        events.append(event)
        if event["event"] == "stdout" and "waiting" in event["data"]:
            flag.touch()  # the script only goes on once the caller saw its first line
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("stdout") >= 2
    assert events[-1]["status"] == "ok"
    assert "".join(e["data"] for e in events if e["event"] == "stdout") == (
        "waiting for the caller\ncaller answered\n"
    )


def test_stream_refusals_are_agent_errors(client: AgentClient) -> None:
    with pytest.raises(AgentError) as caught:
        list(client.stream("echo_args", {"nope": 1}))
    assert caught.value.status == 422


# --- who may call -----------------------------------------------------------------------------


def _raw_exchange(url: str, context: ssl.SSLContext) -> bytes:
    host, port = url.removeprefix("https://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"GET /v1/health HTTP/1.1\r\nHost: agent\r\n\r\n")
                while chunk := tls.recv(4096):
                    received += chunk
        except (ssl.SSLError, OSError):
            pass
    return received


def test_a_caller_without_a_certificate_gets_nothing(agent: RunningAgent, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    assert _raw_exchange(agent.url, context) == b""


def test_a_certificate_from_another_ca_is_refused(agent: RunningAgent, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.rogue.cert), str(pki.rogue.key))
    assert _raw_exchange(agent.url, context) == b""
    with pytest.raises(AgentError) as caught:
        agent.client(pki.rogue).run("disk_usage")
    assert caught.value.code == "transport_error"


def test_a_certificate_off_the_allow_list_is_403(agent: RunningAgent, pki: Pki) -> None:
    with pytest.raises(AgentError) as caught:
        agent.client(pki.intruder).run("disk_usage")
    assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_the_client_refuses_an_agent_it_cannot_verify(agent: RunningAgent, pki: Pki) -> None:
    with pytest.raises(AgentError):
        agent.client(ca=pki.rogue_ca).health()


# --- audit ------------------------------------------------------------------------------------


def test_the_audit_log_records_each_call(tmp_path: Path, agent: RunningAgent, pki: Pki) -> None:
    client = agent.client()
    client.run("disk_usage", {"mounts": ["/"]})
    client.run("echo_args", {"value": "audit me"})
    with pytest.raises(AgentError):
        client.run("no_such_action")
    with pytest.raises(AgentError):
        agent.client(pki.intruder).run("disk_usage")
    entries = agent.audit()
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_action.setdefault(entry["action"], []).append(entry)
    usage = by_action["disk_usage"]
    assert any(
        e["args"] == {"mounts": ["/"], "include_pseudo": False} and e["outcome"] == "ok"
        for e in usage
    )
    assert all(e["caller"].startswith("CN=") and e["duration_s"] >= 0 for e in entries)
    echo = [e for e in by_action["echo_args"] if (e["args"] or {}).get("value") == "audit me"]
    assert echo and echo[-1]["outcome"] == "ok" and echo[-1]["exit_code"] == 0
    unknown = by_action["no_such_action"][-1]
    assert (unknown["outcome"], unknown["http_status"]) == ("rejected", 404)
    refused = [e for e in usage if e["caller"] == "CN=intruder,O=Popcorn"]
    assert refused and refused[-1]["http_status"] == 403
    for entry in entries:
        assert set(entry) >= {"time", "caller", "action", "args", "outcome", "duration_s"}


def test_garbage_responses_are_agent_errors(popcorn_stub: Any, pki: Pki) -> None:
    client = AgentClient(popcorn_stub.url, pki.client.cert, pki.client.key, pki.ca)
    with client, pytest.raises(AgentError) as caught:
        client.health()
    assert caught.value.code == "bad_response"


def test_every_http_error_is_a_json_envelope(agent: RunningAgent, pki: Pki) -> None:
    with _http(pki) as http:
        for method, path, status in [
            ("GET", "/v2/everything", 404),
            ("DELETE", "/v1/actions/disk_usage", 405),
            ("POST", "/v1/health", 405),
            ("TRACE", "/v1/health", 501),
        ]:
            response = http.request(method, f"{agent.url}{path}")
            assert response.status_code == status, (method, path)
            error = response.json()["error"]
            assert set(error) == {"code", "message", "details"}
            assert error["message"]
