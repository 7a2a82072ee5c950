"""Notebook job definitions and their runs: validation, scheduling, re-runs, cancels, chains.

A definition is checked when it is made: the notebook is valid nbformat, its default
parameters are names of its `parameters` cell, the kernel exists, the cron expression
parses in an IANA time zone. A run is a row here plus a job in `popcorn.jobs`
(`notebooks.run`); what a worker does with it is in `popcorn.notebooks.execute`.

Schedules fire from the `notebooks.tick` job (every few seconds, created with the first
scheduled definition): each due tick inserts one run whose `tick_key` (definition and tick
time) is unique in the database, so a tick runs once however many ticks race.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.auth import ROLE_RANK
from popcorn.config import get_settings
from popcorn.context import acting_as, current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id, get_by_ref
from popcorn.notebooks import archive
from popcorn.notebooks.models import ACTIVE, NotebookDefinition, NotebookRun
from popcorn.notebooks.schemas import DefinitionCreate, DefinitionRead, DefinitionUpdate, RunRead
from popcorn.outbox import emit
from popcorn.storage import get_store

RUN_TASK = "notebooks.run"
TICK_TASK = "notebooks.tick"
TICK_SCHEDULE = "notebooks.tick"
TICK_SECONDS = 5
SOURCES = "notebooks/sources"
LOCAL_MASTER = "local[2]"
SPARK_PARAMETERS = {"spark_master", "spark_conf"}  # given to a Spark notebook by Popcorn
MASTER = re.compile(
    r"^(local(\[(\d{1,3}|\*)\])?|spark://[A-Za-z0-9.-]{1,253}:\d{1,5}|yarn"
    r"|k8s://(https?://)?[A-Za-z0-9.-]{1,253}(:\d{1,5})?)$"
)
CONF_KEY = re.compile(r"^spark\.[A-Za-z0-9._-]{1,200}$")
K8S_IMAGE = "spark.kubernetes.container.image"
CALLABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*[:.][A-Za-z_][A-Za-z0-9_]*$")
DEFINITION_FILTERS = {
    "name": NotebookDefinition.name,
    "kind": NotebookDefinition.kind,
    "origin": NotebookDefinition.origin,
    "workspace_path": NotebookDefinition.workspace_path,
    "enabled": NotebookDefinition.enabled,
}
RUN_FILTERS = {
    "definition_id": NotebookRun.definition_id,
    "status": NotebookRun.status,
    "trigger": NotebookRun.trigger,
    "created_at": NotebookRun.created_at,
}


# --- who may define code -------------------------------------------------------------------


def definer_role(kind: str) -> str:
    """The role that may create or change a job of this kind. A job's code runs on a worker:
    operators may define notebook and Spark jobs only when their kernels and drivers run as
    an unprivileged user (`notebooks_run_as`); a callable runs inside the worker itself, so
    callable jobs are always an admin's. Running a definition stays an operator's right."""
    if kind == "callable" or not get_settings().notebooks_run_as:
        return "admin"
    return "operator"


def require_definer(kind: str) -> None:
    """A 403 unless the acting user may create or change a `kind` job (every path: API,
    console, Jupyter extension, facade callers acting as someone)."""
    actor = current_actor()
    needed = definer_role(kind)
    if ROLE_RANK.get(actor.role, 0) < ROLE_RANK[needed]:
        why = (
            "a callable runs inside the worker"
            if kind == "callable"
            else "its code would run with the worker's rights (notebooks_run_as is not set)"
        )
        raise Forbidden(
            f"only an admin may create or change a {kind} job: {why}",
            details={"role": actor.role, "needed": needed, "kind": kind},
        )


# --- checks ---------------------------------------------------------------------------------


def parse_notebook(data: bytes | dict[str, Any]) -> Any:
    """An nbformat v4 notebook, validated; a 422 saying what is wrong otherwise."""
    import nbformat

    try:
        text = data if isinstance(data, dict) else json.loads(data)
        node = nbformat.reads(json.dumps(text), as_version=4)
        nbformat.validate(node)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InvalidInput(
            f"not a valid notebook: {message}", details={"notebook": message}
        ) from None
    except Exception as exc:  # nbformat.ValidationError and friends
        message = str(exc).splitlines()[0][:300]
        raise InvalidInput(
            f"not a valid notebook: {message}", details={"notebook": message}
        ) from None
    return node


def notebook_parameters(node: Any) -> dict[str, Any]:
    """The names and defaults declared in the cell tagged `parameters` (papermill's rule)."""
    from papermill.translators import papermill_translators

    cell = next(
        (c for c in node.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    if cell is None:
        return {}
    spec = node.get("metadata", {}).get("kernelspec", {})
    try:
        translator = papermill_translators.find_translator(
            spec.get("name", "python3"), spec.get("language", "python")
        )
        return {p.name: p.default for p in translator.inspect(cell)}
    except Exception:  # a language papermill cannot read: no declared names
        return {}


def has_parameters_cell(node: Any) -> bool:
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in node.cells)


def check_parameters(
    node: Any, parameters: dict[str, Any], *, extra: set[str] | None = None
) -> None:
    """Every parameter must be a name the notebook's parameters cell declares."""
    if not parameters:
        return
    if not has_parameters_cell(node):
        raise InvalidInput(
            "the notebook has no cell tagged 'parameters'",
            details={"parameters": sorted(parameters)},
        )
    known = set(notebook_parameters(node)) | set(extra or ())
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {', '.join(unknown)}: the parameters cell declares "
            f"{', '.join(sorted(known)) or 'nothing'}",
            details={"unknown": unknown, "declared": sorted(known)},
        )


def check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if name not in specs:
        raise InvalidInput(
            f"unknown kernel {name!r}", details={"kernel": name, "installed": sorted(specs)}
        )


def check_schedule(cron: str | None, timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {timezone!r}", details={"timezone": timezone}
        ) from None
    if cron is not None:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise InvalidInput(f"cron expression {cron!r} does not parse", details={"cron": cron})


def check_master(master: str, conf: dict[str, str] | None = None) -> None:
    """A master spark-submit takes (local, standalone, YARN, Kubernetes) and its --conf
    pairs; cluster endpoints go through the outbound allow-list."""
    if master and not MASTER.fullmatch(master):
        raise InvalidInput(
            f"Spark master {master!r} must be local, local[N], spark://host:port, yarn "
            "or k8s://https://host:port",
            details={"spark_master": master},
        )
    conf = conf or {}
    for key, value in conf.items():
        if not CONF_KEY.fullmatch(key) or not isinstance(value, str) or "\n" in value:
            raise InvalidInput(
                f"Spark conf {key!r}: keys are spark.* and values one-line strings",
                details={"spark_conf": key},
            )
    from popcorn.outbound import check_url

    if master.startswith("spark://"):
        check_url("http://" + master.removeprefix("spark://"), purpose="Spark master")
    if master.startswith("k8s://"):
        api = master.removeprefix("k8s://")
        check_url(api if "://" in api else "https://" + api, purpose="Kubernetes API server")
        if not conf.get(K8S_IMAGE):
            raise InvalidInput(
                f"a k8s:// master needs {K8S_IMAGE} in spark_conf (the driver and executor image)",
                details={"spark_conf": K8S_IMAGE},
            )


def check_callable(path: str) -> None:
    """Callables come only from the installed plugins (POPCORN_PLUGINS), never any module."""
    if not CALLABLE.fullmatch(path):
        raise InvalidInput(f"callable {path!r} must be module:function", details={"callable": path})
    module = path.split(":", 1)[0] if ":" in path else path.rsplit(".", 1)[0]
    plugins = [p.strip() for p in get_settings().plugins.split(",") if p.strip()]
    if not any(module == p or module.startswith(p + ".") for p in plugins):
        raise InvalidInput(
            f"callable {path!r} is not in an installed plugin",
            details={"callable": path, "plugins": plugins},
        )


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    """The next cron time after `after`, in wall-clock time of the zone (DST-safe), as UTC."""
    from croniter import croniter

    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    nxt: datetime = croniter(cron, local).get_next(datetime)
    return nxt.astimezone(ZoneInfo("UTC"))


# --- definitions ----------------------------------------------------------------------------


def _store_source(data: bytes, suffix: str) -> str:
    key = f"{SOURCES}/{hashlib.sha256(data).hexdigest()}.{suffix}"
    get_store().put(key, data, immutable=True)
    return key


def ensure_tick(session: Session) -> None:
    """The periodic job that fires due schedules exists (made with the first schedule)."""
    jobs.ensure_schedule(
        session=session,
        name=TICK_SCHEDULE,
        task=TICK_TASK,
        queue="high",
        interval_seconds=TICK_SECONDS,
    )


def definition_source(session: Session, definition: NotebookDefinition) -> tuple[bytes, str]:
    """The notebook (or script) a run of this definition uses now, and where it came from."""
    if definition.workspace_path:
        found = archive.latest_version(session=session, path=definition.workspace_path)
        return get_store().get(found.object_key), f"{found.path}@{found.version}"
    if definition.source_key:
        return get_store().get(definition.source_key), definition.source_key
    return b"", ""


def create_definition(*, session: Session, spec: DefinitionCreate) -> NotebookDefinition:
    require_definer(spec.kind)
    if session.scalar(select(NotebookDefinition.id).where(NotebookDefinition.name == spec.name)):
        raise Conflict(f"a definition named {spec.name!r} exists", details={"name": spec.name})
    check_schedule(spec.cron, spec.timezone)
    row = NotebookDefinition(
        name=spec.name,
        kind=spec.kind,
        origin=spec.origin,
        parameters=spec.parameters,
        kernel=spec.kernel,
        cron=spec.cron or None,
        timezone=spec.timezone,
        timeout=spec.timeout,
        retries=spec.retries,
        tags=sorted(set(spec.tags)),
        exclusive=spec.exclusive,
        spark_master=spec.spark_master,
        spark_conf=dict(spec.spark_conf),
        output_formats=list(dict.fromkeys(spec.output_formats)),
        enabled=spec.enabled,
        created_by=current_actor().name,
    )
    sources = sum(
        x is not None and x != "" for x in (spec.notebook, spec.workspace_path, spec.script)
    )
    if spec.kind == "callable":
        if sources or not spec.callable:
            raise InvalidInput("a callable job names a `callable` and no notebook or script")
        check_callable(spec.callable)
        row.callable = spec.callable
    else:
        if spec.callable or sources != 1:
            raise InvalidInput(
                "give exactly one of `notebook`, `workspace_path` or (Spark) `script`"
            )
        if spec.script is not None:
            if spec.kind != "spark":
                raise InvalidInput("only Spark jobs run a script; notebooks run a notebook")
            row.source_key = _store_source(spec.script.encode(), "py")
        else:
            if spec.workspace_path:
                row.workspace_path = spec.workspace_path
                data, _ = definition_source(session, row)
            else:
                data = json.dumps(spec.notebook).encode()
            node = parse_notebook(data)
            extra = SPARK_PARAMETERS if spec.kind == "spark" else set()
            check_parameters(node, spec.parameters, extra=extra)
            check_kernel(spec.kernel)
            if not spec.workspace_path:
                row.source_key = _store_source(data, "ipynb")
        if spec.kind == "spark":
            check_master(spec.spark_master, spec.spark_conf)
        elif spec.spark_master or spec.spark_conf:
            raise InvalidInput("spark_master and spark_conf belong to Spark jobs")
    if spec.output_formats and (spec.kind == "callable" or spec.script is not None):
        raise InvalidInput("output formats are made from an output notebook: notebook jobs only")
    if spec.after:
        row.after_id = get_definition(session=session, ref=spec.after).id
    if row.cron:
        row.next_run_at = next_tick(row.cron, row.timezone, utcnow())
    row.updated_at = row.created_at = utcnow()
    session.add(row)
    session.flush()
    after = DefinitionRead.model_validate(row).model_dump(mode="json")
    record_change(session, "create", "notebook_definition", row.id, after=after)
    emit(session, "notebooks.definition.created", "notebook_definition", row.id, {"name": row.name})
    if row.cron:
        ensure_tick(session)
    return row


def get_definition(*, session: Session, ref: int | str, lock: bool = False) -> NotebookDefinition:
    return get_by_ref(session, NotebookDefinition, ref, label="definition", lock=lock)


def list_definitions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(NotebookDefinition).where(*filter_clauses(params.filters, DEFINITION_FILTERS))
    if params.q:
        stmt = stmt.where(NotebookDefinition.name.icontains(params.q, autoescape=True))
    return paginate(session, stmt, params, key=NotebookDefinition.id)


def update_definition(
    *, session: Session, ref: int | str, spec: DefinitionUpdate
) -> NotebookDefinition:
    row = get_definition(session=session, ref=ref, lock=True)
    require_definer(row.kind)
    before = DefinitionRead.model_validate(row).model_dump(mode="json")
    fields = spec.model_dump(exclude_unset=True)
    cron = fields.get("cron", row.cron) or None
    timezone = fields.get("timezone") or row.timezone
    check_schedule(cron, timezone)
    if "parameters" in fields and row.kind != "callable" and fields["parameters"]:
        data, _ = definition_source(session, row)
        if row.source_key.endswith(".ipynb") or row.workspace_path:
            extra = SPARK_PARAMETERS if row.kind == "spark" else set()
            check_parameters(parse_notebook(data), fields["parameters"], extra=extra)
    if "spark_master" in fields or "spark_conf" in fields:
        if row.kind != "spark":
            raise InvalidInput("spark_master and spark_conf belong to Spark jobs")
        check_master(
            fields.get("spark_master") or row.spark_master,
            fields["spark_conf"] if fields.get("spark_conf") is not None else row.spark_conf,
        )
    if fields.get("output_formats") and (row.kind == "callable" or row.source_key.endswith(".py")):
        raise InvalidInput("output formats are made from an output notebook: notebook jobs only")
    for name, value in fields.items():
        if name == "tags":
            value = sorted(set(value or []))
        if name == "cron":
            value = value or None
        if value is not None or name == "cron":
            setattr(row, name, value)
    row.next_run_at = next_tick(row.cron, row.timezone, utcnow()) if row.cron else None
    row.updated_at = utcnow()
    after = DefinitionRead.model_validate(row).model_dump(mode="json")
    record_change(session, "update", "notebook_definition", row.id, before=before, after=after)
    emit(session, "notebooks.definition.updated", "notebook_definition", row.id, {"name": row.name})
    if row.cron:
        ensure_tick(session)
    return row


def delete_definition(*, session: Session, ref: int | str) -> NotebookDefinition:
    row = get_definition(session=session, ref=ref, lock=True)
    active = session.scalar(
        select(NotebookRun.id).where(
            NotebookRun.definition_id == row.id, NotebookRun.status.in_(ACTIVE)
        )
    )
    if active is not None:
        raise Conflict(f"definition {row.name!r} has an active run ({active}); cancel it first")
    before = DefinitionRead.model_validate(row).model_dump(mode="json")
    record_change(session, "delete", "notebook_definition", row.id, before=before)
    emit(session, "notebooks.definition.deleted", "notebook_definition", row.id, {"name": row.name})
    for run in session.scalars(select(NotebookRun).where(NotebookRun.definition_id == row.id)):
        session.delete(run)
    session.delete(row)
    return row


# --- runs -----------------------------------------------------------------------------------


def _active_run(session: Session, definition_id: int) -> int | None:
    return session.scalar(
        select(NotebookRun.id).where(
            NotebookRun.definition_id == definition_id, NotebookRun.status.in_(ACTIVE)
        )
    )


def start_run(
    *,
    session: Session,
    definition: NotebookDefinition,
    parameters: dict[str, Any] | None = None,
    trigger: str = "manual",
    tick: datetime | None = None,
    parent_run_id: int | None = None,
) -> NotebookRun:
    """Record a run and enqueue its job (after commit). Parameters override the defaults."""
    merged = {**definition.parameters, **(parameters or {})}
    if parameters and definition.kind != "callable" and trigger in ("manual", "rerun"):
        data, _ = definition_source(session, definition)
        if data and (definition.workspace_path or definition.source_key.endswith(".ipynb")):
            extra = SPARK_PARAMETERS if definition.kind == "spark" else set()
            check_parameters(parse_notebook(data), parameters, extra=extra)
    run = NotebookRun(
        definition_id=definition.id,
        trigger=trigger,
        tick=tick,
        tick_key=f"{definition.id}@{tick.isoformat()}" if tick is not None else None,
        parameters=merged,
        parent_run_id=parent_run_id,
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    active = _active_run(session, definition.id) if definition.exclusive else None
    if active is not None:
        if trigger in ("manual", "rerun"):
            raise Conflict(
                f"definition {definition.name!r} runs one at a time and run {active} is active",
                details={"active_run": active},
            )
        run.status = "skipped"
        run.error = f"run {active} of this definition was still active"
        run.ended_at = run.created_at
    session.add(run)
    session.flush()
    if run.status == "queued":
        job = jobs.enqueue(
            session,
            RUN_TASK,
            arguments={"run_id": run.id},
            retries=definition.retries,
            timeout=definition.timeout + 120,
        )
        run.job_id = job.id
    record_change(
        session,
        "create",
        "notebook_run",
        run.id,
        after=RunRead.model_validate(run).model_dump(mode="json"),
    )
    emit(
        session,
        f"notebooks.run.{'skipped' if run.status == 'skipped' else 'queued'}",
        "notebook_run",
        run.id,
        {"definition": definition.name, "trigger": trigger},
    )
    return run


def run_now(
    *, session: Session, ref: int | str, parameters: dict[str, Any] | None = None
) -> NotebookRun:
    definition = get_definition(session=session, ref=ref)
    return start_run(session=session, definition=definition, parameters=parameters)


def get_run(*, session: Session, run_id: int | str, lock: bool = False) -> NotebookRun:
    if lock:
        run = get_by_id(session, NotebookRun, run_id, label="run")
        session.refresh(run, with_for_update=True)
        return run
    return get_by_id(session, NotebookRun, run_id, label="run")


def list_runs(*, session: Session, params: ListParams, origin: str | None = None) -> PageResult:
    """Runs, oldest first; `origin` keeps those of definitions made from that notebook."""
    stmt = select(NotebookRun).where(*filter_clauses(params.filters, RUN_FILTERS))
    if origin is not None:
        ids = select(NotebookDefinition.id).where(
            (NotebookDefinition.origin == origin) | (NotebookDefinition.workspace_path == origin)
        )
        stmt = stmt.where(NotebookRun.definition_id.in_(ids))
    return paginate(session, stmt, params, key=NotebookRun.id)


def recent_runs(
    *, session: Session, limit: int = 50, definition_id: int | None = None
) -> list[NotebookRun]:
    stmt = select(NotebookRun)
    if definition_id is not None:
        stmt = stmt.where(NotebookRun.definition_id == definition_id)
    return list(session.scalars(stmt.order_by(NotebookRun.id.desc()).limit(limit)))


def run_output(run: NotebookRun, fmt: str) -> tuple[bytes, str]:
    """A run's stored output in one format, with its media type."""
    from popcorn.notebooks.formats import MEDIA

    if fmt not in MEDIA:
        raise InvalidInput(
            f"unknown format {fmt!r} (one of {', '.join(MEDIA)})", details={"format": fmt}
        )
    key = run.output_key if fmt == "ipynb" else (run.format_keys or {}).get(fmt, "")
    if not key:
        why = (run.format_errors or {}).get(fmt) or (
            "the run stored no output notebook"
            if not run.output_key
            else "its definition did not ask for it"
        )
        raise NotFound(f"run {run.id} has no {fmt} output: {why}", details={"format": fmt})
    return get_store().get(key), MEDIA[fmt]


def rerun(
    *, session: Session, run_id: int | str, parameters: dict[str, Any] | None = None
) -> NotebookRun:
    """Run again with the same parameters, or with these changed."""
    previous = get_run(session=session, run_id=run_id)
    definition = get_definition(session=session, ref=previous.definition_id)
    merged = {**previous.parameters, **(parameters or {})}
    return start_run(
        session=session,
        definition=definition,
        parameters=merged,
        trigger="rerun",
        parent_run_id=previous.id,
    )


def cancel_run(*, session: Session, run_id: int | str) -> NotebookRun:
    """Cancel a queued or running run; a running one's kernel is stopped by its worker."""
    run = get_run(session=session, run_id=run_id, lock=True)
    if run.status not in ACTIVE and not (run.status == "failed" and run.retryable):
        raise Conflict(
            f"run {run.id} is {run.status}; only queued, running or retrying runs can be canceled"
        )
    before = {"status": run.status}
    if run.job_id is not None:
        job = session.get(jobs.JobRecord, run.job_id, with_for_update=True)
        if job is not None and job.status in ("scheduled", "pending"):
            jobs.cancel_job(session=session, job_id=job.id)
    run.status = "canceled"
    run.retryable = False
    run.ended_at = utcnow()
    if run.started_at is not None:
        run.duration_s = round((run.ended_at - run.started_at).total_seconds(), 3)
    record_change(
        session, "cancel", "notebook_run", run.id, before=before, after={"status": "canceled"}
    )
    emit(
        session,
        "notebooks.run.canceled",
        "notebook_run",
        run.id,
        {"definition_id": run.definition_id},
    )
    return run


def chain_after(session: Session, run: NotebookRun) -> list[NotebookRun]:
    """Start the definitions that run after this one, its outputs as their parameters."""
    started = []
    for nxt in session.scalars(
        select(NotebookDefinition).where(
            NotebookDefinition.after_id == run.definition_id,
            NotebookDefinition.enabled.is_(True),
        )
    ):
        passed = dict(run.outputs or {})
        if nxt.kind != "callable":
            data, _ = definition_source(session, nxt)
            if data and (nxt.workspace_path or nxt.source_key.endswith(".ipynb")):
                declared = set(notebook_parameters(parse_notebook(data)))
                passed = {k: v for k, v in passed.items() if k in declared}
        started.append(
            start_run(
                session=session,
                definition=nxt,
                parameters=passed,
                trigger="chain",
                parent_run_id=run.id,
            )
        )
    return started


# --- the scheduler tick ---------------------------------------------------------------------


FIRE_BATCH = 100  # due definitions fired per transaction


def fire_due(*, now: datetime | None = None) -> int:
    """Start one run per due schedule tick; a tick already recorded is never run again.

    Missed ticks (the scheduler was down) are not replayed in a burst: the next tick is
    computed from now. Due definitions are fired in batches of FIRE_BATCH per transaction
    (1,000 minute schedules are ten commits, not a thousand); a batch that meets a tick
    another scheduler recorded meanwhile is fired again one definition at a time.
    """
    from popcorn.db import session_scope

    now = now or utcnow()
    with session_scope(readonly=True) as session:
        due = list(
            session.scalars(
                select(NotebookDefinition.id)
                .where(
                    NotebookDefinition.enabled.is_(True),
                    NotebookDefinition.cron.is_not(None),
                    NotebookDefinition.next_run_at <= now,
                )
                .order_by(NotebookDefinition.next_run_at, NotebookDefinition.id)
            )
        )
    fired = 0
    for start in range(0, len(due), FIRE_BATCH):
        batch = due[start : start + FIRE_BATCH]
        try:
            fired += _fire(batch, now)
        except IntegrityError:  # a racing tick recorded one of these: one at a time
            for definition_id in batch:
                try:
                    fired += _fire([definition_id], now)
                except IntegrityError:
                    continue
    return fired


def _fire(definition_ids: list[int], now: datetime) -> int:
    """Fire these due definitions in one transaction (all or none)."""
    from popcorn.db import session_scope

    fired = 0
    with session_scope() as session:
        for definition_id in definition_ids:
            definition = session.get(NotebookDefinition, definition_id, with_for_update=True)
            if definition is None or definition.next_run_at is None or not definition.cron:
                continue
            if definition.next_run_at > now:
                continue  # another tick fired it meanwhile
            tick = definition.next_run_at
            with acting_as(f"schedule:{definition.name}"):
                start_run(session=session, definition=definition, trigger="schedule", tick=tick)
            definition.next_run_at = next_tick(definition.cron, definition.timezone, max(tick, now))
            fired += 1
    return fired


def sweep_lost(*, now: datetime | None = None) -> int:
    """Runs still 'running' whose job is no longer running lost their worker: they end
    failed (and retryable when the job will be tried again)."""
    from popcorn.db import session_scope

    ended = 0
    with session_scope() as session:
        rows = list(
            session.execute(
                select(NotebookRun, jobs.JobRecord.status)
                .join(jobs.JobRecord, jobs.JobRecord.id == NotebookRun.job_id)
                .where(NotebookRun.status == "running", jobs.JobRecord.status != "running")
            )
        )
        for run, job_status in rows:
            retry = job_status in ("scheduled", "pending")
            run.status = "failed"
            run.retryable = retry
            run.error = "the worker running it was lost" + (
                " (it will be retried)" if retry else ""
            )
            run.ended_at = now or utcnow()
            if run.started_at is not None:
                run.duration_s = round((run.ended_at - run.started_at).total_seconds(), 3)
            record_change(
                session,
                "fail",
                "notebook_run",
                run.id,
                after={"status": "failed", "error": run.error},
            )
            emit(
                session,
                "notebooks.run.failed",
                "notebook_run",
                run.id,
                {"definition_id": run.definition_id, "error": run.error, "retryable": retry},
            )
            ended += 1
    return ended


def tick(*, now: datetime | None = None) -> dict[str, int]:
    return {"fired": fire_due(now=now), "lost": sweep_lost(now=now)}


def any_definitions() -> bool:
    from popcorn.db import session_scope

    with session_scope(readonly=True) as session:
        return session.scalar(select(NotebookDefinition.id).limit(1)) is not None


def lateness_seconds(run: NotebookRun) -> float | None:
    if run.tick is None or run.started_at is None:
        return None
    return (run.started_at - run.tick).total_seconds()


def collect_metrics() -> Iterator[Any]:
    """Scrape-time gauges: runs by status, and the time since each definition last succeeded."""
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import func

    from popcorn.db import session_scope

    runs = GaugeMetricFamily("popcorn_notebook_runs", "Notebook runs by status", labels=["status"])
    last = GaugeMetricFamily(
        "popcorn_notebook_last_success_timestamp_seconds",
        "When each job definition's newest successful run ended",
        labels=["definition"],
    )
    with session_scope(readonly=True) as session:
        for status, count in session.execute(
            select(NotebookRun.status, func.count()).group_by(NotebookRun.status)
        ):
            runs.add_metric([status], count)
        for name, ended in session.execute(
            select(NotebookDefinition.name, func.max(NotebookRun.ended_at))
            .join(NotebookRun, NotebookRun.definition_id == NotebookDefinition.id)
            .where(NotebookRun.status == "succeeded")
            .group_by(NotebookDefinition.name)
        ):
            if ended is not None:
                last.add_metric([name], ended.timestamp())
    yield runs
    yield last
