"""Remediation API: packs and runbooks, executions, approvals, the circuit, Bolt agents."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request

from popcorn import metrics
from popcorn.app import role
from popcorn.context import sees_details
from popcorn.db import session_scope
from popcorn.listing import PageResult, parse_list_params
from popcorn.remediation import service
from popcorn.remediation.schemas import (
    AgentHeartbeat,
    AgentPage,
    AgentRead,
    ApprovalPage,
    ApprovalRead,
    ApproveBody,
    CircuitConfigure,
    CircuitRead,
    ExecutionDetail,
    ExecutionPage,
    ExecutionRead,
    ExecutionStart,
    PackPage,
    RejectBody,
    RerunBody,
    RunbookDescription,
    RunbookPage,
)

bp = APIBlueprint("remediation", __name__, tag="remediation")


# --- packs and runbooks ----------------------------------------------------------------------


@bp.get("/packs")
@bp.output(PackPage)
@bp.doc(summary="Runbook packs with their versions, runbooks and steps (and load errors)")
def list_packs() -> dict[str, Any]:
    found = service.list_packs()
    return {
        "items": found["packs"],
        "count": len(found["packs"]),
        "next": None,
        "errors": found["errors"],
    }


@bp.get("/runbooks")
@bp.output(RunbookPage)
@bp.doc(summary="Every runbook of every pack")
def list_runbooks() -> dict[str, Any]:
    items = [rb for pack in service.list_packs()["packs"] for rb in pack["runbooks"]]
    return PageResult.whole(items).serialize()


@bp.get("/runbooks/<name>")
@bp.output(RunbookDescription)
@bp.doc(summary="A runbook: inputs schema, target, concurrency policy and steps")
def show_runbook(name: str) -> dict[str, Any]:
    return service.describe_runbook(name)


# --- executions --------------------------------------------------------------------------


@bp.post("/executions")
@bp.input(ExecutionStart, arg_name="body")
@bp.output(ExecutionRead, status_code=202)
@bp.doc(summary="Start a runbook (pending, queued behind a concurrency limit, or dropped)")
def start_execution(body: ExecutionStart) -> Any:
    with session_scope() as session:
        return service.start_runbook(
            session=session,
            runbook=body.runbook,
            inputs=body.inputs,
            target=body.target.as_filters() if body.target else None,
            trigger=body.trigger,
            dry_run=body.dry_run,
        )


@bp.get("/executions")
@bp.output(ExecutionPage)
@bp.doc(summary="Executions (filters: status, runbook, pack, dry_run, created_at__gte, ...)")
def list_executions() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return service.list_executions(session=session, params=params).serialize(ExecutionRead)


@bp.get("/executions/<int:execution_id>")
@bp.output(ExecutionDetail)
@bp.doc(
    summary="An execution with its step timeline (status, inputs, outputs, logs, timings)",
    description="Viewers see one line of each error; tracebacks are for operators and admins.",
)
def show_execution(execution_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.execution_detail(
            session=session,
            execution_id=execution_id,
            full=sees_details(),
        )


@bp.post("/executions/<int:execution_id>/cancel")
@bp.output(ExecutionRead)
@bp.doc(summary="Cancel an execution (a running step stops at its next check)")
def cancel_execution(execution_id: int) -> Any:
    with session_scope() as session:
        return service.cancel_execution(session=session, execution_id=execution_id)


@bp.post("/executions/<int:execution_id>/rerun")
@bp.input(RerunBody, arg_name="body")
@bp.output(ExecutionRead, status_code=202)
@bp.doc(summary="Re-run a finished execution from a step (default: the first that failed)")
def rerun_execution(execution_id: int, body: RerunBody) -> Any:
    with session_scope() as session:
        return service.rerun_execution(
            session=session, execution_id=execution_id, from_step=body.from_step
        )


# --- approvals ---------------------------------------------------------------------------


@bp.get("/approvals")
@bp.output(ApprovalPage)
@bp.doc(summary="Approvals (filters: status, execution_id, step, deadline__lte)")
def list_approvals() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return service.list_approvals(session=session, params=params).serialize(ApprovalRead)


@bp.get("/approvals/<int:approval_id>")
@bp.output(ApprovalRead)
@bp.doc(summary="An approval, with the JSON schema of the payload it asks for")
def show_approval(approval_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_approval(session=session, approval_id=approval_id)


@bp.post("/approvals/<int:approval_id>/approve")
@bp.input(ApproveBody, arg_name="body")
@bp.output(ApprovalRead)
@bp.doc(summary="Approve a waiting step; the payload must match the approval's schema")
def approve(approval_id: int, body: ApproveBody) -> Any:
    with session_scope() as session:
        return service.answer_approval(
            session=session,
            approval_id=approval_id,
            approve=True,
            payload=body.payload,
            comment=body.comment,
        )


@bp.post("/approvals/<int:approval_id>/reject")
@bp.input(RejectBody, arg_name="body")
@bp.output(ApprovalRead)
@bp.doc(summary="Reject a waiting step; the execution ends as rejected")
def reject(approval_id: int, body: RejectBody) -> Any:
    with session_scope() as session:
        return service.answer_approval(
            session=session, approval_id=approval_id, approve=False, comment=body.comment
        )


# --- circuit -----------------------------------------------------------------------------


@bp.get("/circuit")
@bp.output(CircuitRead)
@bp.doc(summary="The remediation budget, what is used of it, and the breaker's state")
def circuit() -> Any:
    with session_scope() as session:
        return service.circuit_status(session=session)


@bp.post("/circuit/reset")
@role("admin")
@bp.output(CircuitRead)
@bp.doc(summary="Close a tripped circuit: automation resumes")
def reset_circuit() -> Any:
    with session_scope() as session:
        return service.reset_circuit(session=session)


@bp.patch("/circuit")
@role("admin")
@bp.input(CircuitConfigure, arg_name="body")
@bp.output(CircuitRead)
@bp.doc(summary="Set the budget (remediations per window) and the window")
def configure_circuit(body: CircuitConfigure) -> Any:
    with session_scope() as session:
        return service.configure_circuit(
            session=session, budget=body.budget, window_seconds=body.window_seconds
        )


# --- Bolt agents -------------------------------------------------------------------------


@bp.post("/agents/heartbeat")
@bp.input(AgentHeartbeat, arg_name="body")
@bp.output(AgentRead)
@bp.doc(summary="A Bolt agent announces itself (operator token); links it to its device")
def heartbeat(body: AgentHeartbeat) -> Any:
    with session_scope() as session:
        agent = service.record_heartbeat(
            session=session,
            name=body.name,
            url=body.url,
            device=body.device,
            version=body.version,
            actions=body.actions,
        )
        return service.agent_read(agent)


@bp.get("/agents")
@bp.output(AgentPage)
@bp.doc(summary="Bolt agents by their last heartbeat (filters: name, device, version)")
def list_agents() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return service.list_agents(session=session, params=params).serialize(AgentRead)


# --- metrics -----------------------------------------------------------------------------

metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)
