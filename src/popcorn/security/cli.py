"""`popcorn security …`: watch accounts, read their issues and history, repo roles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from popcorn.cli import PopcornGroup, json_option, output, with_actor
from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.security import issues, roles, service
from popcorn.security import schemas as s

ACCOUNT_COLUMNS = ["id", "name", "kind", "aws_account_id", "regions", "status", "status_reason"]
ITEM_COLUMNS = ["id", "watcher", "region", "name", "active", "score", "revisions", "changed_at"]
ISSUE_COLUMNS = ["id", "item_id", "status", "score", "title", "regressions", "justified_until"]
ROLE_COLUMNS = ["id", "account_id", "name", "state", "repoable", "repo_after", "versions", "reason"]
STATE_COLUMNS = ["watcher", "status", "items", "changed", "retries", "duration_s", "error"]


@click.group("security", cls=PopcornGroup, invoke_without_command=True)
@click.pass_context
def group(ctx: click.Context) -> None:
    """Cloud and Git security: watch accounts, audit changes, least privilege for roles."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(accounts)


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


def _filters(**given: Any) -> dict[str, list[str]]:
    return {k: [str(v)] for k, v in given.items() if v is not None}


@group.command("accounts")
@json_option
def accounts(as_json: bool) -> None:
    """Watched accounts and whether their last poll worked."""
    with session_scope(readonly=True) as session:
        rows = service.list_accounts(session=session, params=ListParams(limit=1000)).items
        data = [_dump(s.AccountRead, r) for r in rows]
    output({"items": data} if as_json else data, as_json=as_json, columns=ACCOUNT_COLUMNS)


@group.command("add-account")
@click.argument("name")
@click.option(
    "--git",
    "repositories",
    multiple=True,
    help="A Git repository (path or URL); makes a Git account.",
)
@click.option(
    "--git-host",
    type=click.Choice(["github", "gitlab"]),
    default=None,
    help="The Git host's API to read branch protection from (with --git-api-url).",
)
@click.option(
    "--git-api-url",
    default="",
    help="e.g. https://api.github.com or https://gitlab.example.com/api/v4 (allowed by the admin).",
)
@click.option(
    "--git-token",
    default="",
    envvar="POPCORN_GIT_TOKEN",
    help="API token for the Git host, sealed at rest (or POPCORN_GIT_TOKEN).",
)
@click.option("--role-arn", default="", help="Role to assume in the account.")
@click.option("--profile", default="", help="AWS profile to use.")
@click.option("--access-key-id", default="", help="Access key id (the secret is sealed at rest).")
@click.option(
    "--secret-access-key",
    default="",
    envvar="POPCORN_AWS_SECRET_ACCESS_KEY",
    help="Secret key (or POPCORN_AWS_SECRET_ACCESS_KEY).",
)
@click.option("--region", "regions", multiple=True, help="Region (repeatable; default us-east-1).")
@click.option(
    "--endpoint-url", default="", help="An S3/IAM-compatible endpoint (allowed by the admin)."
)
@click.option("--watcher", "watchers", multiple=True, help="Only these watchers (repeatable).")
@click.option(
    "--interval", default=3600, show_default=True, type=int, help="Seconds between polls."
)
@click.option("--friendly", "friendly", multiple=True, help="A friendly account id (repeatable).")
@click.option("--allow-network", "networks", multiple=True, help="An allowed CIDR (repeatable).")
@json_option
@with_actor
def add_account(
    name: str,
    repositories: tuple[str, ...],
    git_host: str | None,
    git_api_url: str,
    git_token: str,
    role_arn: str,
    profile: str,
    access_key_id: str,
    secret_access_key: str,
    regions: tuple[str, ...],
    endpoint_url: str,
    watchers: tuple[str, ...],
    interval: int,
    friendly: tuple[str, ...],
    networks: tuple[str, ...],
    as_json: bool,
) -> None:
    """Watch an AWS account or a set of Git repositories (polled every --interval seconds)."""
    spec = s.AccountCreate.model_validate(
        {
            "name": name,
            "kind": "git" if repositories else "aws",
            "repositories": list(repositories),
            "git_host": git_host or "",
            "git_api_url": git_api_url,
            "git_token": git_token,
            "role_arn": role_arn,
            "profile": profile,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            "regions": list(regions) or ["us-east-1"],
            "endpoint_url": endpoint_url,
            "watchers": list(watchers) or None,
            "interval_seconds": interval,
            "friendly_accounts": list(friendly),
            "allowed_networks": list(networks),
        }
    )
    with session_scope() as session:
        output(
            _dump(s.AccountRead, service.create_account(session=session, spec=spec)),
            as_json=as_json,
        )


