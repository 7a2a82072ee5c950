"""Security watch: accounts, polls per (account, watcher), items with revisions stored only on
change, readable diffs between any two revisions. Auditing the changed items is in
`issues.py`; least privilege in `usage.py` and `repo.py`.

A poll talks to AWS (or git) outside any transaction, then stores each watcher's result in
its own transaction, so one slow or failing watcher does not hold the others, and a
credentials failure marks the account degraded without touching other accounts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change, recording_update
from popcorn.db import session_scope, utcnow
from popcorn.errors import Forbidden, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id, get_by_ref
from popcorn.outbound import check_url
from popcorn.outbox import emit
from popcorn.security import githost, gitwatch, issues
from popcorn.security import schemas as s
from popcorn.security.auditors import Context, networks
from popcorn.security.cloud import CredentialsFailed, Target, keystore
from popcorn.security.models import (
    SecurityAccount,
    SecurityItem,
    SecurityRevision,
    SecurityWatcherState,
)
from popcorn.security.watchers import AWS_WATCHERS, GIT_WATCHER, WATCHERS, Observed

POLL_TASK = "security.poll"
REPORT_TASK = "security.daily_report"
REPORT_SCHEDULE = "security:daily-report"


def ensure_schedule(
    session: Session, name: str, task: str, *, cron: str | None = None, interval: int | None = None
) -> None:
    """Create one of the domain's own repeating jobs the first time it is needed."""
    jobs.ensure_schedule(
        session=session, name=name, task=task, queue="low", cron=cron, interval_seconds=interval
    )


def daily_reports(*, session: Session) -> list[dict[str, Any]]:
    """Every AWS or Git account's report, emitted as `security.report.daily` (worst first)."""
    out = []
    for account in session.scalars(select(SecurityAccount).order_by(SecurityAccount.name)):
        found = issues.report(session=session, account=account, limit=20)
        emit(session, "security.report.daily", "security_account", account.id, found)
        out.append({"account": account.name, "total_score": found["total_score"]})
    return out


def account_snapshot(a: SecurityAccount) -> dict[str, Any]:
    """What the audit log keeps of an account: never the secret, only whether there is one."""
    return {
        "name": a.name,
        "kind": a.kind,
        "profile": a.profile,
        "access_key_id": a.access_key_id,
        "has_secret": bool(a.secret_sealed),
        "role_arn": a.role_arn,
        "regions": list(a.regions),
        "endpoint_url": a.endpoint_url,
        "repositories": list(a.repositories),
        "git_host": a.git_host,
        "watchers": list(a.watchers),
        "interval_seconds": a.interval_seconds,
        "friendly_accounts": list(a.friendly_accounts),
        "allowed_networks": list(a.allowed_networks),
    }


def _schedule_name(account: str, watcher: str) -> str:
    return f"security:{account}:{watcher}"


def _check_networks(cidrs: Sequence[str]) -> None:
    try:
        networks(list(cidrs))
    except ValueError as exc:
        raise InvalidInput(f"allowed_networks: {exc}") from None


def _secret(spec: s.AccountCreate) -> str:
    """The one secret an account seals: AWS secret key, or the Git host API token."""
    return spec.git_token if spec.kind == "git" else spec.secret_access_key


