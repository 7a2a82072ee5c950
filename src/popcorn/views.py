"""Core API: tokens, jobs, schedules, audit, and who am I."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiflask import APIBlueprint
from flask import g, request
from pydantic import Field
from sqlalchemy import select

from popcorn import auth, jobs
from popcorn.app import role
from popcorn.audit import AuditRecord, record_change
from popcorn.db import session_scope
from popcorn.errors import Forbidden, InvalidInput
from popcorn.listing import PageResult, filter_clauses, paginate, parse_list_params
from popcorn.schemas import Page, ReadSchema, Schema

bp = APIBlueprint("core", __name__, tag="core")


class JobRead(ReadSchema):
    id: int
    task: str
    queue: str
    arguments: dict[str, Any]
    status: str
    attempts: int
    max_retries: int
    timeout: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    worker: str
    result: Any = None
    error: str
    progress: dict[str, Any]
    created_by: str
    schedule: str | None


class JobSubmit(Schema):
    task: str = Field(min_length=1, max_length=120)
    arguments: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(default=None, pattern="^(high|default|low)$")
    delay_seconds: float | None = Field(default=None, ge=0, le=86400 * 30)
    retries: int | None = Field(default=None, ge=0, le=20)
    timeout: int | None = Field(default=None, ge=1, le=86400)


class ScheduleCreate(Schema):
    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.:-]+$")
    task: str = Field(min_length=1, max_length=120)
    arguments: dict[str, Any] = Field(default_factory=dict)
    queue: str = Field(default="default", pattern="^(high|default|low)$")
    cron: str | None = None
    interval_seconds: int | None = Field(default=None, ge=1, le=86400 * 366)
    enabled: bool = True


class ScheduleRead(ReadSchema):
    id: int
    name: str
    task: str
    arguments: dict[str, Any]
    queue: str
    cron: str | None
    interval_seconds: int | None
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: int | None


class AuditRead(ReadSchema):
    id: int
    time: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    diff: dict[str, Any]
    request_id: str


class WhoAmI(ReadSchema):
    name: str
    role: str


class TokenPage(Page[auth.TokenRead]):
    """Every API token (never paged: an installation has few)."""


class JobPage(Page[JobRead]):
    """One page of jobs."""


class SchedulePage(Page[ScheduleRead]):
    """Every schedule."""


class AuditPage(Page[AuditRead]):
    """One page of the change log."""


@bp.get("/whoami")
@bp.output(WhoAmI)
@bp.doc(summary="The caller's token name and role")
def whoami() -> dict[str, Any]:
    return {"name": g.principal.name, "role": g.principal.role}


# --- tokens --------------------------------------------------------------------


@bp.get("/tokens")
@role("admin")
@bp.output(TokenPage)
@bp.doc(summary="List API tokens (secrets are never shown again)")
def list_tokens() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return PageResult.whole(auth.list_tokens(session=session)).serialize(auth.TokenRead)


@bp.post("/tokens")
@role("admin")
@bp.input(auth.TokenCreate, arg_name="body")
@bp.output(auth.TokenCreated, status_code=201)
@bp.doc(summary="Create a token; the secret is in this response only")
def create_token(body: auth.TokenCreate) -> dict[str, Any]:
    with session_scope() as session:
        token, raw = auth.create_token(
            session=session, name=body.name, role=body.role, expires_days=body.expires_days
        )
        data = auth.TokenRead.model_validate(token).model_dump()
    return {**data, "token": raw}


@bp.delete("/tokens/<ref>")
@role("admin")
@bp.output(auth.TokenRead)
@bp.doc(summary="Revoke a token by id or name")
def revoke_token(ref: str) -> Any:
    with session_scope() as session:
        return auth.revoke_token(session=session, ref=ref)


# --- jobs ----------------------------------------------------------------------

JOB_FILTERS = {
    "status": jobs.JobRecord.status,
    "queue": jobs.JobRecord.queue,
    "task": jobs.JobRecord.task,
    "schedule": jobs.JobRecord.schedule,
    "created_at": jobs.JobRecord.created_at,
}


@bp.get("/jobs")
@bp.output(JobPage)
@bp.doc(summary="List jobs (filters: status, queue, task, schedule, created_at__gte…)")
def list_jobs() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        stmt = select(jobs.JobRecord).where(*filter_clauses(params.filters, JOB_FILTERS))
        result = paginate(session, stmt, params, key=jobs.JobRecord.id)
        return result.serialize(JobRead)


@bp.get("/jobs/<int:job_id>")
@bp.output(JobRead)
@bp.doc(summary="A job's status, progress and result")
def show_job(job_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return jobs.get_job(session=session, job_id=job_id)


@bp.post("/jobs")
@bp.input(JobSubmit, arg_name="body")
@bp.output(JobRead, status_code=202)
@bp.doc(summary="Submit a public task by name; it runs on a worker")
def submit_job(body: JobSubmit) -> Any:
    spec = jobs.get_task(body.task)
    if not spec.public:
        raise Forbidden(f"task {body.task!r} cannot be submitted through the API")
    with session_scope() as session:
        record = jobs.enqueue(
            session,
            body.task,
            arguments=body.arguments,
            queue=body.queue,
            delay_seconds=body.delay_seconds,
            retries=body.retries,
            timeout=body.timeout,
        )
        record_change(session, "submit", "job", record.id, after={"task": body.task})
        return record


@bp.post("/jobs/<int:job_id>/cancel")
@bp.output(JobRead)
@bp.doc(summary="Cancel a scheduled or pending job")
def cancel_job(job_id: int) -> Any:
    with session_scope() as session:
        record = jobs.cancel_job(session=session, job_id=job_id)
        record_change(session, "cancel", "job", job_id, after={"status": "canceled"})
        return record


# --- schedules -----------------------------------------------------------------


@bp.get("/schedules")
@bp.output(SchedulePage)
@bp.doc(summary="Repeating jobs")
def list_schedules() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return PageResult.whole(jobs.list_schedules(session=session)).serialize(ScheduleRead)


@bp.post("/schedules")
@role("admin")
@bp.input(ScheduleCreate, arg_name="body")
@bp.output(ScheduleRead, status_code=201)
@bp.doc(summary="Create a cron or interval schedule")
def create_schedule(body: ScheduleCreate) -> Any:
    with session_scope() as session:
        return jobs.create_schedule(session=session, **body.model_dump())


@bp.delete("/schedules/<name>")
@role("admin")
@bp.output(ScheduleRead)
@bp.doc(summary="Delete a schedule")
def delete_schedule(name: str) -> Any:
    with session_scope() as session:
        return jobs.delete_schedule(session=session, name=name)


# --- audit ---------------------------------------------------------------------

AUDIT_FILTERS = {
    "actor": AuditRecord.actor,
    "action": AuditRecord.action,
    "object_type": AuditRecord.object_type,
    "object_id": AuditRecord.object_id,
    "time": AuditRecord.time,
    "request_id": AuditRecord.request_id,
}


@bp.get("/audit")
@bp.output(AuditPage)
@bp.doc(summary="The change log (filters: object_type, object_id, actor, time__gte, time__lte)")
def list_audit() -> dict[str, Any]:
    params = parse_list_params(request.args)
    if params.q:
        raise InvalidInput("free-text search is not supported on the audit log")
    with session_scope(readonly=True) as session:
        stmt = select(AuditRecord).where(*filter_clauses(params.filters, AUDIT_FILTERS))
        result = paginate(session, stmt, params, key=AuditRecord.id)
        return result.serialize(AuditRead)
