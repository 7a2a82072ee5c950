"""Core commands of the `popcorn` CLI: running it, tokens, jobs, audit, config."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from popcorn import audit, auth, jobs, machines
from popcorn.cli import json_option, output, parse_kv, progress, with_actor
from popcorn.config import get_settings
from popcorn.db import session_scope, upgrade
from popcorn.jobs.schemas import JobRead, ScheduleRead
from popcorn.listing import parse_list_params

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def host_port(func: Any) -> Any:
    func = click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)(func)
    return click.option("--host", default=DEFAULT_HOST, show_default=True)(func)


@click.command()
@host_port
@click.option("--workers", "web_workers", default=2, show_default=True, help="Gunicorn workers.")
@click.option(
    "--job-workers",
    default=2,
    show_default=True,
    help="rq worker processes (two, so a long runbook never holds up alerts).",
)
@click.option("--admin-token", is_flag=True, help="Create an admin token and print it.")
@click.option(
    "--fork-jobs",
    is_flag=True,
    help="Fork a process per job (more isolation, far fewer jobs per second).",
)
def up(
    host: str, port: int, web_workers: int, job_workers: int, admin_token: bool, fork_jobs: bool
) -> None:
    """Migrate, then run the API, workers and scheduler until Ctrl-C."""
    from popcorn.supervisor import Supervisor

    upgrade()
    check_run_as()
    machines.startup("up")
    click.echo(f"Popcorn at http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if admin_token:
        click.echo(f"admin token: {_fresh_admin_token()}")
    Supervisor(
        host=host, port=port, web_workers=web_workers, job_workers=job_workers, fork_jobs=fork_jobs
    ).run()


def check_run_as() -> None:
    """A worker told to start operators' code as another user that cannot do so refuses to
    start, in one line, rather than run that code with its own rights."""
    name = get_settings().notebooks_run_as
    if name:
        from popcorn.runas import problem

        reason = problem(name)
        if reason:
            raise click.ClickException(reason)


def _fresh_admin_token() -> str:
    """A new admin token each time `popcorn up --admin-token` starts."""
    import secrets

    with session_scope() as session:
        _, raw = auth.create_token(
            session=session, name=f"demo-admin-{secrets.token_hex(3)}", role="admin"
        )
    return raw


@click.command()
@host_port
@click.option("--workers", "web_workers", default=2, show_default=True)
def serve(host: str, port: int, web_workers: int) -> None:
    """Run the API under Gunicorn (one part of a multi-machine deployment)."""
    from popcorn.supervisor import exec_gunicorn

    machines.startup("serve")
    exec_gunicorn(host, port, web_workers)


@click.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(jobs.QUEUES),
    help="Queues to serve, in priority order (default: all, alerts first). "
    "`--queue alerts` runs a worker reserved for alert processing.",
)
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option(
    "--no-fork", is_flag=True, help="Run jobs in the worker process itself: faster, less isolation."
)
def worker(queues: tuple[str, ...], burst: bool, no_fork: bool) -> None:
    """Run an rq worker on this installation's Redis."""
    check_run_as()
    machines.startup("worker")
    jobs.run_worker(list(queues) or None, burst=burst, fork=not no_fork, exit_process=True)


