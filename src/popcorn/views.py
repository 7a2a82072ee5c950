"""Core API: tokens, jobs, schedules, audit, and who am I."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import g, request

from popcorn import audit, auth, jobs
from popcorn.app import role
from popcorn.audit import AuditRead
from popcorn.context import sees_details
from popcorn.db import session_scope
from popcorn.errors import one_line
from popcorn.jobs.schemas import JobRead, JobSubmit, ScheduleCreate, ScheduleRead
from popcorn.listing import PageResult, parse_list_params
from popcorn.schemas import Page, ReadSchema

bp = APIBlueprint("core", __name__, tag="core")


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


@bp.get("/jobs")
@bp.output(JobPage)
@bp.doc(summary="List jobs (filters: status, queue, task, schedule, created_at__gte…)")
def list_jobs() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        page = jobs.list_jobs(session=session, params=params).serialize(JobRead)
    if not sees_details():
        for item in page["items"]:
            item["error"] = one_line(item["error"])
    return page


@bp.get("/jobs/<int:job_id>")
@bp.output(JobRead)
@bp.doc(summary="A job's status, progress and result")
def show_job(job_id: int) -> Any:
    """Viewers read one line of a failed job's error; its traceback is for operators."""
    with session_scope(readonly=True) as session:
        job = JobRead.model_validate(jobs.get_job(session=session, job_id=job_id))
    return job if sees_details() else job.model_copy(update={"error": one_line(job.error)})


@bp.post("/jobs")
@bp.input(JobSubmit, arg_name="body")
@bp.output(JobRead, status_code=202)
@bp.doc(summary="Submit a public task by name, within its declared limits; it runs on a worker")
def submit_job(body: JobSubmit) -> Any:
    with session_scope() as session:
        return jobs.submit_job(session=session, **body.model_dump())


@bp.post("/jobs/<int:job_id>/cancel")
@bp.output(JobRead)
@bp.doc(summary="Cancel a scheduled or pending job")
def cancel_job(job_id: int) -> Any:
    with session_scope() as session:
        return jobs.cancel_job(session=session, job_id=job_id)


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


@bp.get("/audit")
@bp.output(AuditPage)
@bp.doc(summary="The change log (filters: object_type, object_id, actor, time__gte, time__lte)")
def list_audit() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return audit.list_audit(session=session, params=params).serialize(AuditRead)