def create_account(*, session: Session, spec: s.AccountCreate) -> SecurityAccount:
    if session.scalar(select(SecurityAccount.id).where(SecurityAccount.name == spec.name)):
        from popcorn.errors import Conflict

        raise Conflict(f"an account named {spec.name!r} exists", details={"name": spec.name})
    if spec.endpoint_url:
        check_url(spec.endpoint_url, purpose="AWS endpoint")
    if spec.git_api_url:
        check_url(spec.git_api_url, purpose="Git host API")
    for repo in spec.repositories:
        gitwatch.check_repository(repo)
    _check_networks(spec.allowed_networks)
    watchers = [GIT_WATCHER] if spec.kind == "git" else list(spec.watchers or AWS_WATCHERS)
    account = SecurityAccount(
        name=spec.name,
        kind=spec.kind,
        aws_account_id=spec.aws_account_id,
        profile=spec.profile,
        access_key_id=spec.access_key_id,
        secret_sealed=keystore().encrypt(secret) if (secret := _secret(spec)) else "",
        role_arn=spec.role_arn,
        regions=list(dict.fromkeys(spec.regions)) if spec.kind == "aws" else [],
        endpoint_url=spec.git_api_url if spec.kind == "git" else spec.endpoint_url,
        repositories=list(spec.repositories),
        git_host=spec.git_host,
        watchers=watchers,
        interval_seconds=spec.interval_seconds,
        friendly_accounts=list(spec.friendly_accounts),
        allowed_networks=list(spec.allowed_networks),
    )
    session.add(account)
    session.flush()
    for watcher in watchers:
        session.add(SecurityWatcherState(account_id=account.id, watcher=watcher))
        jobs.create_schedule(
            session=session,
            name=_schedule_name(account.name, watcher),
            task=POLL_TASK,
            arguments={"account_id": account.id, "watchers": [watcher]},
            queue="low",
            interval_seconds=spec.interval_seconds,
        )
    ensure_schedule(session, REPORT_SCHEDULE, REPORT_TASK, cron="0 6 * * *")
    record_change(
        session, "create", "security_account", account.id, after=account_snapshot(account)
    )
    emit(
        session, "security.account.created", "security_account", account.id, {"name": account.name}
    )
    return account


def get_account(*, session: Session, ref: str | int) -> SecurityAccount:
    return get_by_ref(session, SecurityAccount, ref, label="account")


