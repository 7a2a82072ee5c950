"""Role repo state: usage import, dry run, schedule with a waiting period, cancel, apply
(now or when due), rollback to any stored version. Every change is audited and emitted
(`security.role.scheduled|canceled|repoed|rolled_back|failed`); repo and rollback are
idempotent (asking again when the role already is so changes nothing).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbound import check_url
from popcorn.outbox import emit
from popcorn.security import repo, usage
from popcorn.security import schemas as s
from popcorn.security.cloud import Clients, CloudFailed, CredentialsFailed
from popcorn.security.models import SecurityAccount, SecurityPolicyVersion, SecurityRole
from popcorn.security.service import ensure_schedule, get_account, target

APPLY_DUE_TASK = "security.apply_due"
APPLY_DUE_SCHEDULE = "security:apply-due-repos"


def _clients(account: SecurityAccount, region: str = "us-east-1", endpoint: str = "") -> Clients:
    if account.kind != "aws":
        raise InvalidInput(f"account {account.name} is not an AWS account")
    tgt = target(account)
    if endpoint:
        check_url(endpoint, purpose="AWS endpoint")
        tgt.endpoint_url = endpoint
    try:
        return tgt.clients(account.regions[0] if account.regions else region)
    except CredentialsFailed as exc:
        raise InvalidInput(f"account {account.name}: credentials failed: {exc}") from None


def _snapshot(row: SecurityRole) -> dict[str, Any]:
    return {
        "state": row.state,
        "reason": row.reason,
        "repo_after": row.repo_after.isoformat() if row.repo_after else None,
        "repoable": list(row.repoable),
        "versions": row.versions,
    }


def import_usage(
    *, session: Session, account_ref: str | int, spec: s.UsageRequest, advisor_endpoint: str = ""
) -> dict[str, Any]:
    account = get_account(session=session, ref=account_ref)
    clients = _clients(account) if account.kind == "aws" else None
    try:
        result = usage.import_usage(
            session=session,
            account=account,
            clients=clients,
            bucket=spec.bucket,
            prefix=spec.prefix,
            directory=spec.directory,
        )
        if spec.access_advisor and clients is not None:
            arns = [
                r.arn
                for r in session.scalars(
                    select(SecurityRole).where(SecurityRole.account_id == account.id)
                )
            ]
            advisor = _clients(account, endpoint=advisor_endpoint) if advisor_endpoint else clients
            result["advisor_roles"] = usage.import_advisor(
                session=session, account=account, clients=advisor, roles=arns
            )
    except (CloudFailed, CredentialsFailed) as exc:
        raise InvalidInput(f"reading usage failed: {exc}") from None
    record_change(
        session,
        "import_usage",
        "security_account",
        account.id,
        after={k: v for k, v in result.items() if k != "usage"},
    )
    return result


def get_role(*, session: Session, account: SecurityAccount, name: str) -> SecurityRole:
    row = session.scalar(
        select(SecurityRole).where(SecurityRole.account_id == account.id, SecurityRole.name == name)
    )
    if row is None:
        raise NotFound(f"no role {name!r} in account {account.name}", details={"role": name})
    return row


def _role_for(session: Session, account: SecurityAccount, live: repo.RolePolicies) -> SecurityRole:
    row = session.scalar(
        select(SecurityRole).where(
            SecurityRole.account_id == account.id, SecurityRole.name == live.name
        )
    )
    if row is None:
        row = SecurityRole(
            account_id=account.id, name=live.name, arn=live.arn, action_usage={}, service_usage={}
        )
        session.add(row)
        session.flush()
    return row


def _keep_version(
    session: Session, row: SecurityRole, docs: dict[str, Any], source: str
) -> SecurityPolicyVersion:
    """Store `docs` as the role's next version unless it equals the latest one."""
    latest = session.scalar(
        select(SecurityPolicyVersion)
        .where(SecurityPolicyVersion.role_id == row.id)
        .order_by(SecurityPolicyVersion.number.desc())
        .limit(1)
    )
    if latest is not None and latest.inline == docs["inline"] and latest.managed == docs["managed"]:
        return latest
    row.versions += 1
    version = SecurityPolicyVersion(
        role_id=row.id,
        number=row.versions,
        source=source,
        inline=docs["inline"],
        managed=docs["managed"],
        created_by=current_actor().name,
    )
    session.add(version)
    session.flush()
    return version