@group.command("remove-account")
@click.argument("account")
@with_actor
def remove_account(account: str) -> None:
    """Stop watching an account (its items and their history are removed)."""
    from rich.markup import escape

    from popcorn.cli import console

    with session_scope() as session:
        service.delete_account(session=session, ref=account)
    console.print(f"removed account {escape(account)}")


@group.command("poll")
@click.argument("account")
@click.option("--watcher", "watchers", multiple=True, help="Only these watchers.")
@click.option("--background", is_flag=True, help="Queue a job instead of polling here.")
@json_option
@with_actor
def poll(account: str, watchers: tuple[str, ...], background: bool, as_json: bool) -> None:
    """Poll an account now: list, normalise, store changes, audit them."""
    with session_scope() as session:
        found = service.get_account(session=session, ref=account)
        if background:
            job = service.enqueue_poll(session=session, ref=found.id, watchers=watchers)
        account_id = found.id
    if background:
        output({"job_id": job}, as_json=as_json)
        return
    result = service.poll(account_id, list(watchers) or None)
    rows = [{"watcher": w, **r} for w, r in result.items()]
    output(
        {"items": rows} if as_json else rows,
        as_json=as_json,
        columns=[*STATE_COLUMNS[:-2], "error"],
    )


@group.command("watchers")
@click.argument("account")
@json_option
def watchers_cmd(account: str, as_json: bool) -> None:
    """How the last poll of each watcher of an account went."""
    with session_scope(readonly=True) as session:
        found = service.get_account(session=session, ref=account)
        rows = [
            _dump(s.WatcherStateRead, r)
            for r in service.watcher_states(session=session, account=found)
        ]
    output({"items": rows} if as_json else rows, as_json=as_json, columns=STATE_COLUMNS)


@group.command("items")
@click.option("--account", help="Account name or id.")
@click.option("--watcher", help="Only this kind of item.")
@click.option("--deleted", is_flag=True, help="Show deleted items too.")
@click.option("--min-score", type=int, help="Only items scoring at least this.")
@json_option
def items(
    account: str | None, watcher: str | None, deleted: bool, min_score: int | None, as_json: bool
) -> None:
    """Watched items with their score (sum of open issues)."""
    with session_scope(readonly=True) as session:
        account_id = service.get_account(session=session, ref=account).id if account else None
        filters = _filters(account_id=account_id, watcher=watcher, score__gte=min_score)
        if not deleted:
            filters["active"] = ["true"]
        page = service.list_items(
            session=session, params=ListParams(limit=100_000, filters=filters)
        )
        rows = page.serialize(s.ItemRead)["items"]
    output({"items": rows} if as_json else rows, as_json=as_json, columns=ITEM_COLUMNS)


@group.command("history")
@click.argument("item", type=int)
@json_option
def history(item: int, as_json: bool) -> None:
    """Every revision of an item (deleted items keep theirs)."""
    with session_scope(readonly=True) as session:
        rows = [
            _dump(s.RevisionRead, r) for r in service.list_revisions(session=session, item_id=item)
        ]
    if as_json:
        output({"items": rows}, as_json=True)
        return
    output([{k: r[k] for k in ("number", "active", "created_at")} for r in rows], as_json=False)


@group.command("diff")
@click.argument("item", type=int)
@click.option("--before", type=int, help="Revision number (default: the one before --after).")
@click.option("--after", type=int, help="Revision number (default: the latest).")
@json_option
def diff(item: int, before: int | None, after: int | None, as_json: bool) -> None:
    """What changed in an item between two revisions."""
    with session_scope(readonly=True) as session:
        found = service.diff(session=session, item_id=item, before=before, after=after)
    if as_json:
        output(found, as_json=True)
    else:
        click.echo(found["text"] or "no difference")


@group.command("issues")
@click.option("--account", help="Account name or id.")
@click.option(
    "--status", type=click.Choice(["open", "fixed", "justified"]), default="open", show_default=True
)
@click.option("--min-score", type=int)
@json_option
def issues_cmd(account: str | None, status: str, min_score: int | None, as_json: bool) -> None:
    """Issues found by the auditors."""
    with session_scope(readonly=True) as session:
        account_id = service.get_account(session=session, ref=account).id if account else None
        filters = _filters(account_id=account_id, status=status, score__gte=min_score)
        page = issues.list_issues(
            session=session, params=ListParams(limit=100_000, filters=filters)
        )
        rows = page.serialize(s.IssueRead)["items"]
    output({"items": rows} if as_json else rows, as_json=as_json, columns=ISSUE_COLUMNS)


