"""Executions of plans on AWS: queueing the job (one at a time per installation), following
and canceling it, and binding regions to a sandbox endpoint. The job's body is `executor`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id, parse_id
from popcorn.outbox import emit
from popcorn.traffic import models as m
from popcorn.traffic import schemas as s
from popcorn.traffic.health import check_spec
from popcorn.traffic.planbook import get_plan
from popcorn.traffic.regions import update_region
from popcorn.traffic.service import get_settings_view, update_settings

EXECUTE_TASK = "traffic.execute_plan"
EXECUTION_FILTERS = {
    "plan_id": m.Execution.plan_id,
    "status": m.Execution.status,
    "created_at": m.Execution.created_at,
}


def _bindings(session: Session, plan: m.Plan, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Each region's AWS binding, checked: shifting needs a record, scaling a group."""
    result = plan.result
    steps = result.get("steps") or []
    weighted = {
        name
        for step in steps
        for name, weight in step["weights"].items()
        if weight > 0 or name in plan.evacuated
    }
    scaled = {a["region"] for a in result.get("scale_up", []) + result.get("scale_down", [])}
    problems: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for name in sorted(weighted | scaled):
        row = session.scalar(select(m.TrafficRegion).where(m.TrafficRegion.name == name))
        if row is None:
            problems[name] = ["region no longer exists"]
            continue
        missing = []
        if name in weighted:
            missing += [
                f for f in ("route53_zone_id", "route53_record_name") if not getattr(row, f)
            ]
        if name in scaled and not row.asg_name:
            missing.append("asg_name")
        if missing:
            problems[name] = missing
        out[name] = {
            "aws_region": row.aws_region or settings["aws_region"],
            "asg_name": row.asg_name,
            "zone_id": row.route53_zone_id,
            "record_name": row.route53_record_name,
            "set_identifier": row.route53_set_identifier or row.name,
            "target": row.route53_target,
            "shift": name in weighted,
        }
    if problems:
        listed = "; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items())
        raise InvalidInput(
            f"plan {plan.id} cannot run: regions lack their AWS binding ({listed})",
            details={"missing": problems},
        )
    return out


def execute_plan(
    *, session: Session, plan_id: int | str, spec: s.ExecuteCreate | None = None
) -> m.Execution:
    """Queue the execution of a feasible plan (one at a time per installation)."""
    spec = spec or s.ExecuteCreate()
    plan = get_plan(session=session, plan_id=plan_id)
    if not plan.feasible:
        raise Conflict(
            f"plan {plan.id} is infeasible; make a feasible plan first",
            details={"reasons": plan.summary.get("reasons") or plan.summary.get("shortfall")},
        )
    if not plan.result.get("steps"):
        raise Conflict(f"plan {plan.id} has no steps to execute")
    active = session.scalar(
        select(m.Execution.id).where(m.Execution.status.in_(m.ACTIVE_EXECUTION))
    )
    if active is not None:
        raise Conflict(
            f"execution {active} is still active; wait for it or cancel it",
            details={"execution": active},
        )
    settings = get_settings_view(session=session)
    bindings = _bindings(session, plan, settings)
    health = {
        "selector": settings["health_selector"],
        "threshold": settings["health_threshold"],
        "window_seconds": settings["health_window_seconds"],
        "url": settings["health_url"],
        "callable": settings["health_callable"],
        "timeout_seconds": settings["health_timeout_seconds"],
    }
    if spec.health is not None:
        health.update({k: getattr(spec.health, k) for k in spec.health.model_fields_set})
    if health["selector"] and health["threshold"] is None:
        raise InvalidInput("health.threshold: needed with a health selector")
    check_spec(health)
    options: dict[str, Any] = {
        "bindings": bindings,
        "aws": {
            "endpoint_url": settings["aws_endpoint_url"],
            "region": settings["aws_region"],
            "profile": settings["aws_profile"],
        },
        "dwell_seconds": (
            spec.dwell_seconds
            if spec.dwell_seconds is not None
            else float(plan.result.get("dwell_seconds") or 0.0)
        ),
        "scale_timeout_seconds": spec.scale_timeout_seconds or settings["scale_timeout_seconds"],
        "poll_seconds": spec.poll_seconds or settings["poll_seconds"],
        "health": health,
    }
    result = plan.result
    total = (
        len(result.get("scale_up", [])) + len(result["steps"]) + len(result.get("scale_down", []))
    )
    execution = m.Execution(
        plan_id=plan.id,
        status="pending",
        options=options,
        total_steps=total,
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(execution)
    session.flush()
    timeout = int(
        float(options["scale_timeout_seconds"]) * 2
        + len(result["steps"]) * (float(options["dwell_seconds"]) + 120)
        + 600
    )
    job = jobs.enqueue(
        session,
        EXECUTE_TASK,
        arguments={"execution_id": execution.id},
        queue="high",
        timeout=timeout,
    )
    execution.job_id = job.id
    record_change(
        session,
        "create",
        "traffic_execution",
        execution.id,
        after={"plan_id": plan.id, "job_id": job.id, "status": "pending"},
    )
    return execution


def has_ended(status: str) -> bool:
    """Whether an execution in this status is over (nothing more will run or roll back)."""
    return status not in m.ACTIVE_EXECUTION


def get_execution(*, session: Session, execution_id: int | str) -> m.Execution:
    """One execution by id; an id that cannot exist (too big, not ASCII digits) is a 404."""
    return get_by_id(session, m.Execution, execution_id, label="execution")


def list_executions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Execution).where(*filter_clauses(params.filters, EXECUTION_FILTERS))
    return paginate(session, stmt, params, key=m.Execution.id)