def _read(clients: Clients, name: str) -> repo.RolePolicies:
    try:
        return repo.read_role(clients, name)
    except (CloudFailed, CredentialsFailed) as exc:
        raise InvalidInput(f"cannot read role {name}: {exc}") from None


def plan(
    *, session: Session, account_ref: str | int, name: str, rules: s.RepoRules
) -> dict[str, Any]:
    """Dry run: what would be removed and the exact policy diff; nothing is changed in AWS.
    The current policies are kept as a version (so rollback can always reach them)."""
    account = get_account(session=session, ref=account_ref)
    clients = _clients(account)
    live = _read(clients, name)
    row = _role_for(session, account, live)
    _keep_version(session, row, live.documents(), "observed")
    computed = repo.compute(
        live,
        action_usage=row.action_usage or {},
        service_usage=row.service_usage or {},
        rules=rules,
    )
    row.repoable = computed.repoable
    row.updated_at = utcnow()
    return {
        "role": name,
        "skipped": computed.skipped,
        "repoable": computed.repoable,
        "notes": computed.notes,
        "detach": computed.detach,
        "propose_delete": computed.propose_delete,
        "diff": ""
        if computed.skipped
        else repo.policy_diff(live.documents(), computed.documents(), name),
        "problems": repo.size_problems(computed.documents()),
        "policies": computed.documents(),
    }


def schedule(
    *, session: Session, account_ref: str | int, name: str, spec: s.RepoRequest
) -> SecurityRole:
    """Plan and schedule a repo after the waiting period (cancel before then to stop it)."""
    result = plan(session=session, account_ref=account_ref, name=name, rules=spec)
    account = get_account(session=session, ref=account_ref)
    row = get_role(session=session, account=account, name=name)
    if result["skipped"]:
        raise InvalidInput(
            f"role {name} is not repoable: {result['skipped']}", details={"role": name}
        )
    if not result["repoable"]:
        raise Conflict(f"role {name} has nothing to remove", details={"role": name})
    before = _snapshot(row)
    row.state, row.reason = "scheduled", ""
    row.plan = {
        "rules": spec.model_dump(mode="json"),
        "policies": result["policies"],
        "diff": result["diff"],
    }
    row.repo_after = utcnow() + timedelta(hours=spec.wait_hours)
    session.flush()
    record_change(
        session, "schedule_repo", "security_role", row.id, before=before, after=_snapshot(row)
    )
    emit(
        session,
        "security.role.scheduled",
        "security_role",
        row.id,
        {
            "account": account.name,
            "role": name,
            "repo_after": row.repo_after.isoformat(),
            "repoable": row.repoable,
        },
    )
    ensure_schedule(session, APPLY_DUE_SCHEDULE, APPLY_DUE_TASK, interval=300)
    return row


def cancel(*, session: Session, account_ref: str | int, name: str) -> SecurityRole:
    account = get_account(session=session, ref=account_ref)
    row = get_role(session=session, account=account, name=name)
    if row.state != "scheduled":
        raise Conflict(
            f"role {name} has no scheduled repo (state {row.state})", details={"role": name}
        )
    before = _snapshot(row)
    row.state, row.repo_after = "canceled", None
    session.flush()
    record_change(
        session, "cancel_repo", "security_role", row.id, before=before, after=_snapshot(row)
    )
    emit(
        session,
        "security.role.canceled",
        "security_role",
        row.id,
        {"account": account.name, "role": name},
    )
    return row


def repo_now(
    *, session: Session, account_ref: str | int, name: str, rules: s.RepoRules | None = None
) -> dict[str, Any]:
    """Repo a role now: its scheduled plan (recomputed on today's policies), or `rules`."""
    account = get_account(session=session, ref=account_ref)
    clients = _clients(account)
    live = _read(clients, name)
    row = _role_for(session, account, live)
    if rules is None:
        if row.state != "scheduled":
            raise Conflict(
                f"role {name} has no scheduled repo; give rules to repo it now",
                details={"role": name},
            )
        rules = s.RepoRules.model_validate(
            {k: v for k, v in row.plan["rules"].items() if k != "wait_hours"}
        )
    _keep_version(session, row, live.documents(), "observed")
    computed = repo.compute(
        live,
        action_usage=row.action_usage or {},
        service_usage=row.service_usage or {},
        rules=rules,
    )
    if computed.skipped:
        return _fail(session, account, row, f"not repoable: {computed.skipped}")
    wanted = computed.documents()
    return _apply(
        session,
        account,
        row,
        clients,
        live,
        wanted,
        "repo",
        "repoed",
        computed.repoable,
        propose_delete=computed.propose_delete,
    )