@group.command("justify")
@click.argument("issue", type=int)
@click.option("--reason", required=True, help="Why the risk is accepted.")
@click.option("--until", type=click.DateTime(), help="Until when (UTC); it reopens after.")
@json_option
@with_actor
def justify(issue: int, reason: str, until: datetime | None, as_json: bool) -> None:
    """Accept an issue's risk (recorded with who, why and until when)."""

    spec = s.JustifyRequest(reason=reason, until=until.replace(tzinfo=UTC) if until else None)
    with session_scope() as session:
        found = issues.justify(
            session=session, issue_id=issue, reason=spec.reason, until=spec.until
        )
        output(_dump(s.IssueRead, found), as_json=as_json)


@group.command("report")
@click.argument("account")
@json_option
def report(account: str, as_json: bool) -> None:
    """An account's report: totals, then the items with open issues, worst first."""
    from rich.markup import escape

    from popcorn.cli import console

    with session_scope(readonly=True) as session:
        found = issues.report(
            session=session, account=service.get_account(session=session, ref=account)
        )
    if as_json:
        output(found, as_json=True)
        return
    console.print(
        f"[bold]{escape(found['account'])}[/bold] ({escape(found['status'])}): total score "
        f"{found['total_score']}, issues {escape(str(found['issues']))}"
    )
    output(
        [
            {
                "score": i["score"],
                "watcher": i["watcher"],
                "name": i["name"],
                "issues": "; ".join(x["title"] for x in i["issues"][:3]),
            }
            for i in found["items"]
        ],
        as_json=False,
    )


@group.command("usage")
@click.argument("account")
@click.option("--bucket", default="", help="S3 bucket holding the CloudTrail files.")
@click.option("--prefix", default="", help="Key prefix in the bucket.")
@click.option(
    "--dir", "directory", default="", help="A local directory of CloudTrail files instead."
)
@click.option("--access-advisor", is_flag=True, help="Also ask IAM Access Advisor for each role.")
@json_option
@with_actor
def usage(
    account: str, bucket: str, prefix: str, directory: str, access_advisor: bool, as_json: bool
) -> None:
    """Read CloudTrail files into each role's last use of each action."""
    from popcorn.cli import console

    spec = s.UsageRequest(
        bucket=bucket, prefix=prefix, directory=directory, access_advisor=access_advisor
    )
    with session_scope() as session:
        found = roles.import_usage(session=session, account_ref=account, spec=spec)
    if as_json:
        output(found, as_json=True)
        return
    rate = found["records"] / found["seconds"] if found["seconds"] else 0.0
    console.print(
        f"{found['files']} files ({found['files_skipped']} unreadable), "
        f"{found['records']:,} records ({found['skipped']:,} malformed skipped, "
        f"{found['denied']:,} denied), {found['roles']} roles, "
        f"{found['seconds']:.2f} s ({rate:,.0f} records/s)"
    )


@group.command("roles")
@click.option("--account", help="Account name or id.")
@click.option(
    "--state",
    type=click.Choice(["never", "scheduled", "repoed", "rolled_back", "failed", "canceled"]),
)
@json_option
def roles_cmd(account: str | None, state: str | None, as_json: bool) -> None:
    """Roles with usage data and where their repo stands."""
    with session_scope(readonly=True) as session:
        account_id = service.get_account(session=session, ref=account).id if account else None
        page = roles.list_roles(
            session=session,
            params=ListParams(limit=100_000, filters=_filters(account_id=account_id, state=state)),
        )
        rows = page.serialize(s.RoleRead)["items"]
    if not as_json:
        for row in rows:
            row["repoable"] = len(row["repoable"])
    output({"items": rows} if as_json else rows, as_json=as_json, columns=ROLE_COLUMNS)


