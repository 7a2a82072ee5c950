"""Triage collections: resolve a group of hosts, ask each one's Bolt agent for its tables
in parallel, store what came back per host, then analyse the group.

A host that does not answer at all is `missing` (down, or no agent), not failed; one
that answers with an error, garbage or too much is `error` or `oversized`, with the
reason. The collection goes on either way, and can be re-run for its missing hosts.
Nothing here changes a host: the collectors are read-only actions.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import record_change
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.jobs import enqueue
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id, parse_id
from popcorn.outbox import emit
from popcorn.triage.models import (
    TriageCollection,
    TriageFinding,
    TriageHost,
    TriageHostTable,
)
from popcorn.triage.schemas import CollectionCreate
from popcorn.triage.tables import TABLE_NAMES, Normaliser

COLLECT_TASK = "triage.collect"
COLLECT_ACTION = "triage.collect"
MAX_ROWS_PER_TABLE = 100_000
COLLECTION_FILTERS = {
    "name": TriageCollection.name,
    "status": TriageCollection.status,
    "created_at": TriageCollection.created_at,
}
HOST_FILTERS = {
    "device": TriageHost.device,
    "status": TriageHost.status,
    "role": TriageHost.role,
    "site": TriageHost.site,
}
Progress = Callable[[int, int, str], None]


# --- the agent's answer, validated ------------------------------------------------------------


class TableAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rows: list[dict[str, Any]] = Field(max_length=MAX_ROWS_PER_TABLE)
    truncated: bool = False
    error: str | None = None


class CollectAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tables: dict[str, TableAnswer]
    source: str = "files"
    hostname: str = ""


# --- collections ------------------------------------------------------------------------------


def get_collection(*, session: Session, ref: int | str) -> TriageCollection:
    return get_by_id(session, TriageCollection, ref, label="collection")


def list_collections(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(TriageCollection).where(*filter_clauses(params.filters, COLLECTION_FILTERS))
    return paginate(session, stmt, params, key=TriageCollection.id)


def list_hosts(*, session: Session, collection: int | str, params: ListParams) -> PageResult:
    found = get_collection(session=session, ref=collection)
    stmt = select(TriageHost).where(
        TriageHost.collection_id == found.id, *filter_clauses(params.filters, HOST_FILTERS)
    )
    return paginate(session, stmt, params, key=TriageHost.id)


def list_outliers(
    *, session: Session, collection: int | str, params: ListParams, flagged_only: bool = False
) -> PageResult:
    """Hosts of a collection, most odd first (ranked hosts, then the unranked by name)."""
    found = get_collection(session=session, ref=collection)
    stmt = select(TriageHost).where(TriageHost.collection_id == found.id)
    if flagged_only:
        stmt = stmt.where(TriageHost.score > 0)
    rows = list(session.scalars(stmt))
    rows.sort(key=lambda h: (h.rank is None, h.rank or 0, h.device))
    start = params.offset or 0
    page = rows[start : start + params.limit]
    items = [
        {
            "rank": h.rank,
            "device": h.device,
            "status": h.status,
            "score": h.score,
            "extra": sum(1 for e in h.evidence if e.get("kind") == "extra"),
            "missing": sum(1 for e in h.evidence if e.get("kind") == "missing"),
            "evidence": h.evidence,
        }
        for h in page
    ]
    more = start + params.limit < len(rows)
    return PageResult(
        items=items, count=len(rows), next=str(start + params.limit) if more else None
    )


def list_findings(*, session: Session, collection: int | str, params: ListParams) -> PageResult:
    found = get_collection(session=session, ref=collection)
    stmt = select(TriageFinding).where(TriageFinding.collection_id == found.id)
    return paginate(session, stmt, params, key=TriageFinding.id)


def latest_collection(*, session: Session) -> TriageCollection:
    found = session.scalar(select(TriageCollection).order_by(TriageCollection.id.desc()).limit(1))
    if found is None:
        raise NotFound("there is no triage collection yet")
    return found


def _snapshot(collection: TriageCollection) -> dict[str, Any]:
    return {
        "name": collection.name,
        "scope": collection.scope,
        "tables": collection.tables,
        "status": collection.status,
    }


def create_collection(
    *, session: Session, spec: CollectionCreate, run_as_job: bool = True
) -> TriageCollection:
    """Resolve the scope through inventory, record one pending host per device, and (by
    default) queue the job that collects; InvalidInput when the scope matches no device."""
    domains.require("inventory", "triage resolves its hosts through inventory")
    from popcorn.context import current_actor
    from popcorn.inventory import api as inventory_api

    scope = spec.scope
    roles = inventory_api.device_roles()
    if scope.role is not None and scope.role not in roles:
        raise InvalidInput(
            f"{scope.role!r} is not an inventory role (roles: {', '.join(roles)}); "
            "name a group with a role and tags, a model, a site or devices",
            details={"field": "scope.role", "role": scope.role, "roles": list(roles)},
        )
    devices = inventory_api.devices_for_scope(
        session=session,
        role=scope.role,
        site=scope.site,
        region=scope.region,
        status=scope.status,
        model=scope.model,
        tag=scope.tags,
        device=scope.devices,
    )
    if not devices:
        raise InvalidInput(
            "the scope matches no device", details={"scope": scope.model_dump(exclude_none=True)}
        )
    collection = TriageCollection(
        name=spec.name or _scope_label(scope.model_dump(exclude_none=True)),
        scope=scope.model_dump(exclude_none=True),
        tables=list(spec.tables or TABLE_NAMES),
        options={
            "timeout": spec.timeout,
            "recent_days": spec.recent_days,
            "rare_fraction": spec.rare_fraction,
            "similarity": spec.similarity,
        },
        concurrency=spec.concurrency,
        status="pending",
        created_by=current_actor().name,
    )
    session.add(collection)
    session.flush()
    for device in devices:
        session.add(
            TriageHost(
                collection_id=collection.id,
                device=device.name,
                device_id=device.id,
                role=device.role,
                site=device.site,
                agent_url=device.agent_url,
            )
        )
    session.flush()
    record_change(
        session, "create", "triage_collection", collection.id, after=_snapshot(collection)
    )
    emit(
        session,
        "triage.collection.created",
        "triage_collection",
        collection.id,
        {"name": collection.name, "scope": collection.scope, "hosts": len(devices)},
    )
    if run_as_job:
        enqueue(session, COLLECT_TASK, arguments={"collection_id": collection.id}, queue="low")
    return collection


def _scope_label(scope: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in scope.items() if k != "devices"]
    if scope.get("devices"):
        parts.append(f"{len(scope['devices'])} devices")
    return " ".join(parts)[:200]


def rerun(
    *, session: Session, ref: int | str, statuses: list[str], run_as_job: bool = True
) -> TriageCollection:
    """Collect again from the hosts in `statuses` (missing by default); the others keep
    what they returned, so the group's baseline grows instead of starting over."""
    collection = get_collection(session=session, ref=ref)
    if collection.status in ("pending", "running"):
        raise Conflict(f"collection {collection.id} is still {collection.status}")
    hosts = list(
        session.scalars(
            select(TriageHost).where(
                TriageHost.collection_id == collection.id, TriageHost.status.in_(statuses)
            )
        )
    )
    if not hosts:
        raise InvalidInput(
            f"collection {collection.id} has no host in {', '.join(statuses)}",
            details={"statuses": statuses},
        )
    ids = [h.id for h in hosts]
    session.execute(delete(TriageHostTable).where(TriageHostTable.host_id.in_(ids)))
    urls = _agent_urls(session, [h.device for h in hosts])
    for host in hosts:
        host.status, host.reason, host.row_count, host.size_bytes = "pending", "", 0, 0
        host.agent_url = urls.get(host.device, host.agent_url)
    before = _snapshot(collection)
    collection.status = "pending"
    record_change(
        session, "rerun", "triage_collection", collection.id, before=before,
        after={**_snapshot(collection), "hosts": [h.device for h in hosts]},
    )  # fmt: skip
    emit(
        session,
        "triage.collection.rerun",
        "triage_collection",
        collection.id,
        {"hosts": [h.device for h in hosts], "statuses": statuses},
    )
    if run_as_job:
        enqueue(session, COLLECT_TASK, arguments={"collection_id": collection.id}, queue="low")
    return collection


