"""`popcorn triage …`: collect a group's host state through Bolt, rank the odd hosts."""

from __future__ import annotations

from typing import Any

import click

from popcorn.cli import PopcornGroup, json_option, output, progress, with_actor
from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.triage import schemas as s
from popcorn.triage import service
from popcorn.triage.tables import TABLE_NAMES

COLLECTION_COLUMNS = ["id", "name", "status", "hosts", "findings", "created_at", "finished_at"]
HOST_COLUMNS = [
    "device", "status", "reason", "row_count", "source", "duration_s", "cluster", "rank", "score",
]  # fmt: skip
ALL = ListParams(limit=100_000)
SIMILARITY_HELP = "Cluster hosts this Jaccard-similar; each is ranked in its cluster (0: off)."


@click.group("triage", cls=PopcornGroup)
def group() -> None:
    """Fleet triage: collect host state from a group, find the hosts that differ."""


def _collection_row(found: Any) -> dict[str, Any]:
    data = s.CollectionRead.model_validate(found).model_dump(mode="json")
    data["hosts"] = ", ".join(f"{k} {v}" for k, v in sorted(found.summary.get("hosts", {}).items()))
    data["findings"] = found.summary.get("findings")
    return data


def _resolve(session: Any, ref: str) -> int:
    if ref == "latest":
        return service.latest_collection(session=session).id
    return service.collection_ref(ref)


@group.command("collect")
@click.option("--role", help="Inventory role of the hosts (server, storage-appliance...).")
@click.option("--site", help="Site code.")
@click.option("--region", help="Region name.")
@click.option("--model", help="Device model slug.")
@click.option("--tag", "tags", multiple=True, help="An inventory tag every host has (repeatable).")
@click.option("--device", "devices", multiple=True, help="A device (repeatable).")
@click.option("--table", "tables", multiple=True, type=click.Choice(TABLE_NAMES))
@click.option("--name", default="", help="A name for the collection.")
@click.option("--concurrency", default=16, show_default=True, type=int)
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Per host.")
@click.option("--rare-fraction", default=0.1, show_default=True, type=float)
@click.option("--similarity", default=0.7, show_default=True, type=float, help=SIMILARITY_HELP)
@click.option("--background", is_flag=True, help="Queue a job instead of collecting here.")
@json_option
@with_actor
def collect(
    role: str | None,
    site: str | None,
    region: str | None,
    model: str | None,
    tags: tuple[str, ...],
    devices: tuple[str, ...],
    tables: tuple[str, ...],
    name: str,
    concurrency: int,
    timeout: float,
    rare_fraction: float,
    similarity: float,
    background: bool,
    as_json: bool,
) -> None:
    """Collect from every host in the scope, then rank the group's outliers."""
    spec = s.CollectionCreate.model_validate(
        {
            "scope": {
                "role": role,
                "site": site,
                "region": region,
                "model": model,
                "tags": list(tags) or None,
                "devices": list(devices) or None,
            },
            "name": name,
            "tables": list(tables) or None,
            "concurrency": concurrency,
            "timeout": timeout,
            "rare_fraction": rare_fraction,
            "similarity": similarity,
        }
    )
    with session_scope() as session:
        found = service.create_collection(session=session, spec=spec, run_as_job=background)
        collection_id, hosts = found.id, len(found.hosts)
    if not background:
        with progress(hosts, f"collection {collection_id}") as bar:
            task = bar.task_ids[0]

            def advance(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, description=message[:60])

            service.run_collection(collection_id, progress=advance)
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=collection_id)
        output(_collection_row(found), as_json=as_json, columns=COLLECTION_COLUMNS)


@group.command("collections")
@json_option
def collections(as_json: bool) -> None:
    """Every collection."""
    with session_scope(readonly=True) as session:
        page = service.list_collections(session=session, params=ALL)
        rows = [_collection_row(c) for c in page.items]
    output(rows, as_json=as_json, columns=COLLECTION_COLUMNS)


@group.command("show")
@click.argument("collection", default="latest")
@json_option
def show(collection: str, as_json: bool) -> None:
    """A collection and its summary (default: the latest)."""
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=_resolve(session, collection))
        output(_collection_row(found), as_json=as_json, columns=COLLECTION_COLUMNS)


@group.command("hosts")
@click.argument("collection", default="latest")
@click.option("--status", type=click.Choice(["ok", "missing", "error", "oversized", "pending"]))
@json_option
def hosts(collection: str, status: str | None, as_json: bool) -> None:
    """How each host of a collection answered."""
    params = ListParams(limit=100_000, filters={"status": [status]} if status else {})
    with session_scope(readonly=True) as session:
        page = service.list_hosts(
            session=session, collection=_resolve(session, collection), params=params
        )
        rows = page.serialize(s.HostRead)["items"]
    output(rows, as_json=as_json, columns=HOST_COLUMNS)


