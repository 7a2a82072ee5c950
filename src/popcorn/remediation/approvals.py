"""Approvals: a step that waits for a human, answered by an allowed role or expired."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import emit
from popcorn.remediation import packs
from popcorn.remediation.lifecycle import enqueue_run, finish, get_execution, log_entry
from popcorn.remediation.models import (
    TERMINAL_STATUSES,
    Approval,
    RunbookExecution,
    StepRun,
)

APPROVAL_FILTERS = {
    "status": Approval.status,
    "execution_id": Approval.execution_id,
    "step": Approval.step,
    "deadline": Approval.deadline,
}


def list_approvals(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(Approval).where(*filter_clauses(params.filters, APPROVAL_FILTERS))
    return paginate(session, stmt, params, key=Approval.id)


def get_approval(*, session: Session, approval_id: int, lock: bool = False) -> Approval:
    approval = session.get(Approval, approval_id, with_for_update=lock)
    if approval is None:
        raise NotFound(f"no approval {approval_id}", details={"id": approval_id})
    return approval


def answer_approval(
    *,
    session: Session,
    approval_id: int,
    approve: bool,
    payload: dict[str, Any] | None = None,
    comment: str = "",
) -> Approval:
    """Approve (with the payload the step asks for) or reject a waiting step.

    Approving hands the execution back to a worker; rejecting ends it as
    `rejected`. Only the approval's roles (and admins) may answer.
    """
    approval = get_approval(session=session, approval_id=approval_id, lock=True)
    execution = get_execution(session=session, execution_id=approval.execution_id, lock=True)
    if approval.status != "pending":
        raise Conflict(
            f"approval {approval_id} is already {approval.status}",
            details={"status": approval.status},
        )
    now = utcnow()
    if approval.deadline <= now:
        raise Conflict(
            f"approval {approval_id} expired at {approval.deadline.isoformat()}",
            details={"deadline": approval.deadline.isoformat()},
        )
    actor = current_actor()
    if actor.role != "admin" and actor.role not in approval.roles:
        raise Forbidden(
            f"role {actor.role!r} may not answer this approval; allowed: "
            + ", ".join([*approval.roles, "admin"]),
            details={"roles": approval.roles},
        )
    before = {"status": approval.status}
    approval.answered_by = actor.name
    approval.answered_at = now
    approval.comment = comment
    step_run = session.get(StepRun, approval.step_run_id, with_for_update=True)
    assert step_run is not None
    if approve:
        approval.payload = _validate_payload(execution, approval, payload)
        approval.status = "approved"
        step_run.logs = [*step_run.logs, log_entry(f"approved by {actor.name}", comment=comment)]
        if execution.status == "waiting_approval":
            enqueue_run(session, execution, packs.registry().find(execution.runbook))
    else:
        if payload:
            raise InvalidInput("payload: a rejection carries no payload, only a comment")
        approval.status = "rejected"
        step_run.status = "rejected"
        step_run.error = f"rejected by {actor.name}" + (f": {comment}" if comment else "")
        step_run.ended_at = now
        finish(
            session,
            execution,
            "rejected",
            f"step {approval.step!r} was rejected by {actor.name}"
            + (f": {comment}" if comment else ""),
        )
    record_change(
        session,
        "answer",
        "remediation_approval",
        approval.id,
        before=before,
        after={"status": approval.status, "comment": comment},
    )
    emit(
        session,
        "remediation.approval.answered",
        "remediation_approval",
        approval.id,
        {
            "execution_id": execution.id,
            "step": approval.step,
            "status": approval.status,
            "by": actor.name,
        },
    )
    return approval


def _validate_payload(
    execution: RunbookExecution, approval: Approval, payload: dict[str, Any] | None
) -> dict[str, Any] | None:
    cls = packs.registry().find(execution.runbook) or packs.reload().find(execution.runbook)
    if cls is None:
        raise Unavailable(
            f"runbook {execution.runbook} is not installed here; cannot validate the payload"
        )
    spec = cls.step_named(approval.step)
    model = spec.approval.payload if spec.approval else None
    if model is None:
        if payload:
            raise InvalidInput(
                "payload: this approval takes no payload", details={"payload": payload}
            )
        return None
    try:
        return dict(model.model_validate(payload or {}).model_dump(mode="json"))
    except ValidationError as exc:
        fields = {
            "payload." + ".".join(str(p) for p in err["loc"]): err["msg"] for err in exc.errors()
        }
        first = next(iter(fields.items()))
        raise InvalidInput(f"{first[0]}: {first[1]}", details={"fields": fields}) from exc


def expire_approvals(*, session: Session, now: datetime | None = None) -> int:
    """Approvals past their deadline expire; their executions fail."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(Approval)
            .where(Approval.status == "pending", Approval.deadline <= now)
            .order_by(Approval.id)
            .limit(200)
            .with_for_update()
        )
    )
    for approval in due:
        execution = get_execution(session=session, execution_id=approval.execution_id, lock=True)
        approval.status = "expired"
        step_run = session.get(StepRun, approval.step_run_id)
        message = f"approval for step {approval.step!r} expired at {approval.deadline.isoformat()}"
        if step_run is not None:
            step_run.status = "failed"
            step_run.error = message
            step_run.ended_at = now
        record_change(
            session,
            "expire",
            "remediation_approval",
            approval.id,
            before={"status": "pending"},
            after={"status": "expired"},
        )
        emit(
            session,
            "remediation.approval.expired",
            "remediation_approval",
            approval.id,
            {"execution_id": execution.id, "step": approval.step},
        )
        if execution.status not in TERMINAL_STATUSES:
            finish(session, execution, "failed", message)
    return len(due)