def _agent_urls(session: Session, names: list[str]) -> dict[str, str | None]:
    """The devices' current agent addresses (a host that came back may have moved)."""
    if not domains.installed("inventory"):
        return {}
    from popcorn.inventory import api as inventory_api

    try:
        found = inventory_api.devices_for_scope(session=session, device=names)
    except NotFound:  # a device left inventory since: keep the addresses we had
        return {}
    return {d.name: d.agent_url for d in found}


def delete_collection(*, session: Session, ref: int | str) -> None:
    collection = get_collection(session=session, ref=ref)
    if collection.status == "running":
        raise Conflict(f"collection {collection.id} is running")
    record_change(
        session, "delete", "triage_collection", collection.id, before=_snapshot(collection)
    )
    emit(session, "triage.collection.deleted", "triage_collection", collection.id, {})
    session.delete(collection)


# --- running a collection ---------------------------------------------------------------------


def run_collection(collection_id: int, *, progress: Progress | None = None) -> dict[str, Any]:
    """Collect every pending host (at most `concurrency` at once), store each answer as it
    arrives, then analyse the group. Safe to call again: only pending hosts are asked."""
    domains.require("remediation", "triage calls hosts through their Bolt agents")
    from popcorn.remediation import api as remediation_api

    with session_scope() as session:
        collection = get_collection(session=session, ref=collection_id)
        collection.status = "running"
        collection.started_at = collection.started_at or utcnow()
        collection.error = ""
        targets = [
            (h.id, h.device, h.agent_url)
            for h in session.scalars(
                select(TriageHost).where(
                    TriageHost.collection_id == collection.id, TriageHost.status == "pending"
                )
            )
        ]
        arguments = {
            "tables": collection.tables,
            "recent_days": collection.options.get("recent_days", 7.0),
        }
        timeout = float(collection.options.get("timeout", 120.0))
        workers = max(1, min(collection.concurrency, len(targets) or 1))
    done = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triage") as pool:
            futures = {
                pool.submit(
                    remediation_api.run_agent_action,
                    device=device,
                    action=COLLECT_ACTION,
                    arguments=arguments,
                    url=url,
                    timeout=timeout,
                ): host_id
                for host_id, device, url in targets
            }
            for future in as_completed(futures):
                answer = future.result()
                status = "gone"
                with session_scope() as session:
                    host = session.get(TriageHost, futures[future])
                    if host is not None:
                        record_answer(session=session, host=host, answer=answer)
                        status = host.status
                done += 1
                if progress is not None:
                    progress(done, len(targets), f"{answer.device}: {status}")
    except Exception as exc:
        with session_scope() as session:
            collection = get_collection(session=session, ref=collection_id)
            collection.status, collection.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            collection.finished_at = utcnow()
            emit(session, "triage.collection.failed", "triage_collection", collection_id,
                 {"error": collection.error})  # fmt: skip
        raise
    with session_scope(readonly=True) as session:
        options = dict(get_collection(session=session, ref=collection_id).options)
    _, summary = analyse(
        collection_id=collection_id,
        rare_fraction=options.get("rare_fraction"),
        similarity=options.get("similarity"),
        finished=True,
    )
    return {"collection_id": collection_id, **summary}