def rule_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--unused-days",
            default=90,
            show_default=True,
            type=int,
            help="Unused for this long is removed.",
        ),
        click.option(
            "--min-age-days",
            default=90,
            show_default=True,
            type=int,
            help="Younger roles are left alone.",
        ),
        click.option("--blocklist", multiple=True, help="A role name never to repo (repeatable)."),
        click.option(
            "--exclude",
            "exclude_globs",
            multiple=True,
            help="A role-name glob to skip (repeatable).",
        ),
        click.option(
            "--opt-out-tag",
            default="popcorn-norepo",
            show_default=True,
            help="Roles with this tag are skipped.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _rules(kwargs: dict[str, Any]) -> s.RepoRules:
    return s.RepoRules(
        unused_days=kwargs.pop("unused_days"),
        min_age_days=kwargs.pop("min_age_days"),
        blocklist=list(kwargs.pop("blocklist")),
        exclude_globs=list(kwargs.pop("exclude_globs")),
        opt_out_tag=kwargs.pop("opt_out_tag"),
    )


@group.command("plan")
@click.argument("account")
@click.argument("role")
@rule_options
@json_option
@with_actor
def plan(account: str, role: str, as_json: bool, **kwargs: Any) -> None:
    """Dry run: what would be removed from a role, and the exact policy diff."""
    from rich.markup import escape

    from popcorn.cli import console

    with session_scope() as session:
        found = roles.plan(session=session, account_ref=account, name=role, rules=_rules(kwargs))
    if as_json:
        output(found, as_json=True)
        return
    if found["skipped"]:
        console.print(f"{escape(role)} is skipped: {escape(found['skipped'])}")
        return
    console.print(f"repoable: {escape(', '.join(found['repoable']) or 'nothing')}")
    for line in found["notes"] + found["problems"]:
        console.print(f"note: {escape(line)}")
    click.echo(found["diff"] or "no change")


@group.command("schedule")
@click.argument("account")
@click.argument("role")
@rule_options
@click.option("--wait-hours", default=24.0, show_default=True, type=float, help="Waiting period.")
@json_option
@with_actor
def schedule(account: str, role: str, wait_hours: float, as_json: bool, **kwargs: Any) -> None:
    """Schedule a role's repo after a waiting period (cancel before then to stop it)."""
    spec = s.RepoRequest(**_rules(kwargs).model_dump(), wait_hours=wait_hours)
    with session_scope() as session:
        output(
            _dump(
                s.RoleRead,
                roles.schedule(session=session, account_ref=account, name=role, spec=spec),
            ),
            as_json=as_json,
        )


@group.command("cancel")
@click.argument("account")
@click.argument("role")
@with_actor
def cancel(account: str, role: str) -> None:
    """Cancel a role's scheduled repo."""
    from rich.markup import escape

    from popcorn.cli import console

    with session_scope() as session:
        roles.cancel(session=session, account_ref=account, name=role)
    console.print(f"canceled the repo of {escape(role)}")


def _applied(found: dict[str, Any], as_json: bool) -> None:
    output(found, as_json=as_json)
    if found["state"] == "failed":
        raise click.ClickException(found["reason"])


@group.command("repo")
@click.argument("account")
@click.argument("role")
@rule_options
@json_option
@with_actor
def repo_cmd(account: str, role: str, as_json: bool, **kwargs: Any) -> None:
    """Repo a role now: rewrite its inline and managed policies to what it uses."""
    with session_scope() as session:
        found = roles.repo_now(
            session=session, account_ref=account, name=role, rules=_rules(kwargs)
        )
    _applied(found, as_json)


@group.command("rollback")
@click.argument("account")
@click.argument("role")
@click.option(
    "--version", "version", required=True, type=int, help="A stored version (see `versions`)."
)
@json_option
@with_actor
def rollback(account: str, role: str, version: int, as_json: bool) -> None:
    """Put a role's policies back to a stored version."""
    with session_scope() as session:
        found = roles.rollback(session=session, account_ref=account, name=role, version=version)
    _applied(found, as_json)


@group.command("versions")
@click.argument("account")
@click.argument("role")
@json_option
def versions(account: str, role: str, as_json: bool) -> None:
    """Every policy version of a role that Popcorn keeps."""
    with session_scope(readonly=True) as session:
        rows = [
            _dump(s.PolicyVersionRead, v)
            for v in roles.versions(session=session, account_ref=account, name=role)
        ]
    if as_json:
        output({"items": rows}, as_json=True)
        return
    output(
        [
            {
                "number": r["number"],
                "source": r["source"],
                "inline": ", ".join(r["inline"]),
                "managed": len(r["managed"]),
                "created_by": r["created_by"],
                "created_at": r["created_at"],
            }
            for r in rows
        ],
        as_json=False,
    )
