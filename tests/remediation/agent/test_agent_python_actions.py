"""Python actions registered with the decorator, served by an agent embedded in this process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from popcorn.remediation.agent import (
    ActionArgs,
    ActionContext,
    ActionFailed,
    ActionRegistry,
    AgentClient,
    AgentConfig,
    AgentError,
    BoltAgent,
)

from .conftest import Pki

release = threading.Event()
registry = ActionRegistry()


class DrainArgs(ActionArgs):
    pop: str = Field(pattern=r"^[a-z]{3}[0-9]{2}$")
    percent: int = Field(default=100, ge=0, le=100)


@registry.action("drain_pop", args=DrainArgs)
def drain_pop(ctx: ActionContext, args: DrainArgs) -> dict[str, Any]:
    """Take a PoP out of rotation."""
    ctx.output("stdout", f"draining {args.pop}\n")
    ctx.output("stdout", f"{args.percent}% of traffic moved\n")
    return {"pop": args.pop, "drained": args.percent, "caller": ctx.caller}


@registry.action("refuse")
def refuse(ctx: ActionContext, args: Any) -> None:
    """Always fails, as a remediation refusing unsafe conditions does."""
    raise ActionFailed("refusing: too many hosts down", result={"down": 7})


@registry.action("explode")
def explode(ctx: ActionContext, args: Any) -> None:
    raise RuntimeError("bug in the action")


@registry.action("hang", timeout=0.3)
def hang(ctx: ActionContext, args: Any) -> None:
    release.wait(30)


@registry.action("argv")
def argv(ctx: ActionContext, args: Any) -> dict[str, Any]:
    done = ctx.run_process(["echo", "from", "a", "process"], capture=True)
    return {"exit_code": done.exit_code, "stdout": done.stdout}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[AgentClient]:
    base = tmp_path_factory.mktemp("embedded")
    config = AgentConfig(
        port=0,
        cert_file=pki.server.cert,
        key_file=pki.server.key,
        ca_file=pki.ca,
        audit_log=base / "audit.jsonl",
        kill_grace=0.2,
    )
    agent = BoltAgent(config, registry=registry)
    agent.start()
    client = AgentClient(f"https://127.0.0.1:{agent.port}", pki.client.cert, pki.client.key, pki.ca)
    yield client
    client.close()
    release.set()
    agent.stop()


def test_a_python_action_validates_and_returns_its_result(embedded: AgentClient) -> None:
    run = embedded.run("drain_pop", {"pop": "lax01", "percent": 40})
    assert run.ok
    assert run.result == {"pop": "lax01", "drained": 40, "caller": "CN=popcorn-runbook,O=Popcorn"}
    assert run.stdout == "draining lax01\n40% of traffic moved\n"
    with pytest.raises(AgentError) as caught:
        embedded.run("drain_pop", {"pop": "LAX 01; reboot"})
    assert caught.value.details["errors"][0]["field"] == "pop"


def test_python_output_is_streamed_as_events(embedded: AgentClient) -> None:
    events = list(embedded.stream("drain_pop", {"pop": "ams02"}))
    assert [e["event"] for e in events] == ["started", "stdout", "stdout", "finished"]
    assert events[-1]["result"]["drained"] == 100


def test_failures_and_bugs_are_outcomes_not_crashes(embedded: AgentClient) -> None:
    refused = embedded.run("refuse")
    assert (refused.status, refused.error, refused.result) == (
        "failed",
        "refusing: too many hosts down",
        {"down": 7},
    )
    bug = embedded.run("explode")
    assert bug.status == "error"
    assert "bug in the action" in (bug.error or "")
    assert embedded.health()["status"] == "ok"


def test_a_hung_python_action_is_reported_as_timed_out(embedded: AgentClient) -> None:
    run = embedded.run("hang")
    assert run.status == "timeout"
    assert "did not finish" in (run.error or "")


def test_actions_start_processes_without_a_shell(embedded: AgentClient) -> None:
    run = embedded.run("argv")
    assert run.result == {"exit_code": 0, "stdout": "from a process\n"}


def test_the_registry_demands_models_that_refuse_unknown_fields() -> None:
    class Loose(BaseModel):
        name: str

    with pytest.raises(ValueError, match="extra='forbid'"):
        ActionRegistry().action("loose", args=Loose)(lambda ctx, args: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.action("drain_pop", args=DrainArgs)(drain_pop)
    with pytest.raises(ValueError, match="must match"):
        ActionRegistry().action("Bad Name")(lambda ctx, args: None)


def test_the_client_reports_unusable_certificates(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(AgentError) as caught:
        AgentClient("https://127.0.0.1:1", tmp_path / "none.crt", pki.client.key, pki.ca)
    assert caught.value.code == "client_config"