def rollback(
    *, session: Session, account_ref: str | int, name: str, version: int
) -> dict[str, Any]:
    """Put a role's policies back to a stored version (in one call; idempotent)."""
    account = get_account(session=session, ref=account_ref)
    row = get_role(session=session, account=account, name=name)
    stored = session.scalar(
        select(SecurityPolicyVersion).where(
            SecurityPolicyVersion.role_id == row.id, SecurityPolicyVersion.number == version
        )
    )
    if stored is None:
        raise NotFound(
            f"role {name} has no version {version}", details={"role": name, "version": version}
        )
    clients = _clients(account)
    live = _read(clients, name)
    wanted = {
        "inline": stored.inline,
        "managed": stored.managed,  # a policy the repo detached is attached again
    }
    return _apply(
        session, account, row, clients, live, wanted, "rollback", "rolled_back", [], version=version
    )


def _fail(
    session: Session, account: SecurityAccount, row: SecurityRole, reason: str
) -> dict[str, Any]:
    before = _snapshot(row)
    row.state, row.reason, row.repo_after = "failed", reason[:2000], None
    session.flush()
    record_change(
        session, "repo_failed", "security_role", row.id, before=before, after=_snapshot(row)
    )
    emit(
        session,
        "security.role.failed",
        "security_role",
        row.id,
        {"account": account.name, "role": row.name, "reason": reason[:500]},
    )
    return {"role": row.name, "state": "failed", "changed": [], "reason": reason}


def _apply(
    session: Session,
    account: SecurityAccount,
    row: SecurityRole,
    clients: Clients,
    live: repo.RolePolicies,
    wanted: dict[str, Any],
    source: str,
    state: str,
    removed: list[str],
    version: int | None = None,
    propose_delete: list[str] | None = None,
) -> dict[str, Any]:
    """`propose_delete`: managed policies the repo detached that nothing else has attached
    (named in the event and the result so an owner can delete them; Popcorn does not)."""
    if live.documents() == wanted:
        if row.state == "scheduled":
            row.state, row.repo_after = state, None
        return {
            "role": row.name,
            "state": row.state,
            "changed": [],
            "reason": "already so: nothing to change",
        }
    problems = repo.size_problems(wanted)
    if problems:
        return _fail(session, account, row, "; ".join(problems))
    try:
        changed = repo.apply(clients, live, wanted)
    except (CloudFailed, CredentialsFailed) as exc:
        return _fail(session, account, row, f"AWS refused the change, role left as it was: {exc}")
    before = _snapshot(row)
    kept = _keep_version(session, row, wanted, source)
    row.state, row.reason, row.repo_after, row.repoed_at = state, "", None, utcnow()
    if source == "repo":
        row.repoable = []
    session.flush()
    record_change(
        session,
        source,
        "security_role",
        row.id,
        before=before,
        after={**_snapshot(row), "changed": changed},
    )
    emit(
        session,
        f"security.role.{state}",
        "security_role",
        row.id,
        {
            "account": account.name,
            "role": row.name,
            "version": kept.number,
            "removed": removed,
            "from_version": version,
            "propose_delete": propose_delete or [],
        },
    )
    return {
        "role": row.name,
        "state": state,
        "changed": changed,
        "version": kept.number,
        "removed": removed,
        "propose_delete": propose_delete or [],
    }


def apply_due(*, session: Session) -> list[dict[str, Any]]:
    """Apply every scheduled repo whose waiting period is over."""
    due = list(
        session.scalars(
            select(SecurityRole).where(
                SecurityRole.state == "scheduled", SecurityRole.repo_after <= utcnow()
            )
        )
    )
    return [repo_now(session=session, account_ref=row.account_id, name=row.name) for row in due]


def list_roles(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(SecurityRole).where(
        *filter_clauses(
            params.filters,
            {
                "account_id": SecurityRole.account_id,
                "name": SecurityRole.name,
                "state": SecurityRole.state,
            },
        )
    )
    return paginate(session, stmt, params, key=SecurityRole.id)


def versions(*, session: Session, account_ref: str | int, name: str) -> list[SecurityPolicyVersion]:
    account = get_account(session=session, ref=account_ref)
    row = get_role(session=session, account=account, name=name)
    return list(
        session.scalars(
            select(SecurityPolicyVersion)
            .where(SecurityPolicyVersion.role_id == row.id)
            .order_by(SecurityPolicyVersion.number)
        )
    )