@click.command()
def scheduler() -> None:
    """Run the scheduler (delayed and cron jobs, relay, reaper) and the outbox dispatcher."""
    from popcorn.jobs.runner import leave_process
    from popcorn.supervisor import stop_flag

    machines.startup("scheduler")
    stop = stop_flag()
    jobs.run_scheduler(stop)
    leave_process(0)  # its leases are released; skip tearing every domain down


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations."""
    from popcorn.db import current_revisions

    upgrade()
    click.echo("database at " + ", ".join(sorted(current_revisions())))


@click.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def backup_command(dest: Path, as_json: bool) -> None:
    """Write the database and every stored object to one archive (a new tar file)."""
    from popcorn import backup

    with _progress_bar("backing up") as report:
        done = backup.backup(dest, report)
    output(done, as_json=as_json)


@click.command("restore")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def restore_command(src: Path, as_json: bool) -> None:
    """Load a `popcorn backup` archive into this empty installation."""
    from popcorn import backup

    with _progress_bar("restoring") as report:
        done = backup.restore(src, report)
    output(done, as_json=as_json)


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int, str], None]]:
    with progress(None, description) as bar:

        def report(done: int, total: int, what: str) -> None:
            bar.update(bar.task_ids[0], completed=done, total=total, description=what[-40:])

        yield report


@click.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True)
@click.option("--role", "role_name", required=True, type=click.Choice(auth.ROLES))
@click.option("--expires-days", type=int, default=None)
@json_option
@with_actor
def token_create(name: str, role_name: str, expires_days: int | None, as_json: bool) -> None:
    """Create a token; its secret is printed once."""
    spec = auth.TokenCreate(name=name, role=role_name, expires_days=expires_days)
    with session_scope() as session:
        created, raw = auth.create_token(
            session=session, name=spec.name, role=spec.role, expires_days=spec.expires_days
        )
        data = auth.TokenRead.model_validate(created).model_dump(mode="json")
    if as_json:
        output({**data, "token": raw}, as_json=True)
    else:
        click.echo(raw)
        click.echo(
            f"token {name!r} ({role_name}) created; the secret above is not shown again", err=True
        )


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """List API tokens (names, roles and hints; never the secrets)."""
    with session_scope(readonly=True) as session:
        rows = [
            auth.TokenRead.model_validate(t).model_dump(mode="json")
            for t in auth.list_tokens(session=session)
        ]
    output(
        rows,
        as_json=as_json,
        columns=["id", "name", "role", "hint", "created_at", "last_used_at", "revoked_at"],
    )


@token.command("revoke")
@click.argument("ref")
@with_actor
def token_revoke(ref: str) -> None:
    """Revoke a token by id or name."""
    with session_scope() as session:
        revoked = auth.revoke_token(session=session, ref=ref)
        click.echo(f"revoked token {revoked.name!r}")


@click.group()
def config() -> None:
    """Settings."""


@config.command("show")
@json_option
def config_show(as_json: bool) -> None:
    """Effective settings, secrets masked."""
    output(get_settings().masked(), as_json=as_json)


@click.group("jobs")
def jobs_group() -> None:
    """Background jobs."""


@jobs_group.command("list")
@click.option("--status", type=click.Choice(jobs.STATES))
@click.option("--queue", type=click.Choice(jobs.QUEUES))
@click.option("--task")
@click.option("--limit", default=50, show_default=True)
@json_option
def jobs_list(
    status: str | None, queue: str | None, task: str | None, limit: int, as_json: bool
) -> None:
    """List background jobs, newest first."""
    filters = {k: [v] for k, v in (("status", status), ("queue", queue), ("task", task)) if v}
    with session_scope(readonly=True) as session:
        rows = [
            JobRead.model_validate(r).model_dump(mode="json")
            for r in jobs.recent_jobs(session=session, filters=filters, limit=limit)
        ]
    output(
        rows,
        as_json=as_json,
        columns=["id", "task", "queue", "status", "attempts", "created_at", "ended_at"],
    )


@jobs_group.command("show")
@click.argument("job_id", type=int)
@json_option
def jobs_show(job_id: int, as_json: bool) -> None:
    """Show a job: arguments, status, progress, result or error."""
    with session_scope(readonly=True) as session:
        record = JobRead.model_validate(jobs.get_job(session=session, job_id=job_id))
    output(record.model_dump(mode="json"), as_json=as_json)


@jobs_group.command("submit")
@click.argument("task_name")
@click.argument("arguments", nargs=-1)
@click.option(
    "--queue", type=click.Choice([q for q in jobs.QUEUES if q not in jobs.RESERVED_QUEUES])
)
@click.option("--delay", type=float, default=None, help="Seconds before it may run.")
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    default=None,
    help="Wait up to this many seconds and print the result.",
)
@json_option
@with_actor
def jobs_submit(
    task_name: str,
    arguments: tuple[str, ...],
    queue: str | None,
    delay: float | None,
    wait_seconds: float | None,
    as_json: bool,
) -> None:
    """Submit a public task, TASK_NAME, with key=value arguments (within its limits)."""
    with session_scope() as session:
        record = jobs.submit_job(
            session=session,
            task=task_name,
            arguments=parse_kv(arguments),
            queue=queue,
            delay_seconds=delay,
        )
        job_id = record.id
    if wait_seconds:
        done = jobs.wait_for(job_id, timeout=wait_seconds)
        output(JobRead.model_validate(done).model_dump(mode="json"), as_json=as_json)
        if done.status != "finished":
            sys.exit(1)
    else:
        output({"id": job_id, "status": record.status}, as_json=as_json)


@jobs_group.command("cancel")
@click.argument("job_id", type=int)
@with_actor
def jobs_cancel(job_id: int) -> None:
    """Cancel a job that has not finished."""
    with session_scope() as session:
        jobs.cancel_job(session=session, job_id=job_id)
    click.echo(f"job {job_id} canceled")


@click.group("schedules")
def schedules_group() -> None:
    """Repeating jobs (cron or interval), stored in the database."""


@schedules_group.command("list")
@json_option
def schedules_list(as_json: bool) -> None:
    """List the repeating jobs and when each runs next."""
    with session_scope(readonly=True) as session:
        rows = [
            ScheduleRead.model_validate(s).model_dump(mode="json")
            for s in jobs.list_schedules(session=session)
        ]
    output(
        rows,
        as_json=as_json,
        columns=["name", "task", "cron", "interval_seconds", "enabled", "next_run_at"],
    )


@schedules_group.command("add")
@click.argument("name")
@click.argument("task_name")
@click.argument("arguments", nargs=-1)
@click.option("--cron", default=None, help="Cron expression, e.g. '*/5 * * * *'.")
@click.option("--every", "interval", type=int, default=None, help="Interval in seconds.")
@click.option(
    "--queue",
    type=click.Choice([q for q in jobs.QUEUES if q not in jobs.RESERVED_QUEUES]),
    default="default",
)
@with_actor
def schedules_add(
    name: str,
    task_name: str,
    arguments: tuple[str, ...],
    cron: str | None,
    interval: int | None,
    queue: str,
) -> None:
    """Add a repeating job: TASK_NAME with key=value ARGUMENTS, by --cron or --every."""
    with session_scope() as session:
        sched = jobs.create_schedule(
            session=session,
            name=name,
            task=task_name,
            arguments=parse_kv(arguments),
            queue=queue,
            cron=cron,
            interval_seconds=interval,
        )
        click.echo(f"schedule {name!r} next runs at {sched.next_run_at.isoformat()}")


@schedules_group.command("remove")
@click.argument("name")
@with_actor
def schedules_remove(name: str) -> None:
    """Remove a repeating job."""
    with session_scope() as session:
        jobs.delete_schedule(session=session, name=name)
    click.echo(f"schedule {name!r} removed")


@click.command("audit")
@click.option("--object-type")
@click.option("--object-id")
@click.option("--actor")
@click.option("--since", type=click.DateTime(), help="From this time (UTC).")
@click.option("--until", type=click.DateTime(), help="Up to this time (UTC).")
@click.option("--limit", default=50, show_default=True)
@json_option
def audit_command(
    object_type: str | None,
    object_id: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """The change log, newest first."""
    args: dict[str, Any] = {"limit": str(limit)}
    for key, value in (
        ("object_type", object_type),
        ("object_id", object_id),
        ("actor", actor),
        ("time__gte", since and since.isoformat()),
        ("time__lte", until and until.isoformat()),
    ):
        if value:
            args[key] = value
    params = parse_list_params(args)
    with session_scope(readonly=True) as session:
        records = audit.recent_changes(session=session, filters=params.filters, limit=params.limit)
        rows = [audit.AuditRead.model_validate(r).model_dump(mode="json") for r in records]
    output(
        rows,
        as_json=as_json,
        columns=["id", "time", "actor", "action", "object_type", "object_id", "diff"],
    )


# The core's top-level commands (read from this source by `popcorn.clispec` for `--help`).
COMMANDS = [
    up,
    serve,
    worker,
    scheduler,
    db,
    backup_command,
    restore_command,
    token,
    config,
    jobs_group,
    schedules_group,
    audit_command,
]


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
