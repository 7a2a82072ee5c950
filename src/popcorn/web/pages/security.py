"""Security pages: accounts and their watchers, an account's report, items with their
history and the diff between any two revisions, issues, and roles with their repo state."""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.lookup import parse_id
from popcorn.security import issues, roles, schemas, service
from popcorn.web.views import bp


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


@bp.get("/security")
def security() -> str:
    with session_scope(readonly=True) as session:
        accounts = []
        for account in service.list_accounts(session=session, params=ListParams(limit=1000)).items:
            row = _dump(schemas.AccountRead, account)
            row["watcher_states"] = [
                _dump(schemas.WatcherStateRead, w)
                for w in service.watcher_states(session=session, account=account)
            ]
            row["report"] = issues.report(session=session, account=account, limit=5)
            accounts.append(row)
    return render_template("security/index.html", accounts=accounts)


@bp.get("/security/accounts/<ref>")
def security_account(ref: str) -> str:
    with session_scope(readonly=True) as session:
        account = service.get_account(session=session, ref=ref)
        data = {
            "account": _dump(schemas.AccountRead, account),
            "states": [
                _dump(schemas.WatcherStateRead, w)
                for w in service.watcher_states(session=session, account=account)
            ],
            "report": issues.report(session=session, account=account, limit=200),
        }
    return render_template("security/account.html", **data)


@bp.get("/security/items/<item_id>")
def security_item(item_id: str) -> str:
    with session_scope(readonly=True) as session:
        item = service.get_item(session=session, item_id=item_id)
        revisions = [
            _dump(schemas.RevisionRead, r)
            for r in service.list_revisions(session=session, item_id=item.id)
        ]
        before = parse_id(request.args.get("before", ""))
        after = parse_id(request.args.get("after", ""))
        diff = None
        if item.revisions > 1 or before:
            diff = service.diff(session=session, item_id=item.id, before=before, after=after)
        found = issues.list_issues(
            session=session, params=ListParams(limit=1000, filters={"item_id": [str(item.id)]})
        ).serialize(schemas.IssueRead)["items"]
        data = {"item": _dump(schemas.ItemRead, item), "revisions": revisions, "diff": diff}
    return render_template("security/item.html", issues=found, **data)


@bp.get("/security/issues")
def security_issues() -> str:
    status = request.args.get("status", "open")
    with session_scope(readonly=True) as session:
        page = issues.list_issues(
            session=session, params=ListParams(limit=1000, filters={"status": [status]})
        )
        rows = sorted(page.serialize(schemas.IssueRead)["items"], key=lambda i: -i["score"])
    return render_template("security/issues.html", issues=rows, status=status)


@bp.get("/security/roles")
def security_roles() -> str:
    with session_scope(readonly=True) as session:
        page = roles.list_roles(session=session, params=ListParams(limit=1000))
        rows = page.serialize(schemas.RoleRead)["items"]
    return render_template("security/roles.html", roles=rows)