def analyse(
    *,
    collection_id: int,
    rare_fraction: float | None = None,
    similarity: float | None = None,
    finished: bool = False,
) -> tuple[TriageCollection, dict[str, Any]]:
    """(Re)build a collection's clusters, ranks and findings; `finished` also marks a run done.

    Opens its own transactions, so call it outside any: the clustering runs in a read-only
    session (no write lock on SQLite while it computes) and its outcome is stored in one
    short transaction.
    """
    from popcorn.triage import analysis

    with session_scope(readonly=True) as session:
        get_collection(session=session, ref=collection_id)  # NotFound before any work
        ranked = analysis.rank(
            session=session,
            collection_id=collection_id,
            rare_fraction=0.1 if rare_fraction is None else float(rare_fraction),
            similarity=analysis.DEFAULT_SIMILARITY if similarity is None else float(similarity),
        )
    with session_scope() as session:
        collection = get_collection(session=session, ref=collection_id)
        summary = analysis.store(session=session, collection=collection, ranked=ranked)
        if finished:
            collection.status = "done"
            collection.finished_at = utcnow()
            emit(
                session,
                "triage.collection.finished",
                "triage_collection",
                collection.id,
                {"hosts": summary["hosts"], "findings": summary["findings"]},
            )
        return collection, summary


