"""Triage pages: collections, one collection's hosts, outliers and findings, and a host's
diff (against its group, or against itself in another collection)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.lookup import parse_id
from popcorn.triage import analysis, schemas, service
from popcorn.web.views import bp


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


@bp.get("/triage")
def triage() -> str:
    with session_scope(readonly=True) as session:
        page = service.list_collections(session=session, params=ListParams(limit=1000))
        collections = [_dump(schemas.CollectionRead, c) for c in page.items][::-1][:100]
    return render_template("triage/index.html", collections=collections)


@bp.get("/triage/collections/<collection_id>")
def triage_collection(collection_id: str) -> str:
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=collection_id)
        collection = _dump(schemas.CollectionRead, found)
        everything = ListParams(limit=100_000)
        hosts = service.list_hosts(session=session, collection=found.id, params=everything)
        outliers = service.list_outliers(
            session=session, collection=found.id, params=ListParams(limit=50), flagged_only=True
        )
        findings = service.list_findings(
            session=session, collection=found.id, params=ListParams(limit=50)
        )
        data = {
            "hosts": hosts.serialize(schemas.HostRead)["items"],
            "outliers": outliers.serialize(schemas.OutlierRead)["items"],
            "findings": findings.serialize(schemas.FindingRead)["items"],
        }
    return render_template(
        "triage/collection.html",
        collection=collection,
        active=collection["status"] in ("pending", "running"),
        **data,
    )


@bp.get("/triage/collections/<collection_id>/hosts/<device>")
def triage_host(collection_id: str, device: str) -> str:
    against = parse_id(request.args.get("against", ""))
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=collection_id)
        host, _ = service.host_tables(session=session, collection=found.id, device=device)
        if against is not None:
            diff = analysis.diff_hosts(
                before=service.host_tables(session=session, collection=against, device=device),
                after=service.host_tables(session=session, collection=found.id, device=device),
            )
        else:
            diff = analysis.host_vs_group(session=session, collection=found, device=device)
        others = [
            c.id
            for c in service.list_collections(session=session, params=ListParams(limit=1000)).items
            if c.id != found.id
        ]
        data = {
            "collection": _dump(schemas.CollectionRead, found),
            "host": _dump(schemas.HostRead, host),
            "diff": _dump(schemas.DiffRead, diff),
        }
    return render_template("triage/host.html", against=against, others=others[-20:], **data)
