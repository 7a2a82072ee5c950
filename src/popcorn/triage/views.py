"""Triage API (`/api/v1/triage`): collections, their hosts, outliers, findings and diffs.
Reads need viewer; starting, re-running, analysing or deleting a collection operator."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request

from popcorn.db import session_scope
from popcorn.listing import parse_list_params
from popcorn.triage import analysis, service
from popcorn.triage import schemas as s

bp = APIBlueprint("triage", __name__, tag="triage")


@bp.get("/collections")
@bp.output(s.CollectionPage)
@bp.doc(summary="Collections, newest last (filters: name, status, created_at)")
def list_collections() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_collections(session=session, params=parse_list_params(request.args))
        return page.serialize(s.CollectionRead)


@bp.post("/collections")
@bp.input(s.CollectionCreate, arg_name="body")
@bp.output(s.CollectionRead, status_code=202)
@bp.doc(summary="Collect the tables of a group of hosts (role, site, region or devices)")
def create_collection(body: s.CollectionCreate) -> Any:
    with session_scope() as session:
        return service.create_collection(session=session, spec=body)


@bp.get("/collections/<int:collection_id>")
@bp.output(s.CollectionRead)
@bp.doc(summary="One collection with its summary")
def show_collection(collection_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_collection(session=session, ref=collection_id)


@bp.delete("/collections/<int:collection_id>")
@bp.output(s.CollectionRead)
@bp.doc(summary="Delete a collection and every table it stored")
def delete_collection(collection_id: int) -> Any:
    with session_scope() as session:
        found = s.CollectionRead.model_validate(
            service.get_collection(session=session, ref=collection_id)
        )
        service.delete_collection(session=session, ref=collection_id)
        return found


@bp.post("/collections/<int:collection_id>/rerun")
@bp.input(s.RerunRequest, arg_name="body")
@bp.output(s.CollectionRead, status_code=202)
@bp.doc(summary="Collect again from the missing hosts (or those in the given statuses)")
def rerun_collection(collection_id: int, body: s.RerunRequest) -> Any:
    with session_scope() as session:
        return service.rerun(session=session, ref=collection_id, statuses=list(body.statuses))


@bp.post("/collections/<int:collection_id>/analyse")
@bp.input(s.AnalyseRequest, arg_name="body")
@bp.output(s.CollectionRead)
@bp.doc(summary="Rebuild the baseline and findings (another rare fraction, say)")
def analyse_collection(collection_id: int, body: s.AnalyseRequest) -> Any:
    found, _ = service.analyse(
        collection_id=collection_id, rare_fraction=body.rare_fraction, similarity=body.similarity
    )
    return found


@bp.get("/collections/<int:collection_id>/hosts")
@bp.output(s.HostPage)
@bp.doc(summary="Hosts of a collection and how each answered (filters: device, status...)")
def list_hosts(collection_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_hosts(
            session=session, collection=collection_id, params=parse_list_params(request.args)
        )
        return page.serialize(s.HostRead)


@bp.get("/collections/<int:collection_id>/outliers")
@bp.output(s.OutlierPage)
@bp.doc(summary="Hosts ranked by their rarest evidence, with the rows and peers sharing them")
def list_outliers(collection_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_outliers(
            session=session, collection=collection_id, params=parse_list_params(request.args)
        )
        return page.serialize(s.OutlierRead)


@bp.get("/collections/<int:collection_id>/findings")
@bp.output(s.FindingPage)
@bp.doc(summary="Rare rows grouped by the hosts they single out (a cluster is one finding)")
def list_findings(collection_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_findings(
            session=session, collection=collection_id, params=parse_list_params(request.args)
        )
        return page.serialize(s.FindingRead)


@bp.get("/collections/<int:collection_id>/hosts/<device>/group-diff")
@bp.output(s.DiffRead)
@bp.doc(summary="A host against its group: its rare rows and the common rows it lacks")
def host_vs_group(collection_id: int, device: str) -> Any:
    with session_scope(readonly=True) as session:
        found = service.get_collection(session=session, ref=collection_id)
        return analysis.host_vs_group(session=session, collection=found, device=device)


@bp.get("/hosts/<device>/diff/<int:before>/<int:after>")
@bp.output(s.DiffRead)
@bp.doc(summary="What changed on one host between two collections")
def host_diff(device: str, before: int, after: int) -> Any:
    with session_scope(readonly=True) as session:
        return analysis.diff_hosts(
            before=service.host_tables(session=session, collection=before, device=device),
            after=service.host_tables(session=session, collection=after, device=device),
        )
