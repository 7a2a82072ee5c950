"""`popcorn remediation …` (runbooks, executions, approvals, circuit, agents) and `popcorn bolt …`
(the host agent)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from popcorn.cli import PopcornGroup, fail, json_option, output, parse_kv, with_actor
from popcorn.db import session_scope
from popcorn.listing import parse_list_params
from popcorn.remediation import service
from popcorn.remediation.schemas import ApprovalRead, ExecutionRead
from popcorn.remediation.service import TERMINAL_STATUSES

EXECUTION_COLUMNS = ["id", "runbook", "status", "dry_run", "current_step", "created_at", "error"]
STEP_COLUMNS = ["position", "name", "kind", "status", "attempts", "duration_ms", "error"]


@click.group("remediation", cls=PopcornGroup)
def group() -> None:
    """Runbooks (Winston): packs, executions, approvals, safety rails and Bolt agents."""


# --- packs and runbooks ----------------------------------------------------------------------


@group.command("packs")
@json_option
def packs_command(as_json: bool) -> None:
    """Discovered packs and their runbooks (and packs that failed to load)."""
    found = service.list_packs()
    if as_json:
        output(found, as_json=True)
        return
    rows = [
        {
            "pack": p["name"],
            "version": p["version"],
            "runbooks": ", ".join(r["name"] for r in p["runbooks"]),
            "source": p["source"],
        }
        for p in found["packs"]
    ]
    output(rows, as_json=False, columns=["pack", "version", "runbooks", "source"])
    for error in found["errors"]:
        click.echo(f"not loaded: {error['source']}: {error['error']}", err=True)


@group.group("runbooks", cls=PopcornGroup)
def runbooks_group() -> None:
    """Runbooks and their steps."""


@runbooks_group.command("list")
@json_option
def runbooks_list(as_json: bool) -> None:
    """List the runbooks of every loaded pack."""
    items = [rb for p in service.list_packs()["packs"] for rb in p["runbooks"]]
    rows = [
        {
            "name": rb["name"],
            "version": rb["version"],
            "target": rb["target"],
            "steps": " > ".join(f"{s['name']}({s['kind']})" for s in rb["steps"]),
        }
        for rb in items
    ]
    output(items if as_json else rows, as_json=as_json)


@runbooks_group.command("show")
@click.argument("name")
@json_option
def runbooks_show(name: str, as_json: bool) -> None:
    """Show a runbook: its inputs, steps, approvals and limits."""
    info = service.describe_runbook(name)
    if as_json:
        output(info, as_json=True)
        return
    summary = {k: v for k, v in info.items() if k not in ("steps", "inputs_schema")}
    summary["inputs"] = ", ".join(info["inputs_schema"].get("properties", {})) or "none"
    output(summary, as_json=False)
    output(
        [
            {
                "step": s["name"],
                "kind": s["kind"],
                "retries": s["retries"],
                "timeout": s["timeout"],
                "approval": ",".join(s["approval"]["roles"]) if s["approval"] else "",
            }
            for s in info["steps"]
        ],
        as_json=False,
    )


# --- executions --------------------------------------------------------------------------


def _show_execution(execution_id: int, as_json: bool) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        detail = service.execution_detail(session=session, execution_id=execution_id)
    if as_json:
        output(detail, as_json=True)
        return detail
    summary = {k: v for k, v in detail.items() if k not in ("steps", "approvals", "evidence")}
    summary["evidence"] = f"{len(detail['evidence'])} item(s)"
    output(summary, as_json=False, title=f"execution {execution_id}")
    output(detail["steps"], as_json=False, columns=STEP_COLUMNS, title="steps")
    pending = [a for a in detail["approvals"] if a["status"] == "pending"]
    for approval in pending:
        click.echo(
            f"approval {approval['id']} waits for {', '.join(approval['roles'])} "
            f"until {approval['deadline']}: {approval['message']}"
        )
    return detail


def _wait(execution_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(readonly=True) as session:
            status = service.get_execution(session=session, execution_id=execution_id).status
        if status in (*TERMINAL_STATUSES, "waiting_approval"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_id} still {status} after {timeout:g}s")
        time.sleep(0.2)


@group.command("run")
@click.argument("runbook")
@click.option("-i", "--input", "inputs", multiple=True, help="Input as key=value (JSON values).")
@click.option("--inputs-json", help="All inputs as one JSON object.")
@click.option(
    "-t", "--target", "target", multiple=True, help="device=NAME, site=CODE, role=ROLE, ..."
)
@click.option("--dry-run", is_flag=True, help="Diagnose only: remediate steps are skipped.")
@click.option("--wait", is_flag=True, help="Wait until it ends or waits for an approval.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to --wait.")
@json_option
@with_actor
def run_command(
    runbook: str,
    inputs: tuple[str, ...],
    inputs_json: str | None,
    target: tuple[str, ...],
    dry_run: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Start a runbook; a worker runs it."""
    values: dict[str, Any] = {}
    if inputs_json:
        try:
            values = json.loads(inputs_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--inputs-json") from exc
        if not isinstance(values, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--inputs-json")
    values.update(parse_kv(inputs))
    with session_scope() as session:
        execution = service.start_runbook(
            session=session,
            runbook=runbook,
            inputs=values,
            target=parse_kv(target) or None,
            dry_run=dry_run,
        )
        execution_id, status = execution.id, execution.status
    if not wait:
        if as_json:
            _show_execution(execution_id, True)
        else:
            click.echo(f"execution {execution_id} {status}")
        return
    _wait(execution_id, timeout)
    _show_execution(execution_id, as_json)


@group.group("executions", cls=PopcornGroup)
def executions_group() -> None:
    """Executions: list, show (with the step timeline), cancel, re-run."""


@executions_group.command("list")
@click.option("--status", help="e.g. running, failed, waiting_approval")
@click.option("--runbook")
@click.option("--limit", default=50, show_default=True)
@json_option
def executions_list(status: str | None, runbook: str | None, limit: int, as_json: bool) -> None:
    """List runbook executions, newest first."""
    args: dict[str, Any] = {"limit": str(limit)}
    if status:
        args["status"] = status
    if runbook:
        args["runbook"] = runbook
    params = parse_list_params(args)
    with session_scope(readonly=True) as session:
        result = service.list_executions(session=session, params=params)
        rows = [ExecutionRead.model_validate(e).model_dump(mode="json") for e in result.items]
    output(rows, as_json=as_json, columns=EXECUTION_COLUMNS)


@executions_group.command("show")
@click.argument("execution_id", type=int)
@json_option
def executions_show(execution_id: int, as_json: bool) -> None:
    """Show an execution and its steps."""
    _show_execution(execution_id, as_json)


@executions_group.command("cancel")
@click.argument("execution_id", type=int)
@with_actor
def executions_cancel(execution_id: int) -> None:
    """Cancel an execution; it stops before its next step."""
    with session_scope() as session:
        execution = service.cancel_execution(session=session, execution_id=execution_id)
        state = "cancel requested" if execution.cancel_requested else execution.status
    click.echo(f"execution {execution_id}: {state}")


@executions_group.command("rerun")
@click.argument("execution_id", type=int)
@click.option("--from", "from_step", help="Step to start from (default: the first that failed).")
@with_actor
def executions_rerun(execution_id: int, from_step: str | None) -> None:
    """Run an execution again from the first failed step (or --from STEP)."""
    with session_scope() as session:
        execution = service.rerun_execution(
            session=session, execution_id=execution_id, from_step=from_step
        )
        click.echo(f"execution {execution.id} {execution.status} (re-run of {execution_id})")


# --- approvals ---------------------------------------------------------------------------


@group.group("approvals", cls=PopcornGroup)
def approvals_group() -> None:
    """Steps waiting for a human: list, approve, reject."""


@approvals_group.command("list")
@click.option("--status", default="pending", show_default=True, help="or: all")
@json_option
def approvals_list(status: str, as_json: bool) -> None:
    """List approvals (pending ones by default)."""
    args: dict[str, Any] = {"limit": "1000"}
    if status != "all":
        args["status"] = status
    with session_scope(readonly=True) as session:
        result = service.list_approvals(session=session, params=parse_list_params(args))
        rows = [ApprovalRead.model_validate(a).model_dump(mode="json") for a in result.items]
    output(
        rows,
        as_json=as_json,
        columns=["id", "execution_id", "step", "status", "roles", "deadline", "message"],
    )


@approvals_group.command("approve")
@click.argument("approval_id", type=int)
@click.option("-p", "--payload", "payload", multiple=True, help="Payload field as key=value.")
@click.option("--comment", default="")
@with_actor
def approvals_approve(approval_id: int, payload: tuple[str, ...], comment: str) -> None:
    """Approve a step, with the payload it asks for."""
    with session_scope() as session:
        approval = service.answer_approval(
            session=session,
            approval_id=approval_id,
            approve=True,
            payload=parse_kv(payload) or None,
            comment=comment,
        )
        click.echo(f"approval {approval_id} approved; execution {approval.execution_id} resumes")


@approvals_group.command("reject")
@click.argument("approval_id", type=int)
@click.option("--comment", default="")
@with_actor
def approvals_reject(approval_id: int, comment: str) -> None:
    """Reject a step; its execution fails."""
    with session_scope() as session:
        approval = service.answer_approval(
            session=session, approval_id=approval_id, approve=False, comment=comment
        )
        click.echo(f"approval {approval_id} rejected; execution {approval.execution_id} ended")


# --- circuit -----------------------------------------------------------------------------


@group.group("circuit", cls=PopcornGroup)
def circuit_group() -> None:
    """The global remediation budget and its circuit breaker."""


@circuit_group.command("status")
@json_option
def circuit_status(as_json: bool) -> None:
    """Show the circuit breaker: state, budget and how much is used."""
    with session_scope() as session:
        output(service.circuit_status(session=session), as_json=as_json)


@circuit_group.command("reset")
@with_actor
def circuit_reset() -> None:
    """Close a tripped circuit breaker so runbooks may act again."""
    with session_scope() as session:
        service.reset_circuit(session=session)
    click.echo("circuit closed: automation resumes")


@circuit_group.command("configure")
@click.option("--budget", type=int, help="Remediations allowed per window.")
@click.option("--window", "window_seconds", type=int, help="Window in seconds.")
@with_actor
def circuit_configure(budget: int | None, window_seconds: int | None) -> None:
    """Change the circuit breaker's budget and window."""
    if budget is None and window_seconds is None:
        fail("give --budget and/or --window")
    with session_scope() as session:
        view = service.configure_circuit(
            session=session, budget=budget, window_seconds=window_seconds
        )
    click.echo(f"budget {view['budget']} remediations per {view['window_seconds']}s")


# --- agents ------------------------------------------------------------------------------


@group.group("agents", cls=PopcornGroup)
def agents_group() -> None:
    """Bolt agents known from their heartbeats."""


@agents_group.command("list")
@click.option("--device")
@json_option
def agents_list(device: str | None, as_json: bool) -> None:
    """List Bolt agents, their devices and when each was last seen."""
    args: dict[str, Any] = {"limit": "1000"}
    if device:
        args["device"] = device
    with session_scope(readonly=True) as session:
        result = service.list_agents(session=session, params=parse_list_params(args))
        rows = [agent.model_dump(mode="json") for agent in result.items]
    output(
        rows,
        as_json=as_json,
        columns=["name", "device", "url", "version", "last_seen", "stale", "inventory_link"],
    )


# --- bolt --------------------------------------------------------------------------------


@click.group("bolt", cls=PopcornGroup)
def bolt_group() -> None:
    """Bolt, the host agent: run it, and give runbooks a client certificate to call it."""


@bolt_group.command("serve")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent config file (YAML).",
)
@click.option("--log-level", default="INFO", show_default=True)
def bolt_serve(config_path: Path, log_level: str) -> None:
    """Run the Bolt agent on this host until SIGTERM or Ctrl-C."""
    import logging

    from popcorn.remediation.agent import ConfigError, load_config, serve

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(config_path)
        serve(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc


@bolt_group.command("credentials")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--issue", "authority", help="Have this certificate authority issue one.")
@with_actor
def bolt_credentials(
    cert: Path | None, key: Path | None, ca: Path | None, authority: str | None
) -> None:
    """Install the client certificate runbooks present to Bolt agents (mutual TLS)."""
    if authority:
        with session_scope() as session:
            creds = service.issue_bolt_credentials(session=session, authority=authority)
    else:
        if not (cert and key and ca):
            fail("give --cert, --key and --ca, or --issue AUTHORITY")
        assert cert and key and ca
        creds = service.install_bolt_credentials(
            cert=cert.read_bytes(), key=key.read_bytes(), ca=ca.read_bytes()
        )
    click.echo(f"runbooks call Bolt agents with {creds.cert} (CA {creds.ca})")


# `popcorn bolt ...` is a top-level group of its own.
extra_groups = [bolt_group]
