"""Issues across revisions: a finding that appears opens an issue, one that disappears fixes
it, one that comes back regresses it; a justification accepts the risk (by whom, why, until
when) and an expired one reopens. An item's score is the sum of its open issues.

Every transition is audited and emitted as `security.issue.opened|regressed|fixed`, so
event rules can page, open incidents or start runbooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import InvalidInput
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id
from popcorn.outbox import emit
from popcorn.security.auditors import Context, audit_item
from popcorn.security.models import SecurityAccount, SecurityIssue, SecurityItem

EXPIRE_TASK = "security.expire_justifications"
EXPIRE_SCHEDULE = "security:expire-justifications"


def _snapshot(issue: SecurityIssue) -> dict[str, Any]:
    return {
        "status": issue.status,
        "score": issue.score,
        "title": issue.title,
        "regressions": issue.regressions,
        "justified_by": issue.justified_by,
        "justification": issue.justification,
        "justified_until": issue.justified_until.isoformat() if issue.justified_until else None,
    }


def _event(session: Session, verb: str, issue: SecurityIssue, item: SecurityItem) -> None:
    emit(
        session,
        f"security.issue.{verb}",
        "security_issue",
        issue.id,
        {
            "account_id": item.account_id,
            "item_id": item.id,
            "item": item.name,
            "watcher": item.watcher,
            "region": item.region,
            "title": issue.title,
            "score": issue.score,
            "auditor": issue.auditor,
            "check": issue.check,
        },
    )


def _transition(
    session: Session,
    issue: SecurityIssue,
    item: SecurityItem,
    verb: str,
    before: dict[str, Any] | None,
) -> None:
    session.flush()
    record_change(session, verb, "security_issue", issue.id, before=before, after=_snapshot(issue))
    _event(session, verb, issue, item)


def audit(
    *, session: Session, item: SecurityItem, config: dict[str, Any] | None, ctx: Context
) -> None:
    """Audit one new revision of an item (`config` None: the item is gone, so all is fixed)."""
    findings = {} if config is None else {f.key: f for f in audit_item(item.watcher, config, ctx)}
    current = {
        i.key: i
        for i in session.scalars(select(SecurityIssue).where(SecurityIssue.item_id == item.id))
    }
    now = utcnow()
    for key, found in findings.items():
        issue = current.get(key)
        if issue is None:
            issue = SecurityIssue(
                item_id=item.id,
                account_id=item.account_id,
                auditor=found.auditor,
                check=found.check,
                key=key,
                title=found.title[:500],
                score=found.score,
                detail=found.detail,
                status="open",
                opened_revision=item.revisions,
                opened_at=now,
            )
            session.add(issue)
            _transition(session, issue, item, "opened", None)
        elif issue.status == "fixed":
            before = _snapshot(issue)
            issue.status, issue.regressions = "open", issue.regressions + 1
            issue.opened_revision, issue.fixed_revision, issue.fixed_at = item.revisions, None, None
            _transition(session, issue, item, "regressed", before)
        elif issue.status == "justified" and issue.justified_until and issue.justified_until <= now:
            before = _snapshot(issue)
            issue.status = "open"
            _transition(session, issue, item, "regressed", before)
    for key, issue in current.items():
        if key not in findings and issue.status in ("open", "justified"):
            before = _snapshot(issue)
            issue.status, issue.fixed_revision, issue.fixed_at = "fixed", item.revisions, now
            _transition(session, issue, item, "fixed", before)
    rescore(session=session, item=item)


def rescore(*, session: Session, item: SecurityItem) -> None:
    session.flush()
    item.score = int(
        session.scalar(
            select(func.coalesce(func.sum(SecurityIssue.score), 0)).where(
                SecurityIssue.item_id == item.id, SecurityIssue.status == "open"
            )
        )
        or 0
    )


def justify(
    *, session: Session, issue_id: int | str, reason: str, until: datetime | None
) -> SecurityIssue:
    """Accept an open issue's risk; with `until`, only until then."""
    issue = get_by_id(session, SecurityIssue, issue_id, label="issue")
    if issue.status == "fixed":
        raise InvalidInput(
            f"issue {issue.id} is fixed: nothing to justify", details={"issue": issue.id}
        )
    if until is not None and until <= utcnow():
        raise InvalidInput("until: must be in the future", details={"until": until.isoformat()})
    item = get_by_id(session, SecurityItem, issue.item_id, label="item")
    before = _snapshot(issue)
    issue.status = "justified"
    issue.justified_by, issue.justification, issue.justified_until = (
        current_actor().name,
        reason,
        until,
    )
    _transition(session, issue, item, "justified", before)
    rescore(session=session, item=item)
    if until is not None:
        from popcorn.security.service import ensure_schedule

        ensure_schedule(session, EXPIRE_SCHEDULE, EXPIRE_TASK, interval=3600)
    return issue


def expire_justifications(*, session: Session) -> int:
    """Reopen every justified issue whose acceptance has run out."""
    now = utcnow()
    due = list(
        session.scalars(
            select(SecurityIssue).where(
                SecurityIssue.status == "justified",
                SecurityIssue.justified_until.is_not(None),
                SecurityIssue.justified_until <= now,
            )
        )
    )
    for issue in due:
        item = get_by_id(session, SecurityItem, issue.item_id, label="item")
        before = _snapshot(issue)
        issue.status = "open"
        _transition(session, issue, item, "regressed", before)
        rescore(session=session, item=item)
    return len(due)


ISSUE_FILTERS = {
    "account_id": SecurityIssue.account_id,
    "item_id": SecurityIssue.item_id,
    "status": SecurityIssue.status,
    "score": SecurityIssue.score,
    "auditor": SecurityIssue.auditor,
    "check": SecurityIssue.check,
}


def list_issues(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(SecurityIssue).where(*filter_clauses(params.filters, ISSUE_FILTERS))
    return paginate(session, stmt, params, key=SecurityIssue.id)


def report(*, session: Session, account: SecurityAccount, limit: int = 100) -> dict[str, Any]:
    """The daily report of one account: totals, then the items with open issues, worst first."""
    items = list(
        session.scalars(
            select(SecurityItem)
            .where(SecurityItem.account_id == account.id, SecurityItem.score > 0)
            .order_by(SecurityItem.score.desc(), SecurityItem.id)
            .limit(limit)
        )
    )
    counts = dict(
        session.execute(
            select(SecurityIssue.status, func.count())
            .where(SecurityIssue.account_id == account.id)
            .group_by(SecurityIssue.status)
        ).all()
    )
    open_by_item: dict[int, list[dict[str, Any]]] = {}
    if items:
        for issue in session.scalars(
            select(SecurityIssue)
            .where(SecurityIssue.item_id.in_([i.id for i in items]), SecurityIssue.status == "open")
            .order_by(SecurityIssue.score.desc(), SecurityIssue.id)
        ):
            open_by_item.setdefault(issue.item_id, []).append(
                {"id": issue.id, "title": issue.title, "score": issue.score}
            )
    total = session.scalar(
        select(func.coalesce(func.sum(SecurityItem.score), 0)).where(
            SecurityItem.account_id == account.id
        )
    )
    return {
        "account": account.name,
        "generated_at": utcnow().isoformat(),
        "status": account.status,
        "total_score": int(total or 0),
        "issues": {k: int(v) for k, v in counts.items()},
        "items": [
            {
                "id": i.id,
                "name": i.name,
                "watcher": i.watcher,
                "region": i.region,
                "score": i.score,
                "issues": open_by_item.get(i.id, []),
            }
            for i in items
        ],
    }