def host_counts(session: Session, collection_id: int) -> dict[str, int]:
    rows = session.execute(
        select(TriageHost.status, func.count())
        .where(TriageHost.collection_id == collection_id)
        .group_by(TriageHost.status)
    )
    return {str(status): int(count) for status, count in rows}


def record_answer(*, session: Session, host: TriageHost, answer: Any) -> None:
    """Store one host's answer (a remediation `AgentActionResult`) and classify the host."""
    host.collected_at = utcnow()
    host.duration_s = float(answer.duration_s)
    host.size_bytes = int(answer.size_bytes)
    if not answer.reachable:
        host.status, host.reason = "missing", answer.error or "the agent did not answer"
        return
    if answer.status == "oversized":
        host.status, host.reason = "oversized", answer.error or "the answer was too large"
        return
    if answer.status != "ok":
        host.status = "error"
        host.reason = f"{answer.status}: {answer.error or 'no reason given'}"[:1000]
        return
    try:
        parsed = CollectAnswer.model_validate(answer.result)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(answer)"
        host.status = "error"
        host.reason = f"the agent's answer is not a table set: {where}: {first['msg']}"[:1000]
        return
    normaliser = Normaliser([host.device, host.device.split(".")[0], parsed.hostname])
    truncated = bool(answer.truncated)
    rows_total = 0
    for table, data in parsed.tables.items():
        if table not in TABLE_NAMES:
            continue
        truncated = truncated or data.truncated
        keys = [normaliser.key(table, row) for row in data.rows]
        rows_total += len(keys)
        session.add(
            TriageHostTable(
                host_id=host.id,
                collection_id=host.collection_id,
                table=table,
                collected_at=host.collected_at,
                truncated=data.truncated,
                error=data.error,
                keys=keys,
                rows=data.rows,
            )
        )
    host.row_count = rows_total
    host.source = parsed.source[:40]
    if truncated:
        host.status = "oversized"
        host.reason = "the agent cut its answer at its output cap; partial tables are kept"
    else:
        failed = [t for t, d in parsed.tables.items() if d.error]
        host.status = "ok"
        host.reason = f"tables failed: {', '.join(failed)}" if failed else ""


def host_tables(
    *, session: Session, collection: int | str, device: str
) -> tuple[TriageHost, list[TriageHostTable]]:
    found = get_collection(session=session, ref=collection)
    host = session.scalar(
        select(TriageHost).where(TriageHost.collection_id == found.id, TriageHost.device == device)
    )
    if host is None:
        raise NotFound(
            f"collection {found.id} has no host {device!r}",
            details={"collection": found.id, "device": device},
        )
    tables = list(
        session.scalars(
            select(TriageHostTable)
            .where(TriageHostTable.host_id == host.id)
            .order_by(TriageHostTable.table)
        )
    )
    return host, tables


def collection_ref(raw: str) -> int:
    """A collection id from user input ("latest" is resolved by the caller)."""
    ident = parse_id(raw)
    if ident is None:
        raise InvalidInput(f"{raw!r} is not a collection id")
    return ident
