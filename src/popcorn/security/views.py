"""Security API (`/api/v1/security`): accounts, polls, items with revisions and diffs, issues
and justifications, reports, role usage and repo. Reads need viewer; polls, justifications,
usage imports and repos operator; accounts (they hold keys and outbound endpoints) admin."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request

from popcorn.app import role
from popcorn.db import session_scope
from popcorn.listing import parse_list_params
from popcorn.lookup import parse_id
from popcorn.schemas import Message
from popcorn.security import issues, roles, service
from popcorn.security import schemas as s

bp = APIBlueprint("security", __name__, tag="security")


@bp.get("/accounts")
@bp.output(s.AccountPage)
@bp.doc(summary="Watched accounts (filters: name, kind, status)")
def list_accounts() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_accounts(session=session, params=parse_list_params(request.args))
        return page.serialize(s.AccountRead)


@bp.post("/accounts")
@role("admin")
@bp.input(s.AccountCreate, arg_name="body")
@bp.output(s.AccountRead, status_code=201)
@bp.doc(summary="Watch an AWS account (profile, keys or role) or a set of Git repositories")
def create_account(body: s.AccountCreate) -> Any:
    with session_scope() as session:
        return service.create_account(session=session, spec=body)


@bp.get("/accounts/<ref>")
@bp.output(s.AccountRead)
@bp.doc(summary="One account, by name or id")
def show_account(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_account(session=session, ref=ref)


@bp.patch("/accounts/<ref>")
@role("admin")
@bp.input(s.AccountUpdate, arg_name="body")
@bp.output(s.AccountRead)
@bp.doc(summary="Change regions, poll interval, friendly accounts or allowed networks")
def update_account(ref: str, body: s.AccountUpdate) -> Any:
    with session_scope() as session:
        return service.update_account(session=session, ref=ref, spec=body)


@bp.delete("/accounts/<ref>")
@role("admin")
@bp.output(s.AccountRead)
@bp.doc(summary="Stop watching an account (its items and history go with it)")
def delete_account(ref: str) -> Any:
    with session_scope() as session:
        found = s.AccountRead.model_validate(service.get_account(session=session, ref=ref))
        service.delete_account(session=session, ref=ref)
        return found


@bp.get("/accounts/<ref>/watchers")
@bp.output(s.WatcherStatePage)
@bp.doc(summary="How the last poll of each watcher went")
def watcher_states(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        account = service.get_account(session=session, ref=ref)
        rows = service.watcher_states(session=session, account=account)
        return {"items": [s.WatcherStateRead.model_validate(r) for r in rows], "count": len(rows)}


@bp.post("/accounts/<ref>/poll")
@bp.input(s.PollRequest, arg_name="body")
@bp.output(Message, status_code=202)
@bp.doc(summary="Poll the account now (all watchers, or those named) as a job")
def poll_account(ref: str, body: s.PollRequest) -> Any:
    with session_scope() as session:
        job = service.enqueue_poll(session=session, ref=ref, watchers=body.watchers)
    return {"message": f"poll queued as job {job}", "details": {"job_id": job}}


@bp.get("/accounts/<ref>/report")
@bp.output(s.ReportRead)
@bp.doc(summary="The account's report: totals and the worst items first")
def account_report(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        return issues.report(session=session, account=service.get_account(session=session, ref=ref))


@bp.get("/items")
@bp.output(s.ItemPage)
@bp.doc(summary="Watched items (filters: account_id, watcher, region, name, active, score)")
def list_items() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_items(session=session, params=parse_list_params(request.args))
        return page.serialize(s.ItemRead)


@bp.get("/items/<int:item_id>")
@bp.output(s.ItemRead)
@bp.doc(summary="One item")
def show_item(item_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_item(session=session, item_id=item_id)


@bp.get("/items/<int:item_id>/revisions")
@bp.output(s.RevisionPage)
@bp.doc(summary="Every stored revision of an item, oldest first")
def item_revisions(item_id: int) -> Any:
    with session_scope(readonly=True) as session:
        rows = service.list_revisions(session=session, item_id=item_id)
        return {"items": [s.RevisionRead.model_validate(r) for r in rows], "count": len(rows)}


@bp.get("/items/<int:item_id>/diff")
@bp.output(s.DiffRead)
@bp.doc(summary="What changed between two revisions (?before=&after=; default the last two)")
def item_diff(item_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.diff(
            session=session,
            item_id=item_id,
            before=parse_id(request.args.get("before", "")),
            after=parse_id(request.args.get("after", "")),
        )


@bp.get("/issues")
@bp.output(s.IssuePage)
@bp.doc(summary="Issues (filters: account_id, item_id, status, score, auditor, check)")
def list_issues() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = issues.list_issues(session=session, params=parse_list_params(request.args))
        return page.serialize(s.IssueRead)


@bp.post("/issues/<int:issue_id>/justify")
@bp.input(s.JustifyRequest, arg_name="body")
@bp.output(s.IssueRead)
@bp.doc(summary="Accept an issue's risk: why, and until when (it reopens after)")
def justify_issue(issue_id: int, body: s.JustifyRequest) -> Any:
    with session_scope() as session:
        return issues.justify(
            session=session, issue_id=issue_id, reason=body.reason, until=body.until
        )


@bp.post("/accounts/<ref>/usage")
@bp.input(s.UsageRequest, arg_name="body")
@bp.output(s.UsageRead)
@bp.doc(summary="Read CloudTrail files (S3 bucket or directory) into each role's last use")
def import_usage(ref: str, body: s.UsageRequest) -> Any:
    with session_scope() as session:
        return roles.import_usage(session=session, account_ref=ref, spec=body)


@bp.get("/roles")
@bp.output(s.RolePage)
@bp.doc(summary="Roles with usage and repo state (filters: account_id, name, state)")
def list_roles() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = roles.list_roles(session=session, params=parse_list_params(request.args))
        return page.serialize(s.RoleRead)


@bp.get("/accounts/<ref>/roles/<name>/versions")
@bp.output(s.PolicyVersionPage)
@bp.doc(summary="Every policy version of a role kept by Popcorn")
def role_versions(ref: str, name: str) -> Any:
    with session_scope(readonly=True) as session:
        rows = roles.versions(session=session, account_ref=ref, name=name)
        return {"items": [s.PolicyVersionRead.model_validate(r) for r in rows], "count": len(rows)}


@bp.post("/accounts/<ref>/roles/<name>/plan")
@bp.input(s.RepoRules, arg_name="body")
@bp.output(s.PlanRead)
@bp.doc(summary="Dry run: what is repoable and the exact policy diff; nothing changes")
def plan_role(ref: str, name: str, body: s.RepoRules) -> Any:
    with session_scope() as session:
        return roles.plan(session=session, account_ref=ref, name=name, rules=body)


@bp.post("/accounts/<ref>/roles/<name>/schedule")
@bp.input(s.RepoRequest, arg_name="body")
@bp.output(s.RoleRead)
@bp.doc(summary="Schedule a repo after a waiting period (cancel before then to stop it)")
def schedule_repo(ref: str, name: str, body: s.RepoRequest) -> Any:
    with session_scope() as session:
        return roles.schedule(session=session, account_ref=ref, name=name, spec=body)


@bp.post("/accounts/<ref>/roles/<name>/cancel")
@bp.output(s.RoleRead)
@bp.doc(summary="Cancel a scheduled repo")
def cancel_repo(ref: str, name: str) -> Any:
    with session_scope() as session:
        return roles.cancel(session=session, account_ref=ref, name=name)


@bp.post("/accounts/<ref>/roles/<name>/repo")
@bp.input(s.RepoRules, arg_name="body")
@bp.output(s.ApplyRead)
@bp.doc(summary="Repo a role now with these rules (idempotent)")
def repo_role(ref: str, name: str, body: s.RepoRules) -> Any:
    with session_scope() as session:
        return roles.repo_now(session=session, account_ref=ref, name=name, rules=body)


@bp.post("/accounts/<ref>/roles/<name>/rollback")
@bp.input(s.RollbackRequest, arg_name="body")
@bp.output(s.ApplyRead)
@bp.doc(summary="Put a role's policies back to a stored version (idempotent)")
def rollback_role(ref: str, name: str, body: s.RollbackRequest) -> Any:
    with session_scope() as session:
        return roles.rollback(session=session, account_ref=ref, name=name, version=body.version)