def execution_detail(*, session: Session, execution_id: int | str) -> dict[str, Any]:
    row = get_execution(session=session, execution_id=execution_id)
    return s.ExecutionDetail.model_validate(row).model_dump(mode="json")


def cancel_execution(*, session: Session, execution_id: int | str) -> m.Execution:
    """Ask a running execution to stop and roll back (checked between and during steps);
    a pending one is canceled before it changes anything."""
    ident = parse_id(execution_id)
    row = session.get(m.Execution, ident, with_for_update=True) if ident is not None else None
    if row is None:
        raise NotFound(f"no execution {execution_id}", details={"id": str(execution_id)})
    if row.status not in m.ACTIVE_EXECUTION:
        raise Conflict(f"execution {row.id} already ended ({row.status})")
    row.cancel_requested = True
    if row.status == "pending" and row.job_id is not None:
        try:
            jobs.cancel_job(session=session, job_id=row.job_id)
        except Conflict:
            pass  # a worker picked it up: it sees the flag before its first change
        else:
            end_execution(session, row, "canceled", CANCELED_BEFORE_START, False)
    record_change(session, "cancel", "traffic_execution", row.id, after={"status": row.status})
    return row


CANCELED_BEFORE_START = "canceled by operator before it started"


def end_execution(
    session: Session, row: m.Execution, status: str, reason: str, rolled_back: bool
) -> None:
    """An execution ends without completing: record why and announce `traffic.execution.aborted`."""
    row.status = status
    row.error = reason
    row.rolled_back = rolled_back
    row.ended_at = utcnow()
    emit(
        session,
        "traffic.execution.aborted",
        "traffic_execution",
        row.id,
        {
            "execution_id": row.id,
            "plan_id": row.plan_id,
            "status": status,
            "reason": reason,
            "rolled_back": rolled_back,
        },
    )


def run_execution(execution_id: int, **kwargs: Any) -> dict[str, Any]:
    """Carry out an execution (the job's body); see `popcorn.traffic.executor`."""
    from popcorn.traffic.executor import run

    return run(execution_id, **kwargs)


def bind_sandbox(
    *, session: Session, endpoint_url: str, prefix: str = "popcorn", zone: str | None = None
) -> dict[str, Any]:
    """Create an Auto Scaling group per cloud region and a hosted zone with one weighted
    record per region on an AWS-compatible endpoint (moto), and bind the regions to them.

    Refuses without an endpoint, so it never creates resources in a real account by mistake.
    """
    from popcorn.traffic.executor import provision_sandbox

    if not endpoint_url:
        raise InvalidInput("endpoint_url: a sandbox needs an AWS-compatible endpoint (moto)")
    regions = list(
        session.scalars(
            select(m.TrafficRegion)
            .where(m.TrafficRegion.kind == "cloud")
            .order_by(m.TrafficRegion.name)
        )
    )
    if not regions:
        raise InvalidInput("regions: there are no cloud regions to bind")
    settings = get_settings_view(session=session)
    bound = provision_sandbox(
        endpoint_url=endpoint_url,
        regions=[
            {
                "name": r.name,
                "aws_region": r.aws_region or settings["aws_region"],
                "instances": r.instances or 0,
                "max_instances": r.max_instances or max(2 * (r.instances or 1), 10),
            }
            for r in regions
        ],
        prefix=prefix,
        zone=zone,
    )
    for row in regions:
        update_region(session=session, ref=row.name, data=bound["regions"][row.name])
    update_settings(session=session, changes={"aws_endpoint_url": endpoint_url})
    return bound