def list_accounts(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(SecurityAccount).where(
        *filter_clauses(
            params.filters,
            {
                "name": SecurityAccount.name,
                "kind": SecurityAccount.kind,
                "status": SecurityAccount.status,
            },
        )
    )
    return paginate(session, stmt, params, key=SecurityAccount.id)


def update_account(*, session: Session, ref: str | int, spec: s.AccountUpdate) -> SecurityAccount:
    account = get_account(session=session, ref=ref)
    if spec.allowed_networks is not None:
        _check_networks(spec.allowed_networks)
    with recording_update(session, "security_account", account, account_snapshot):
        for key in spec.model_fields_set:
            value = getattr(spec, key)
            if value is not None:
                setattr(account, key, list(value) if isinstance(value, list) else value)
    if spec.interval_seconds is not None:
        for sched in jobs.list_schedules(session=session):
            if sched.name.startswith(f"security:{account.name}:"):
                sched.interval_seconds = spec.interval_seconds
    emit(
        session, "security.account.updated", "security_account", account.id, {"name": account.name}
    )
    return account


def delete_account(*, session: Session, ref: str | int) -> SecurityAccount:
    account = get_account(session=session, ref=ref)
    for sched in jobs.list_schedules(session=session):
        if sched.name.startswith(f"security:{account.name}:"):
            jobs.delete_schedule(session=session, name=sched.name)
    record_change(
        session, "delete", "security_account", account.id, before=account_snapshot(account)
    )
    emit(
        session, "security.account.deleted", "security_account", account.id, {"name": account.name}
    )
    session.delete(account)
    return account


def watcher_states(*, session: Session, account: SecurityAccount) -> list[SecurityWatcherState]:
    return list(
        session.scalars(
            select(SecurityWatcherState)
            .where(SecurityWatcherState.account_id == account.id)
            .order_by(SecurityWatcherState.watcher)
        )
    )


def target(account: SecurityAccount) -> Target:
    return Target(
        profile=account.profile,
        access_key_id=account.access_key_id,
        secret_sealed=account.secret_sealed,
        role_arn=account.role_arn,
        endpoint_url=account.endpoint_url,
    )


def audit_context(account: SecurityAccount) -> Context:
    return Context(
        account_id=account.aws_account_id,
        friendly_accounts=frozenset(account.friendly_accounts),
        allowed_networks=networks(list(account.allowed_networks)),
    )


def enqueue_poll(*, session: Session, ref: str | int, watchers: Sequence[str] | None) -> int:
    account = get_account(session=session, ref=ref)
    job = jobs.enqueue(
        session,
        POLL_TASK,
        arguments={"account_id": account.id, "watchers": list(watchers or [])},
        queue="low",
    )
    return job.id


# --- polling --------------------------------------------------------------------------


def poll(account_id: int, watchers: Sequence[str] | None = None) -> dict[str, Any]:
    """Poll the account's watchers (all, or those named): each stored in its own transaction.
    Returns per watcher: status, items, changed, retries and error."""
    with session_scope(readonly=True) as session:
        account = get_by_id(session, SecurityAccount, account_id, label="account")
        chosen = [w for w in account.watchers if not watchers or w in watchers]
        unknown = set(watchers or []) - set(account.watchers)
        if unknown:
            raise InvalidInput(f"account {account.name} has no watcher {sorted(unknown)[0]!r}")
        kind, regions, repos, tgt = (
            account.kind,
            list(account.regions),
            list(account.repositories),
            target(account),
        )
        api = _host_api(account)
    results: dict[str, Any] = {}
    if kind == "git":
        for watcher in chosen:
            results[watcher] = _poll_git(account_id, repos, api)
        return results
    if tgt.endpoint_url:
        try:  # the admin's allow-list may have changed since the account was made
            check_url(tgt.endpoint_url, purpose="AWS endpoint")
        except (Forbidden, InvalidInput) as exc:
            _degrade(account_id, chosen, f"endpoint not allowed: {exc.message}")
            return {w: {"status": "failed", "error": exc.message} for w in chosen}
    try:
        creds = tgt.credentials()  # one assume-role for every region
        clients = {region: tgt.clients(region, creds) for region in regions or ["us-east-1"]}
        identity = clients[next(iter(clients))].call(
            lambda: clients[next(iter(clients))]("sts").get_caller_identity()
        )
    except CredentialsFailed as exc:
        _degrade(account_id, chosen, str(exc))
        return {w: {"status": "failed", "error": str(exc)} for w in chosen}
    with session_scope() as session:
        account = get_by_id(session, SecurityAccount, account_id, label="account")
        if not account.aws_account_id:
            account.aws_account_id = identity.get("Account", "")
    for watcher in chosen:
        results[watcher] = _poll_watcher(account_id, watcher, clients)
    return results


def _degrade(account_id: int, watchers: Sequence[str], reason: str) -> None:
    with session_scope() as session:
        account = get_by_id(session, SecurityAccount, account_id, label="account")
        if account.status != "degraded":
            emit(
                session,
                "security.account.degraded",
                "security_account",
                account.id,
                {"name": account.name, "reason": reason[:500]},
            )
        account.status, account.status_reason = "degraded", reason[:2000]
        for state in watcher_states(session=session, account=account):
            if state.watcher in watchers:
                state.status, state.error, state.last_run_at = "failed", reason[:2000], utcnow()


def _poll_watcher(account_id: int, watcher: str, clients: dict[str, Any]) -> dict[str, Any]:
    spec = WATCHERS[watcher]
    started = time.monotonic()
    observed: dict[str, list[Observed]] = {}
    errors: dict[str, str] = {}
    credentials_error = ""
    region_clients = (
        clients.items() if spec.regional else [("global", next(iter(clients.values())))]
    )
    retries = 0
    for region, region_client in region_clients:
        before = region_client.retried[0]
        try:
            observed[region] = spec.observe(region_client)
        except CredentialsFailed as exc:
            credentials_error = errors[region] = str(exc)[:1000]
        except Exception as exc:
            errors[region] = f"{type(exc).__name__}: {exc}"[:1000]
        retries += region_client.retried[0] - before
    with session_scope() as session:
        account = get_by_id(session, SecurityAccount, account_id, label="account")
        changed = 0
        for region, items in observed.items():
            changed += store(
                session=session, account=account, watcher=watcher, region=region, observed=items
            )
        state = session.scalar(
            select(SecurityWatcherState).where(
                SecurityWatcherState.account_id == account_id,
                SecurityWatcherState.watcher == watcher,
            )
        ) or SecurityWatcherState(account_id=account_id, watcher=watcher)
        session.add(state)
        now = utcnow()
        state.status = "ok" if not errors else ("partial" if observed else "failed")
        state.error = "; ".join(f"{r}: {e}" for r, e in errors.items())[:4000]
        state.retries = retries
        state.items = sum(len(v) for v in observed.values())
        state.changed = changed
        state.duration_s = round(time.monotonic() - started, 3)
        state.last_run_at = now
        if observed:
            state.last_ok_at = now
        if credentials_error:
            if account.status != "degraded":
                emit(
                    session,
                    "security.account.degraded",
                    "security_account",
                    account.id,
                    {"name": account.name, "reason": credentials_error[:500]},
                )
            account.status, account.status_reason = "degraded", credentials_error
        elif observed and account.status != "degraded":
            account.status, account.status_reason = "ok", ""
        return {
            "status": state.status,
            "items": state.items,
            "changed": changed,
            "retries": retries,
            "error": state.error,
        }


def _host_api(account: SecurityAccount) -> githost.HostApi | None:
    if account.kind != "git" or not account.git_host:
        return None
    token = keystore().decrypt_text(account.secret_sealed) if account.secret_sealed else ""
    return githost.HostApi(kind=account.git_host, url=account.endpoint_url, token=token)


def _poll_git(account_id: int, repos: Sequence[str], api: githost.HostApi | None) -> dict[str, Any]:
    started = time.monotonic()
    observed: list[Observed] = []
    errors: list[str] = []
    for repo in repos:
        try:
            observed.append(gitwatch.observe(repo, api))
        except Exception as exc:
            errors.append(f"{repo}: {exc}"[:500])
    with session_scope() as session:
        account = get_by_id(session, SecurityAccount, account_id, label="account")
        failed = {r.split(": ", 1)[0] for r in errors}
        changed = store(
            session=session,
            account=account,
            watcher=GIT_WATCHER,
            region="global",
            observed=observed,
            keep=failed,
        )
        state = session.scalar(
            select(SecurityWatcherState).where(
                SecurityWatcherState.account_id == account_id,
                SecurityWatcherState.watcher == GIT_WATCHER,
            )
        ) or SecurityWatcherState(account_id=account_id, watcher=GIT_WATCHER)
        session.add(state)
        state.status = "ok" if not errors else ("partial" if observed else "failed")
        state.error, state.items, state.changed = "; ".join(errors)[:4000], len(observed), changed
        state.duration_s, state.last_run_at = round(time.monotonic() - started, 3), utcnow()
        if observed:
            state.last_ok_at = state.last_run_at
            account.status, account.status_reason = "ok", ""
        return {
            "status": state.status,
            "items": len(observed),
            "changed": changed,
            "retries": 0,
            "error": state.error,
        }


def digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def store(
    *,
    session: Session,
    account: SecurityAccount,
    watcher: str,
    region: str,
    observed: Sequence[Observed],
    keep: set[str] | frozenset[str] = frozenset(),
) -> int:
    """Store what one listing saw: a revision for each new or changed item, a closing
    revision for each item no longer there (unless in `keep`, not listed this time).
    Changed items are audited. Returns how many items changed."""
    existing = {
        item.identifier: item
        for item in session.scalars(
            select(SecurityItem).where(
                SecurityItem.account_id == account.id,
                SecurityItem.watcher == watcher,
                SecurityItem.region == region,
            )
        )
    }
    ctx = audit_context(account)
    changed = 0
    seen = set()
    for obs in observed:
        seen.add(obs.identifier)
        config = obs.config
        dig = digest(config)
        item = existing.get(obs.identifier)
        if item is not None and item.active and item.digest == dig:
            continue
        if item is None:
            item = SecurityItem(
                account_id=account.id,
                watcher=watcher,
                region=region,
                identifier=obs.identifier[:500],
                name=obs.name[:300],
                revisions=0,
            )
            session.add(item)
            session.flush()
        _revise(session, item, config, dig, active=True)
        issues.audit(session=session, item=item, config=config, ctx=ctx)
        changed += 1
    for ident, item in existing.items():
        if ident not in seen and item.active and ident not in keep:
            _revise(session, item, {}, digest({}), active=False)
            issues.audit(session=session, item=item, config=None, ctx=ctx)
            changed += 1
    return changed


def _revise(
    session: Session, item: SecurityItem, config: dict[str, Any], dig: str, *, active: bool
) -> None:
    item.revisions += 1
    item.digest, item.active, item.changed_at = dig, active, utcnow()
    session.add(
        SecurityRevision(
            item_id=item.id, number=item.revisions, active=active, config=config, digest=dig
        )
    )
    session.flush()
    verb = "created" if item.revisions == 1 else "changed" if active else "deleted"
    emit(
        session,
        f"security.item.{verb}",
        "security_item",
        item.id,
        {
            "account_id": item.account_id,
            "watcher": item.watcher,
            "name": item.name,
            "revision": item.revisions,
        },
    )


# --- items, revisions, diffs ----------------------------------------------------------

ITEM_FILTERS = {
    "account_id": SecurityItem.account_id,
    "watcher": SecurityItem.watcher,
    "region": SecurityItem.region,
    "name": SecurityItem.name,
    "active": SecurityItem.active,
    "score": SecurityItem.score,
}


def list_items(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(SecurityItem).where(*filter_clauses(params.filters, ITEM_FILTERS))
    return paginate(session, stmt, params, key=SecurityItem.id)


def get_item(*, session: Session, item_id: int | str) -> SecurityItem:
    return get_by_id(session, SecurityItem, item_id, label="item")


def list_revisions(*, session: Session, item_id: int | str) -> list[SecurityRevision]:
    item = get_item(session=session, item_id=item_id)
    return list(
        session.scalars(
            select(SecurityRevision)
            .where(SecurityRevision.item_id == item.id)
            .order_by(SecurityRevision.number)
        )
    )


def get_revision(*, session: Session, item_id: int, number: int) -> SecurityRevision:
    found = session.scalar(
        select(SecurityRevision).where(
            SecurityRevision.item_id == item_id, SecurityRevision.number == number
        )
    )
    if found is None:
        raise NotFound(
            f"item {item_id} has no revision {number}",
            details={"item": item_id, "revision": number},
        )
    return found


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(item)": value}


def diff(
    *, session: Session, item_id: int | str, before: int | None = None, after: int | None = None
) -> dict[str, Any]:
    """What changed between two revisions (default: the last two), as a list of paths
    (added, removed, changed) and as a unified diff of the pretty-printed configurations."""
    item = get_item(session=session, item_id=item_id)
    after = after or item.revisions
    before = before or max(after - 1, 1)
    old = get_revision(session=session, item_id=item.id, number=before)
    new = get_revision(session=session, item_id=item.id, number=after)
    a, b = _flatten(old.config), _flatten(new.config)
    changes = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            changes.append({"path": path, "op": "added", "after": b[path]})
        elif path not in b:
            changes.append({"path": path, "op": "removed", "before": a[path]})
        elif a[path] != b[path]:
            changes.append({"path": path, "op": "changed", "before": a[path], "after": b[path]})
    text = "".join(
        difflib.unified_diff(
            json.dumps(old.config, indent=2, sort_keys=True).splitlines(keepends=True),
            json.dumps(new.config, indent=2, sort_keys=True).splitlines(keepends=True),
            fromfile=f"{item.name}@{before}",
            tofile=f"{item.name}@{after}",
        )
    )
    return {"item_id": item.id, "before": before, "after": after, "changes": changes, "text": text}