@group.command("outliers")
@click.argument("collection", default="latest")
@click.option("--limit", default=10, show_default=True, type=int, help="Hosts to show.")
@click.option("--evidence", default=3, show_default=True, type=int, help="Rows per host.")
@json_option
def outliers(collection: str, limit: int, evidence: int, as_json: bool) -> None:
    """Hosts ranked by their rarest evidence, each with the rows that make it rare."""
    with session_scope(readonly=True) as session:
        page = service.list_outliers(
            session=session,
            collection=_resolve(session, collection),
            params=ListParams(limit=max(1, limit)),
            flagged_only=True,
        )
        items = page.serialize(s.OutlierRead)["items"]
    if as_json:
        output(items, as_json=True)
        return
    rows = []
    for item in items:
        shown = item["evidence"][: max(0, evidence)]
        rows.append(
            {
                "rank": item["rank"],
                "device": item["device"],
                "score": item["score"],
                "evidence": "\n".join(_evidence_line(e) for e in shown),
            }
        )
    output(rows, as_json=False, columns=["rank", "device", "score", "evidence"])


def _evidence_line(e: dict[str, Any]) -> str:
    row = ", ".join(f"{k}={v}" for k, v in e["row"].items() if v not in (None, "", []))
    sign = "+" if e["kind"] == "extra" else "-"
    return f"{sign} {e['table']}: {row} ({e['hosts_with']}/{e['peers']} hosts)"[:200]


@group.command("findings")
@click.argument("collection", default="latest")
@json_option
def findings(collection: str, as_json: bool) -> None:
    """Rare rows grouped by the hosts they single out."""
    with session_scope(readonly=True) as session:
        page = service.list_findings(
            session=session, collection=_resolve(session, collection), params=ALL
        )
        items = page.serialize(s.FindingRead)["items"]
    if not as_json:
        for item in items:
            item["rows"] = len(item["rows"])
            item["hosts"] = ", ".join(item["hosts"])
    output(items, as_json=as_json, columns=["rank", "kind", "score", "hosts", "tables", "rows"])


@group.command("rerun")
@click.argument("collection")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    default=("missing",),
    show_default=True,
    type=click.Choice(["missing", "error", "oversized"]),
)
@click.option("--background", is_flag=True, help="Queue a job instead of collecting here.")
@json_option
@with_actor
def rerun(collection: str, statuses: tuple[str, ...], background: bool, as_json: bool) -> None:
    """Collect again from the hosts that were missing (or in the given statuses)."""
    with session_scope() as session:
        ident = _resolve(session, collection)
        service.rerun(session=session, ref=ident, statuses=list(statuses), run_as_job=background)
    if not background:
        service.run_collection(ident)
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=ident)
        output(_collection_row(found), as_json=as_json, columns=COLLECTION_COLUMNS)


@group.command("analyse")
@click.argument("collection", default="latest")
@click.option("--rare-fraction", default=0.1, show_default=True, type=float)
@click.option("--similarity", default=0.7, show_default=True, type=float, help=SIMILARITY_HELP)
@json_option
@with_actor
def analyse(collection: str, rare_fraction: float, similarity: float, as_json: bool) -> None:
    """Rebuild a collection's clusters, baselines and findings."""

    body = s.AnalyseRequest(rare_fraction=rare_fraction, similarity=similarity)
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=_resolve(session, collection))
    _, summary = service.analyse(
        collection_id=found.id, rare_fraction=body.rare_fraction, similarity=body.similarity
    )
    output(summary, as_json=as_json)


@group.command("diff")
@click.argument("device")
@click.argument("before")
@click.argument("after", default="latest")
@json_option
def diff(device: str, before: str, after: str, as_json: bool) -> None:
    """What changed on DEVICE between two collections."""
    from popcorn.triage import analysis  # numpy: only the commands that analyse load it

    with session_scope(readonly=True) as session:
        result = analysis.diff_hosts(
            before=service.host_tables(
                session=session, collection=_resolve(session, before), device=device
            ),
            after=service.host_tables(
                session=session, collection=_resolve(session, after), device=device
            ),
        )
    _print_diff(result, as_json)


@group.command("group-diff")
@click.argument("device")
@click.argument("collection", default="latest")
@json_option
def group_diff(device: str, collection: str, as_json: bool) -> None:
    """DEVICE against its group: its rare rows, and the common rows it lacks."""
    from popcorn.triage import analysis  # numpy: only the commands that analyse load it

    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=_resolve(session, collection))
        result = analysis.host_vs_group(session=session, collection=found, device=device)
    _print_diff(result, as_json)


def _print_diff(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output(s.DiffRead.model_validate(result).model_dump(mode="json"), as_json=True)
        return
    rows = [
        {
            "change": c["change"],
            "table": c["table"],
            "row": ", ".join(f"{k}={v}" for k, v in c["row"].items() if v not in (None, "", [])),
            "hosts": f"{c['hosts_with']}/{c['peers']}" if c.get("peers") else "",
        }
        for c in result["changes"]
    ]
    output(rows, as_json=False, columns=["change", "table", "row", "hosts"])
