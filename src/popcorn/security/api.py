"""The security facade for other domains: read models only, never ORM rows.

A runbook can ask how bad an account is and what is open on one item before it acts.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from popcorn.listing import ListParams
from popcorn.schemas import ReadSchema
from popcorn.security import issues, service


class OpenIssue(ReadSchema):
    id: int
    item_id: int
    title: str
    score: int
    auditor: str
    check: str


class AccountPosture(ReadSchema):
    """An account's status and total score, with its worst items' names and scores."""

    account: str
    status: str
    total_score: int
    open_issues: int
    worst: list[tuple[str, int]]


def account_posture(*, session: Session, account: str) -> AccountPosture:
    found = service.get_account(session=session, ref=account)
    report = issues.report(session=session, account=found, limit=10)
    return AccountPosture(
        account=found.name,
        status=found.status,
        total_score=report["total_score"],
        open_issues=report["issues"].get("open", 0),
        worst=[(i["name"], i["score"]) for i in report["items"]],
    )


def open_issues(*, session: Session, item_id: int) -> list[OpenIssue]:
    params = ListParams(limit=1000, filters={"item_id": [str(item_id)], "status": ["open"]})
    page = issues.list_issues(session=session, params=params)
    return [OpenIssue.model_validate(i) for i in page.items]
